import t from 'tap';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { WaitProcessRequestSchema, WaitProcessResponseSchema } from '../../protos/gen/agent_pb.js';
import { CheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from '../../protos/gen/health_pb.js';
import { Code } from '../../agent/src/rpc/status.js';
import { encodeFrame, FrameType, FLAG_REMOTE_OPEN, MAX_DATA_LENGTH } from '../../agent/src/transport/ttrpc/frame.js';
import { MAX_IN_FLIGHT } from '../../agent/src/transport/ttrpc-transport.js';
import { RawTtrpc } from '../helpers/raw-ttrpc.js';
import { serveInProcess } from '../helpers/in-process.js';

const check = toBinary(CheckRequestSchema, create(CheckRequestSchema));

// WaitProcess here blocks until the test releases it (or the call is cancelled), like a real long-poll.
const waits = new Map<string, { release: (status: number) => void; aborted: Promise<unknown> }>();
// WaitProcess calls running now, and the most that ever ran at once.
const running = { now: 0, max: 0 };
const handlers = {
  waitProcess: (req: { containerId: string }, ctx: { signal: AbortSignal }) => {
    running.max = Math.max(running.max, ++running.now);
    return new Promise<{ status: number }>((resolve, reject) => {
      const aborted = new Promise((r) => ctx.signal.addEventListener('abort', () => r(ctx.signal.reason)));
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
      waits.set(req.containerId, { release: (status) => resolve({ status }), aborted });
    }).finally(() => running.now--);
  },
};

async function waitFor(id: string) {
  while (!waits.has(id)) await new Promise((r) => setTimeout(r, 5));
  return waits.get(id)!;
}

function waitReq(id: string) {
  return toBinary(WaitProcessRequestSchema, create(WaitProcessRequestSchema, { containerId: id }));
}

t.test('ttrpc server', async (t) => {
  const srv = await serveInProcess('ttrpc-server', handlers as never);
  t.teardown(() => srv.close());

  const expectCheckWorks = async (c: RawTtrpc, id: number) => {
    c.request(id, 'grpc.Health', 'Check', check);
    const a = await c.next();
    t.equal(a.id, id);
    t.equal(a.type, FrameType.Response);
    t.equal(a.code, Code.OK);
    t.equal(fromBinary(HealthCheckResponseSchema, a.payload).status, HealthCheckResponse_ServingStatus.SERVING);
  };

  t.test('Check answers SERVING; unknown service and method are UNIMPLEMENTED', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    await expectCheckWorks(c, 1);
    c.request(3, 'grpc.Health', 'Nope');
    let a = await c.next();
    t.match(a, { id: 3, code: Code.UNIMPLEMENTED, message: /grpc\.Health\/Nope/ });
    c.request(5, 'no.Such', 'Check', check);
    a = await c.next();
    t.match(a, { id: 5, code: Code.UNIMPLEMENTED });
    // Known but not yet handled by any domain.
    c.request(7, 'grpc.AgentService', 'CreateSandbox');
    a = await c.next();
    t.match(a, { id: 7, code: Code.UNIMPLEMENTED, message: /CreateSandbox/ });
  });

  t.test('even and reused stream ids get INVALID_ARGUMENT and the connection goes on', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    c.request(2, 'grpc.Health', 'Check', check);
    t.match(await c.next(), { id: 2, code: Code.INVALID_ARGUMENT, message: /even/ });
    c.request(0, 'grpc.Health', 'Check', check);
    t.match(await c.next(), { id: 0, code: Code.INVALID_ARGUMENT, message: /even/ });
    await expectCheckWorks(c, 5);
    c.request(5, 'grpc.Health', 'Check', check);
    t.match(await c.next(), { id: 5, code: Code.INVALID_ARGUMENT, message: /reused/ });
    c.request(3, 'grpc.Health', 'Check', check);
    t.match(await c.next(), { id: 3, code: Code.INVALID_ARGUMENT, message: /reused/ });
    await expectCheckWorks(c, 7);
  });

  t.test('a frame over 4 MiB gets RESOURCE_EXHAUSTED and the connection survives', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    const big = Buffer.alloc(MAX_DATA_LENGTH + 1, 0x41);
    c.write(encodeFrame(1, FrameType.Request, 0, big));
    const a = await c.next();
    t.match(a, { id: 1, code: Code.RESOURCE_EXHAUSTED, message: /exceeds/ });
    await expectCheckWorks(c, 3);
  });

  t.test('exactly 4 MiB is accepted as a frame (then fails to decode as a Request)', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    c.write(encodeFrame(1, FrameType.Request, 0, Buffer.alloc(MAX_DATA_LENGTH, 0xff)));
    t.match(await c.next(), { id: 1, code: Code.INVALID_ARGUMENT, message: /cannot decode ttrpc\.Request/ });
    await expectCheckWorks(c, 3);
  });

  t.test('a payload that is not the declared message is INVALID_ARGUMENT', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    // Field 1 as a varint where CheckRequest.service is a string.
    c.request(1, 'grpc.Health', 'Check', Uint8Array.of(0x08, 0x01));
    t.match(await c.next(), { id: 1, code: Code.INVALID_ARGUMENT, message: /grpc\.CheckRequest/ });
    c.request(3, 'grpc.AgentService', 'WaitProcess', Uint8Array.of(0x0a, 0x7f, 0x41));
    t.match(await c.next(), { id: 3, code: Code.INVALID_ARGUMENT, message: /WaitProcessRequest/ });
    await expectCheckWorks(c, 5);
  });

  t.test('Data frames, client streams and Response frames from a client are refused clearly', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    c.write(encodeFrame(1, FrameType.Data, 0, Buffer.from('x')));
    t.match(await c.next(), { id: 1, code: Code.INVALID_ARGUMENT, message: /Data frames/ });
    c.request(3, 'grpc.Health', 'Check', check, { flags: FLAG_REMOTE_OPEN });
    t.match(await c.next(), { id: 3, code: Code.UNIMPLEMENTED, message: /streaming/ });
    c.write(encodeFrame(5, FrameType.Response, 0, new Uint8Array(0)));
    t.match(await c.next(), { id: 5, code: Code.INVALID_ARGUMENT, message: /Response frames/ });
    await expectCheckWorks(c, 7);
  });

  t.test('a Data frame on a running call ends that call with an error and cancels it', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    c.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('data-frame'));
    const w = await waitFor('data-frame');
    c.write(encodeFrame(1, FrameType.Data, 0, Buffer.from('x')));
    t.match(await c.next(), { id: 1, code: Code.INVALID_ARGUMENT, message: /Data frames/ });
    t.match(await w.aborted, { code: Code.INVALID_ARGUMENT });
    await expectCheckWorks(c, 3);
  });

  t.test('a long WaitProcess does not hold up a Check behind it; answers come as calls finish', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    c.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('long'));
    c.request(3, 'grpc.AgentService', 'WaitProcess', waitReq('long2'));
    const w = await waitFor('long');
    const w2 = await waitFor('long2');
    await expectCheckWorks(c, 5);
    w2.release(7);
    let a = await c.next();
    t.equal(a.id, 3);
    t.equal(fromBinary(WaitProcessResponseSchema, a.payload).status, 7);
    w.release(0);
    a = await c.next();
    t.equal(a.id, 1);
    t.equal(a.code, Code.OK);
  });

  t.test('timeout_nano gives DEADLINE_EXCEEDED and cancels the handler', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    c.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('deadline'), { timeoutNano: 50_000_000n });
    const a = await c.next();
    t.match(a, { id: 1, code: Code.DEADLINE_EXCEEDED, message: /WaitProcess: deadline of 50 ms/ });
    const w = await waitFor('deadline');
    t.match(await w.aborted, { code: Code.DEADLINE_EXCEEDED });
    // A late result is dropped, not sent as a second answer.
    w.release(1);
    await expectCheckWorks(c, 3);
  });

  t.test('garbage (a frame type outside the protocol) closes that connection only', async (t) => {
    const bad = await RawTtrpc.connect(srv.socket);
    bad.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 1, 0x7f, 0, 1, 2, 3, 4]));
    await bad.closed;
    t.ok(bad.ended, 'closed by the agent');
    const good = await RawTtrpc.connect(srv.socket);
    t.teardown(() => good.destroy());
    await expectCheckWorks(good, 1);
  });

  t.test('a truncated header then a half-close: the agent closes, and keeps serving', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    c.write(Buffer.from([0, 0, 0, 9, 0, 0]));
    c.sock.end();
    await c.closed;
    const good = await RawTtrpc.connect(srv.socket);
    t.teardown(() => good.destroy());
    await expectCheckWorks(good, 1);
  });

  t.test('a client that half-closes mid-call gets CANCELLED and the call is cancelled', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    c.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('half'));
    const w = await waitFor('half');
    c.sock.end();
    t.match(await c.next(), { id: 1, code: Code.CANCELLED, message: /WaitProcess: cancelled: the client closed/ });
    t.match(await w.aborted, { code: Code.CANCELLED });
    await c.closed;
    t.pass('agent closed its side after answering');
  });

  t.test('a client that vanishes mid-call cancels its call; others are served', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    c.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('vanish'));
    const w = await waitFor('vanish');
    c.destroy();
    t.match(await w.aborted, { code: Code.CANCELLED });
    const good = await RawTtrpc.connect(srv.socket);
    t.teardown(() => good.destroy());
    await expectCheckWorks(good, 1);
  });

  t.test('frames split anywhere and sent a byte at a time are reassembled', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    const { RequestSchema } = await import('../../protos/gen/ttrpc_pb.js');
    const f1 = encodeFrame(
      1,
      FrameType.Request,
      0,
      toBinary(RequestSchema, create(RequestSchema, { service: 'grpc.Health', method: 'Check', payload: check })),
    );
    const f3 = encodeFrame(
      3,
      FrameType.Request,
      0,
      toBinary(RequestSchema, create(RequestSchema, { service: 'grpc.Health', method: 'Version', payload: check })),
    );
    for (const b of Buffer.concat([f1, f3])) {
      c.write(Buffer.of(b));
      await new Promise((r) => setImmediate(r));
    }
    t.match(await c.next(), { id: 1, code: Code.OK });
    t.match(await c.next(), { id: 3, code: Code.OK });
  });

  t.test('past MAX_IN_FLIGHT calls the agent reads no further frame until one finishes; none is refused', async (t) => {
    const c = await RawTtrpc.connect(srv.socket);
    t.teardown(() => c.destroy());
    const extra = 4;
    running.max = 0;
    for (let i = 0; i < MAX_IN_FLIGHT + extra; i++) c.request(1 + 2 * i, 'grpc.AgentService', 'WaitProcess', waitReq(`many-${i}`));
    // The Check behind them is read only once calls finish and the held-back frames go first.
    const checkId = 1 + 2 * (MAX_IN_FLIGHT + extra);
    c.request(checkId, 'grpc.Health', 'Check', check);
    await waitFor(`many-${MAX_IN_FLIGHT - 1}`);
    t.equal(running.now, MAX_IN_FLIGHT, 'the cap is reached');
    // No slot can free up until the test releases one, so nothing more has started.
    t.notOk(waits.has(`many-${MAX_IN_FLIGHT}`), 'the next WaitProcess is held back, not started');
    // Each release frees one slot, and the next held-back call starts in it.
    for (let i = 0; i < MAX_IN_FLIGHT + extra; i++) (await waitFor(`many-${i}`)).release(0);
    const answers = new Map<number, number>();
    for (let i = 0; i <= MAX_IN_FLIGHT + extra; i++) {
      const a = await c.next();
      answers.set(a.id, a.code);
    }
    t.equal(answers.size, MAX_IN_FLIGHT + extra + 1, 'one answer per call');
    t.ok(
      [...answers.values()].every((code) => code === Code.OK),
      'every call answered OK, none refused',
    );
    t.equal(answers.get(checkId), Code.OK);
    t.equal(running.max, MAX_IN_FLIGHT, `never more than ${MAX_IN_FLIGHT} calls ran at once`);
    await expectCheckWorks(c, checkId + 2);
  });
});
