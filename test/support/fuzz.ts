// Seeded mutation fuzzing of the agent's wires, shared by test/integration/fuzz.test.ts and the soak
// benchmark: frame and payload seeds taken from real clients, mutations from a seeded PRNG (so a
// failure replays from its seed), and the process checks made afterwards (fds, zombies).
import fs from 'node:fs';
import net from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import { RequestSchema } from '../../protos/gen/ttrpc_pb.js';
import { CheckRequestSchema } from '../../protos/gen/health_pb.js';
import {
  CopyFileRequestSchema,
  CreateContainerRequestSchema,
  CreateSandboxRequestSchema,
  ExecProcessRequestSchema,
  GuestDetailsRequestSchema,
  UpdateContainerRequestSchema,
  WaitProcessRequestSchema,
  WriteStreamRequestSchema,
} from '../../protos/gen/agent_pb.js';
import { encodeFrame, FrameType } from '../../agent/src/transport/ttrpc/frame.js';
import { HTTP2_PREFACE } from '../../agent/src/transport/wire-router.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { GrpcClient } from '../../agent-ctl/src/grpc-client.js';
import { busyboxSpec } from './oci-spec.js';

export function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export function mutate(rand: () => number, seed: Buffer, headerLen: number): Buffer {
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

/** Sends one batch on a fresh connection, half-closes, and waits (bounded) for the agent to close; true if it answered. */
function blast(path: string, first: Buffer, frames: Buffer[]): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path, allowHalfOpen: true });
    let done = false;
    let answered = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(answered);
    };
    const timer = setTimeout(finish, 1000);
    s.on('error', finish);
    s.on('close', finish);
    s.on('end', finish);
    s.on('data', () => (answered = true));
    s.on('connect', () => {
      if (first.length) s.write(first);
      for (const f of frames) s.write(f);
      s.end();
    });
  });
}

/**
 * Sends `total` frames in batches from `makeBatch`, each batch on a fresh connection, `parallel`
 * connections at a time; stops early (as a safety net, not a measure) after `giveUpMs`.
 */
