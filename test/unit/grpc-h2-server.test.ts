// Our own HTTP/2 gRPC server (transport/grpc-h2-server.ts) driven in process through a socket pair
// of Duplexes: frames in, frames out, against a stub service. What grpc-go sees is in
// integration/go-grpc-client.test.ts; these are the cases a real client rarely makes.
import { Duplex } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../agent/src/log/logger.js';
import { Code, RpcError } from '../../agent/src/rpc/status.js';
import type { AgentRpcService } from '../../agent/src/rpc/service.js';
import type { DispatchOptions } from '../../agent/src/rpc/call.js';
import { HpackDecoder, encodeLiteralBlock } from '../../agent/src/transport/hpack.js';
import { OwnGrpcTransport, grpcTimeoutMs, percentEncode } from '../../agent/src/transport/grpc-h2-server.js';
import { FrameParser, PREFACE, encodeFrame, settingsPayload, u32 } from '../../agent/src/transport/http2-frames.js';

t.test('grpc-timeout and grpc-message encodings', async (t) => {
  t.equal(grpcTimeoutMs('5S'), 5000);
  t.equal(grpcTimeoutMs('100m'), 100);
  t.equal(grpcTimeoutMs('2M'), 120_000);
  t.equal(grpcTimeoutMs('1H'), 3_600_000);
  t.equal(grpcTimeoutMs('1000u'), 1);
  t.equal(grpcTimeoutMs('123456789S'), undefined, 'more than 8 digits');
  t.equal(grpcTimeoutMs('5s'), undefined);
  t.equal(grpcTimeoutMs(undefined), undefined);
  t.equal(percentEncode('no such container: é 100%'), 'no such container: %C3%A9 100%25');
});

/** The server's end and a test peer's end of one connection. */
function pair(): {
  server: Duplex;
  peer: { send(b: Buffer): void; frames(): Promise<{ type: number; flags: number; streamId: number; payload: Buffer }[]>; end(): void };
} {
  const parser = new FrameParser(1 << 24);
  parser.push(PREFACE); // the server writes no preface: parse its frames straight away
  let got: Buffer[] = [];
  let wake: (() => void) | undefined;
  const server = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      got.push(chunk);
      wake?.();
      cb();
    },
  });
  return {
    server,
    peer: {
      send: (b) => server.push(b),
      async frames() {
        await new Promise<void>((r) => setTimeout(r, 20));
        while (got.length === 0) await new Promise<void>((r) => (wake = r));
        const out = parser.push(Buffer.concat(got));
        got = [];
        return out;
      },
      end: () => server.push(null),
    },
  };
}

const headers = (pairs: [string, string][]) => encodeLiteralBlock(pairs.map(([n, v]) => ({ name: Buffer.from(n), value: Buffer.from(v), sensitive: false })));
const call = (path: string, extra: [string, string][] = []) =>
  headers([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', 'unix:////run/vc/sbs/x/kata.sock'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ...extra,
  ]);
const message = (bytes: number[]) => Buffer.concat([Buffer.from([0]), u32(bytes.length), Buffer.from(bytes)]);

function stubService(calls: { method: string; payload: Uint8Array; opts: DispatchOptions }[], answer: (m: string) => Promise<Uint8Array>): AgentRpcService {
  return {
    call: (_s: string, method: string, payload: Uint8Array, opts: DispatchOptions) => {
      calls.push({ method, payload, opts });
      return answer(method);
    },
  } as unknown as AgentRpcService;
}

t.test('a unary call, a failing one, an unknown path and a reset one, on one connection', async (t) => {
  const calls: { method: string; payload: Uint8Array; opts: DispatchOptions }[] = [];
  let release!: () => void;
  const service = stubService(calls, (m) => {
    if (m === 'Check') return Promise.resolve(new Uint8Array([8, 1]));
    if (m === 'Hang') return new Promise((_r, rej) => (release = () => rej(new RpcError(Code.CANCELLED, 'cancelled'))));
    return Promise.reject(new RpcError(Code.NOT_FOUND, 'container c1 not found: é'));
  });
  const { server, peer } = pair();
  new OwnGrpcTransport(service, createLogger('fatal')).serve(server);
  const hp = new HpackDecoder();
  peer.send(Buffer.concat([PREFACE, encodeFrame(0x4, 0, 0, settingsPayload([[0x4, 1 << 20]]))]));
  const first = await peer.frames();
  t.same(
    first.map((f) => [f.type, f.flags]),
    [
      [0x4, 0],
      [0x8, 0],
      [0x4, 1],
    ],
    'our SETTINGS, a connection WINDOW_UPDATE for a whole message, the ACK of the client SETTINGS',
  );
  peer.send(Buffer.concat([encodeFrame(0x1, 0x4, 1, call('/grpc.Health/Check')), encodeFrame(0x0, 0x1, 1, message([]))]));
  const answer = await peer.frames();
  t.same(
    answer.map((f) => [f.type, f.flags, f.streamId]),
    [
      [0x1, 0x4, 1],
      [0x0, 0, 1],
      [0x1, 0x5, 1],
    ],
    'headers, the message, trailers ending the stream',
  );
  t.same([...answer[1].payload], [0, 0, 0, 0, 2, 8, 1]);
  const fields = (f: { payload: Buffer }) => Object.fromEntries(hp.decode(f.payload).map((h) => [h.name.toString(), h.value.toString()]));
  t.same(fields(answer[0]), { ':status': '200', 'content-type': 'application/grpc' });
  t.same(fields(answer[2]), { 'grpc-status': '0' });
  t.equal(calls[0].method, 'Check');
  t.equal(calls[0].opts.dialect.name, 'kata-1.x');

  peer.send(Buffer.concat([encodeFrame(0x1, 0x4, 3, call('/grpc.AgentService/StatsContainer')), encodeFrame(0x0, 0x1, 3, message([10, 2, 99, 49]))]));
  const failed = await peer.frames();
  t.same(
    failed.map((f) => [f.type, f.flags, f.streamId]),
    [[0x1, 0x5, 3]],
    'a trailers-only answer',
  );
  t.match(fields(failed[0]), { 'grpc-status': String(Code.NOT_FOUND), 'grpc-message': 'container c1 not found: %C3%A9' });
  t.same([...calls[1].payload], [10, 2, 99, 49], 'the request bytes, without the gRPC prefix');

  peer.send(Buffer.concat([encodeFrame(0x1, 0x4, 5, call('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'))]));
  t.match(fields((await peer.frames())[0]), { 'grpc-status': String(Code.UNIMPLEMENTED) }, 'reflection refused at once');

  peer.send(Buffer.concat([encodeFrame(0x1, 0x4, 7, call('/grpc.AgentService/Hang', [['grpc-timeout', '10S']])), encodeFrame(0x0, 0x1, 7, message([]))]));
  await new Promise((r) => setTimeout(r, 20));
  const hang = calls[calls.length - 1];
  peer.send(encodeFrame(0x3, 0, 7, u32(0x8)));
  await new Promise((r) => setTimeout(r, 20));
  t.ok(hang.opts.signal.aborted, 'RST_STREAM aborts the call');
  release();

  peer.send(encodeFrame(0x6, 0, 0, Buffer.from('pingpong')));
  const pong = await peer.frames();
  t.same(
    pong.map((f) => [f.type, f.flags, f.payload.toString()]),
    [[0x6, 1, 'pingpong']],
    'PING answered; nothing was sent for the reset call',
  );
  peer.end();
});

