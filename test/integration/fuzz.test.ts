// Throws ≥10,000 mutated frames per wire at a running agent, then checks that it still answers
// Check on both wires and logged no uncaught error. The mutations come from a seeded PRNG, so a
// failure can be replayed with the seed printed in the test name.
import t, { type Test } from 'tap';
import net from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import { RequestSchema } from '../../protos/gen/ttrpc_pb.js';
import { CheckRequestSchema } from '../../protos/gen/health_pb.js';
import { GuestDetailsRequestSchema, WaitProcessRequestSchema, CreateSandboxRequestSchema } from '../../protos/gen/agent_pb.js';
import { encodeFrame, FrameType } from '../../agent/src/transport/ttrpc/frame.js';
import { HTTP2_PREFACE } from '../../agent/src/transport/wire-router.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { GrpcClient, type RpcClient } from '../../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { startAgentProcess } from '../support/agent-process.js';

const FRAMES_PER_WIRE = 10_000;
const FRAMES_PER_CONNECTION = 50;
const PARALLEL = 8;
// Safety net only: the test fails (rather than hangs) if the agent stops consuming input.
const GIVE_UP_MS = 240_000;
const SEED = Number(process.env.FUZZ_SEED ?? 20261127);

function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(rand: () => number, seed: Buffer, headerLen: number): Buffer {
  const b = Buffer.from(seed);
  const pick = rand();
  const at = (n: number) => Math.floor(rand() * n);
  if (pick < 0.35) {
    // A few random bytes anywhere (header fields included).
    for (let k = 0, n = 1 + at(4); k < n; k++) b[at(b.length)] = at(256);
    return b;
  }
  if (pick < 0.5) return b.subarray(0, at(b.length)); // truncated
  if (pick < 0.6) return Buffer.concat([b, Buffer.from(Array.from({ length: at(64) }, () => at(256)))]); // trailing junk
  if (pick < 0.75) {
    // One header byte set to an edge value.
    b[at(headerLen)] = [0, 1, 2, 3, 4, 0x7f, 0x80, 0xff][at(8)];
    return b;
  }
  if (pick < 0.85) {
    // Body bytes scrambled, header intact: a well-framed but meaningless message.
    for (let i = headerLen; i < b.length; i++) if (rand() < 0.3) b[i] = at(256);
    return b;
  }
  if (pick < 0.95) return Buffer.from(Array.from({ length: at(48) }, () => at(256))); // pure garbage
  return seed; // unmodified, so valid calls are mixed in
}

let answeredConnections = 0;

/** Sends one batch on a fresh connection, half-closes, and waits (bounded) for the agent to close. */
function blast(path: string, first: Buffer, frames: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ path, allowHalfOpen: true });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve();
    };
    const timer = setTimeout(finish, 1000);
    s.on('error', finish);
    s.on('close', finish);
    s.on('end', finish);
    let answered = false;
    s.on('data', () => {
      if (!answered) answeredConnections++;
      answered = true;
    });
    s.on('connect', () => {
      if (first.length) s.write(first);
      for (const f of frames) s.write(f);
      s.end();
    });
  });
}