export async function fuzzFrames(
  path: string,
  total: number,
  makeBatch: () => { first: Buffer; frames: Buffer[] },
  parallel = 8,
  giveUpMs = 240_000,
): Promise<{ sent: number; answered: number }> {
  let sent = 0;
  let answered = 0;
  const deadline = Date.now() + giveUpMs;
  const worker = async () => {
    while (sent < total && Date.now() < deadline) {
      const { first, frames } = makeBatch();
      sent += frames.length;
      if (await blast(path, first, frames)) answered++;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { sent, answered };
}

export function ttrpcSeeds(): Buffer[] {
  const req = (id: number, service: string, method: string, payload: Uint8Array, timeoutNano = 0n) =>
    encodeFrame(id, FrameType.Request, 0, toBinary(RequestSchema, create(RequestSchema, { service, method, payload, timeoutNano })));
  return [
    req(1, 'grpc.Health', 'Check', toBinary(CheckRequestSchema, create(CheckRequestSchema))),
    req(3, 'grpc.Health', 'Version', new Uint8Array(0), 1_000_000n),
    req(5, 'grpc.AgentService', 'GetGuestDetails', toBinary(GuestDetailsRequestSchema, create(GuestDetailsRequestSchema, { memBlockSize: true }))),
    req(
      7,
      'grpc.AgentService',
      'CreateSandbox',
      toBinary(CreateSandboxRequestSchema, create(CreateSandboxRequestSchema, { hostname: 'h', sandboxId: 's', dns: ['1.1.1.1'] })),
    ),
    req(
      9,
      'grpc.AgentService',
      'WaitProcess',
      toBinary(WaitProcessRequestSchema, create(WaitProcessRequestSchema, { containerId: 'c', execId: 'e' })),
      5_000_000n,
    ),
    encodeFrame(11, FrameType.Data, 1, Buffer.from('data')),
  ];
}

/** The HTTP/2 frames a real gRPC client sends for a few calls, captured from agent-ctl's client. */
export async function grpcSeeds(): Promise<Buffer[]> {
  const got: Buffer[] = [];
  const server = net.createServer((s) => s.on('data', (c: Buffer) => got.push(c)));
  const path = `/tmp/kata-fuzz-capture-${process.pid}.sock`;
  await new Promise<void>((r) => server.listen(path, r));
  const client = new GrpcClient(await connect(`unix://${path}`, { timeoutMs: 1000 }));
  const check = toBinary(CheckRequestSchema, create(CheckRequestSchema));
  for (const [svc, m] of [
    ['grpc.Health', 'Check'],
    ['grpc.Health', 'Version'],
    ['grpc.AgentService', 'GetGuestDetails'],
  ]) {
    client.call(svc, m, check, 100).catch(() => undefined);
  }
  await new Promise((r) => setTimeout(r, 300));
  client.close();
  await new Promise<void>((r) => server.close(() => r()));
  const all = Buffer.concat(got).subarray(HTTP2_PREFACE.length);
  const frames: Buffer[] = [];
  for (let i = 0; i + 9 <= all.length;) {
    const len = all.readUIntBE(i, 3);
    frames.push(all.subarray(i, i + 9 + len));
    i += 9 + len;
  }
  return frames;
}

/** Well-formed requests of the RPCs that take the most structure, for payload-only mutation. */
export function payloadSeeds(): [string, Uint8Array][] {
  const spec = busyboxSpec('/nonexistent-fuzz-root', ['/bin/sh', '-c', 'echo x'], { memoryLimit: 1n << 26n });
  return [
    [
      'CreateContainer',
      toBinary(
        CreateContainerRequestSchema,
        create(CreateContainerRequestSchema, {
          containerId: 'fuzz-c',
          execId: 'fuzz-c',
          OCI: spec,
          storages: [{ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', mountPoint: '/nonexistent-fuzz-mp' }],
        }),
      ),
    ],
    ['ExecProcess', toBinary(ExecProcessRequestSchema, create(ExecProcessRequestSchema, { containerId: 'fuzz-c', execId: 'e1', process: spec.Process }))],
    ['WriteStdin', toBinary(WriteStreamRequestSchema, create(WriteStreamRequestSchema, { containerId: 'fuzz-c', execId: 'e1', data: Buffer.from('hello\n') }))],
    [
      'CopyFile',
      toBinary(
        CopyFileRequestSchema,
        create(CopyFileRequestSchema, {
          path: '/run/kata-containers/shared/containers/fuzz/f',
          fileSize: 5n,
          fileMode: 0o644,
          dirMode: 0o755,
          uid: 0,
          gid: 0,
          offset: 0n,
          data: Buffer.from('hello'),
        }),
      ),
    ],
    [
      'UpdateContainer',
      toBinary(
        UpdateContainerRequestSchema,
        create(UpdateContainerRequestSchema, {
          containerId: 'fuzz-c',
          resources: { Memory: { Limit: 1n << 26n }, CPU: { Shares: 512n, Quota: 50000n, Period: 100000n }, Pids: { Limit: 100n }, BlockIO: { Weight: 500 } },
        }),
      ),
    ],
  ];
}

/** Open fds of a process (entries of /proc/<pid>/fd). */
export const fdCount = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

/** What each open fd of a process points at ("3 socket:[1234]"), for a message when counts differ. */
export function fdTargets(pid: number): string[] {
  return fs.readdirSync(`/proc/${pid}/fd`).map((n) => {
    try {
      return `${n} ${fs.readlinkSync(`/proc/${pid}/fd/${n}`)}`;
    } catch {
      return `${n} (gone)`;
    }
  });
}

/** Children of `pid` that are zombies. */
export function zombiesOf(pid: number): string[] {
  const out: string[] = [];
  for (const p of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === pid && f[0] === 'Z') out.push(p);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Polls (bounded) until the agent's fd count is back to `start`; returns the last count seen. */
/**
 * The fd count once it has stayed the same for half a second: a baseline taken while the agent is
 * still starting its helper pool (a spawn opens its socketpair and stdio pipes one by one) would be
 * one the end count can never match.
 */
export async function fdsSteady(pid: number): Promise<number> {
  let n = fdCount(pid);
  for (let same = 0, i = 0; same < 5 && i < 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const m = fdCount(pid);
    same = m === n ? same + 1 : 0;
    n = m;
  }
  return n;
}

export async function fdsSettle(pid: number, start: number): Promise<number> {
  let n = fdCount(pid);
  for (let i = 0; i < 100 && n > start; i++) {
    await new Promise((r) => setTimeout(r, 100));
    n = fdCount(pid);
  }
  return n;
}