t.test('an answer larger than the client window waits for WINDOW_UPDATE', async (t) => {
  const big = new Uint8Array(100_000).fill(7);
  const service = stubService([], () => Promise.resolve(big));
  const { server, peer } = pair();
  new OwnGrpcTransport(service, createLogger('fatal')).serve(server);
  // The client's stream window: 16 KiB.
  peer.send(Buffer.concat([PREFACE, encodeFrame(0x4, 0, 0, settingsPayload([[0x4, 16384]]))]));
  await peer.frames();
  peer.send(Buffer.concat([encodeFrame(0x1, 0x4, 1, call('/grpc.AgentService/ReadStdout')), encodeFrame(0x0, 0x1, 1, message([]))]));
  const part = await peer.frames();
  const sent = (fs: { type: number; payload: Buffer }[]) => fs.filter((f) => f.type === 0).reduce((n, f) => n + f.payload.length, 0);
  t.equal(sent(part), 16384, 'no more than the window');
  t.notOk(
    part.some((f) => f.type === 1 && f.flags & 1),
    'no trailers yet',
  );
  peer.send(Buffer.concat([encodeFrame(0x8, 0, 1, u32(200_000)), encodeFrame(0x8, 0, 0, u32(200_000))]));
  const rest = await peer.frames();
  t.equal(16384 + sent(rest), 100_005, 'the rest once the window opened');
  t.ok(
    rest.some((f) => f.type === 1 && f.flags & 1),
    'then the trailers',
  );
  peer.end();
});

t.test('bad framing ends the connection with GOAWAY', async (t) => {
  for (const [what, bytes, code] of [
    ['not a preface', Buffer.from('GET / HTTP/1.1\r\n\r\n'), 0x1],
    ['DATA on an idle stream', Buffer.concat([PREFACE, encodeFrame(0x0, 0, 9, Buffer.from('x'))]), 0x1],
    ['a frame above the max size', Buffer.concat([PREFACE, encodeFrame(0x0, 0, 1, Buffer.alloc(20_000))]), 0x6],
    ['a bad HPACK block', Buffer.concat([PREFACE, encodeFrame(0x1, 0x5, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))]), 0x9],
  ] as const) {
    const { server, peer } = pair();
    new OwnGrpcTransport(
      stubService([], () => Promise.resolve(new Uint8Array(0))),
      createLogger('fatal'),
    ).serve(server);
    peer.send(bytes);
    const frames = await peer.frames();
    const goaway = frames.find((f) => f.type === 0x7);
    t.ok(goaway, `${what}: GOAWAY`);
    t.equal(goaway?.payload.readUInt32BE(4), code, `${what}: error code ${code}`);
    await new Promise((r) => setTimeout(r, 20));
    t.ok(server.destroyed, `${what}: connection closed`);
  }
});

t.test('a host that half-closes right after its request still gets the answer, then the end', async (t) => {
  const service = stubService([], () => new Promise((r) => setTimeout(() => r(new Uint8Array([8, 1])), 50)));
  const { server, peer } = pair();
  new OwnGrpcTransport(service, createLogger('fatal')).serve(server);
  peer.send(Buffer.concat([PREFACE, encodeFrame(0x4, 0, 0), encodeFrame(0x1, 0x4, 1, call('/grpc.Health/Check')), encodeFrame(0x0, 0x1, 1, message([]))]));
  peer.end();
  const frames = [...(await peer.frames())];
  while (!frames.some((f) => f.type === 0x1 && f.flags & 0x1)) frames.push(...(await peer.frames()));
  t.ok(
    frames.some((f) => f.type === 0x0 && f.streamId === 1),
    'the answer was written',
  );
  await new Promise((r) => setTimeout(r, 20));
  t.ok(server.writableEnded, 'and then our side ended');
});