async function fuzz(path: string, makeBatch: () => { first: Buffer; frames: Buffer[] }): Promise<number> {
  let sent = 0;
  const deadline = Date.now() + GIVE_UP_MS;
  const worker = async () => {
    while (sent < FRAMES_PER_WIRE && Date.now() < deadline) {
      const { first, frames } = makeBatch();
      sent += frames.length;
      await blast(path, first, frames);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return sent;
}

function ttrpcSeeds(): Buffer[] {
  const req = (id: number, service: string, method: string, payload: Uint8Array, timeoutNano = 0n) =>
    encodeFrame(id, FrameType.Request, 0, toBinary(RequestSchema, create(RequestSchema, { service, method, payload, timeoutNano })));
  return [
    req(1, 'grpc.Health', 'Check', toBinary(CheckRequestSchema, create(CheckRequestSchema))),
    req(3, 'grpc.Health', 'Version', new Uint8Array(0), 1_000_000n),
    req(5, 'grpc.AgentService', 'GetGuestDetails', toBinary(GuestDetailsRequestSchema, create(GuestDetailsRequestSchema, { memBlockSize: true }))),
    req(7, 'grpc.AgentService', 'CreateSandbox', toBinary(CreateSandboxRequestSchema, create(CreateSandboxRequestSchema, { hostname: 'h', sandboxId: 's', dns: ['1.1.1.1'] }))),
    req(9, 'grpc.AgentService', 'WaitProcess', toBinary(WaitProcessRequestSchema, create(WaitProcessRequestSchema, { containerId: 'c', execId: 'e' })), 5_000_000n),
    encodeFrame(11, FrameType.Data, 1, Buffer.from('data')),
  ];
}

/** The HTTP/2 frames a real gRPC client sends for a few calls, captured from agent-ctl's client. */
async function grpcSeeds(): Promise<Buffer[]> {
  const got: Buffer[] = [];
  const server = net.createServer((s) => s.on('data', (c: Buffer) => got.push(c)));
  const path = `/tmp/kata-fuzz-capture-${process.pid}.sock`;
  await new Promise<void>((r) => server.listen(path, r));
  const client = new GrpcClient(await connect(`unix://${path}`, { timeoutMs: 1000 }));
  const check = toBinary(CheckRequestSchema, create(CheckRequestSchema));
  for (const [svc, m] of [['grpc.Health', 'Check'], ['grpc.Health', 'Version'], ['grpc.AgentService', 'GetGuestDetails']]) {
    client.call(svc, m, check, 100).catch(() => undefined);
  }
  await new Promise((r) => setTimeout(r, 300));
  client.close();
  await new Promise<void>((r) => server.close(() => r()));
  const all = Buffer.concat(got).subarray(HTTP2_PREFACE.length);
  const frames: Buffer[] = [];
  for (let i = 0; i + 9 <= all.length; ) {
    const len = all.readUIntBE(i, 3);
    frames.push(all.subarray(i, i + 9 + len));
    i += 9 + len;
  }
  return frames;
}

async function stillAnswers(t: Test, socket: string) {
  for (const [wire, make] of [
    ['ttrpc', (d: net.Socket) => new TtrpcClient(d)],
    ['grpc', (d: net.Socket) => new GrpcClient(d)],
  ] as const) {
    const c: RpcClient = make((await connect(`unix://${socket}`, { timeoutMs: 5000 })) as net.Socket);
    const res = await c.call('grpc.Health', 'Check', toBinary(CheckRequestSchema, create(CheckRequestSchema)), 5000);
    t.same([...res], [0x08, 0x01], `${wire}: Check still answers SERVING`);
    c.close();
  }
}


t.test(`fuzz: mutated frames on every wire (seed ${SEED})`, async (t) => {
  const agent = await startAgentProcess({ env: { KATA_AGENT_LOG_LEVEL: 'info' } });
  t.teardown(() => agent.stop());
  const rand = prng(SEED);

  const tt = ttrpcSeeds();
  const sentTtrpc = await fuzz(agent.socketPath, () => ({
    first: Buffer.alloc(0),
    frames: Array.from({ length: FRAMES_PER_CONNECTION }, () => {
      const s = tt[Math.floor(rand() * tt.length)];
      // The router needs a 0x00 first byte to reach ttrpc; keep most connections there.
      return mutate(rand, s, 10);
    }),
  }));
  t.ok(sentTtrpc >= FRAMES_PER_WIRE, `ttrpc: ${sentTtrpc} mutated frames sent`);
  t.ok(answeredConnections > 0, `ttrpc: the agent answered on ${answeredConnections} fuzzed connections (the frames were read)`);
  answeredConnections = 0;
  await stillAnswers(t, agent.socketPath);

  const h2 = await grpcSeeds();
  t.ok(h2.length >= 3, `captured ${h2.length} HTTP/2 frames from a real client`);
  const sentGrpc = await fuzz(agent.socketPath, () => ({
    // Mostly a correct preface so the frames reach the HTTP/2 server; sometimes a mutated one.
    first: rand() < 0.9 ? HTTP2_PREFACE : mutate(rand, HTTP2_PREFACE, 0),
    frames: Array.from({ length: FRAMES_PER_CONNECTION }, () => mutate(rand, h2[Math.floor(rand() * h2.length)], 9)),
  }));
  t.ok(sentGrpc >= FRAMES_PER_WIRE, `gRPC: ${sentGrpc} mutated frames sent`);
  t.ok(answeredConnections > 0, `gRPC: the agent answered on ${answeredConnections} fuzzed connections`);
  await stillAnswers(t, agent.socketPath);

  t.equal(agent.child.exitCode, null, 'agent still running');
  t.notMatch(agent.logs(), /uncaught exception|unhandled rejection/, 'no uncaught errors logged');
});
