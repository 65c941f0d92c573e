// Throws ≥10,000 mutated frames per wire at a running agent, then checks that it still answers
// Check on both wires and logged no uncaught error. The mutations come from a seeded PRNG, so a
// failure can be replayed with the seed printed in the test name.
import t, { type Test } from 'tap';
import net from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import { CheckRequestSchema } from '../../protos/gen/health_pb.js';
import {
  CreateContainerRequestSchema,
  GuestDetailsRequestSchema,
  RemoveContainerRequestSchema,
  StartContainerRequestSchema,
} from '../../protos/gen/agent_pb.js';
import { HTTP2_PREFACE } from '../../agent/src/transport/wire-router.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { GrpcClient, type RpcClient } from '../../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { startAgentProcess, tempDir } from '../support/agent-process.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { fdsSettle, fdsSteady, fdTargets, fuzzFrames, grpcSeeds, mutate, payloadSeeds, prng, ttrpcSeeds, zombiesOf } from '../support/fuzz.js';
import { busyboxSpec } from '../support/oci-spec.js';

const FRAMES_PER_WIRE = 10_000;
const FRAMES_PER_CONNECTION = 50;
const PARALLEL = 8;
// Safety net only: the test fails (rather than hangs) if the agent stops consuming input.
const GIVE_UP_MS = 240_000;
const SEED = Number(process.env.FUZZ_SEED ?? 20261127);
const PAYLOADS_PER_WIRE = 3_000;

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
  // The first AgentService call builds the domains and starts the helper pool: count fds after it.
  {
    const c = new TtrpcClient(await connect(`unix://${agent.socketPath}`, { timeoutMs: 5000 }));
    await c.call('grpc.AgentService', 'GetGuestDetails', toBinary(GuestDetailsRequestSchema, create(GuestDetailsRequestSchema)), 30_000);
    c.close();
  }
  const fdsAtStart = await fdsSteady(agent.pid);
  const targetsAtStart = fdTargets(agent.pid);

  const tt = ttrpcSeeds();
  const ttrpcRun = await fuzzFrames(
    agent.socketPath,
    FRAMES_PER_WIRE,
    () => ({
      first: Buffer.alloc(0),
      frames: Array.from({ length: FRAMES_PER_CONNECTION }, () => {
        const s = tt[Math.floor(rand() * tt.length)];
        // The router needs a 0x00 first byte to reach ttrpc; keep most connections there.
        return mutate(rand, s, 10);
      }),
    }),
    PARALLEL,
    GIVE_UP_MS,
  );
  t.ok(ttrpcRun.sent >= FRAMES_PER_WIRE, `ttrpc: ${ttrpcRun.sent} mutated frames sent`);
  t.ok(ttrpcRun.answered > 0, `ttrpc: the agent answered on ${ttrpcRun.answered} fuzzed connections (the frames were read)`);
  await stillAnswers(t, agent.socketPath);

  const h2 = await grpcSeeds();
  t.ok(h2.length >= 3, `captured ${h2.length} HTTP/2 frames from a real client`);
  const grpcRun = await fuzzFrames(
    agent.socketPath,
    FRAMES_PER_WIRE,
    () => ({
      // Mostly a correct preface so the frames reach the HTTP/2 server; sometimes a mutated one.
      first: rand() < 0.9 ? HTTP2_PREFACE : mutate(rand, HTTP2_PREFACE, 0),
      frames: Array.from({ length: FRAMES_PER_CONNECTION }, () => mutate(rand, h2[Math.floor(rand() * h2.length)], 9)),
    }),
    PARALLEL,
    GIVE_UP_MS,
  );
  t.ok(grpcRun.sent >= FRAMES_PER_WIRE, `gRPC: ${grpcRun.sent} mutated frames sent`);
  t.ok(grpcRun.answered > 0, `gRPC: the agent answered on ${grpcRun.answered} fuzzed connections`);
  await stillAnswers(t, agent.socketPath);

  // Well-framed calls whose protobuf payloads are mutated, over both wires' real clients. As root, a
  // running container "fuzz-c" makes ExecProcess, WriteStdin and UpdateContainer reach real code.
  const payloads = payloadSeeds();
  const ctl = new TtrpcClient(await connect(`unix://${agent.socketPath}`, { timeoutMs: 5000 }));
  const withContainer = containerTestSkipReason() === undefined;
  if (withContainer) {
    const rootfs = buildBusyboxRootfs(tempDir('kata-fuzz-rootfs-'));
    const spec = busyboxSpec(rootfs, ['/bin/sh', '-c', 'while :; do sleep 1; done']);
    await ctl.call(
      'grpc.AgentService',
      'CreateContainer',
      toBinary(CreateContainerRequestSchema, create(CreateContainerRequestSchema, { containerId: 'fuzz-c', execId: 'fuzz-c', OCI: spec })),
      30_000,
    );
    await ctl.call(
      'grpc.AgentService',
      'StartContainer',
      toBinary(StartContainerRequestSchema, create(StartContainerRequestSchema, { containerId: 'fuzz-c' })),
      30_000,
    );
  } else {
    t.comment(`payload fuzz without a running container: ${containerTestSkipReason()}`);
  }
  for (const [wire, make] of [
    ['ttrpc', (d: net.Socket) => new TtrpcClient(d)],
    ['grpc', (d: net.Socket) => new GrpcClient(d)],
  ] as const) {
    const codes = new Map<string, number>();
    const internal = new Set<string>();
    let sent = 0;
    const worker = async () => {
      const c: RpcClient = make((await connect(`unix://${agent.socketPath}`, { timeoutMs: 5000 })) as net.Socket);
      while (sent < PAYLOADS_PER_WIRE) {
        sent++;
        const [method, seed] = payloads[Math.floor(rand() * payloads.length)];
        const body = mutate(rand, Buffer.from(seed), 0);
        const code = await c.call('grpc.AgentService', method, body, 10_000).then(
          () => 'OK',
          (e: { code?: number; details?: string }) => {
            if (e.code === 13 || e.code === 2) internal.add(`${method}: ${e.details}`);
            return String(e.code);
          },
        );
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
      c.close();
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    t.comment(`${wire}: ${sent} mutated payloads, status codes ${JSON.stringify(Object.fromEntries(codes))}`);
    t.same([...internal], [], `${wire}: bad input is answered with a clear status, never INTERNAL/UNKNOWN`);
    t.notOk(codes.has('14'), `${wire}: no call lost its connection (UNAVAILABLE)`);
    t.notOk(codes.has('4'), `${wire}: no call went unanswered (DEADLINE_EXCEEDED)`);
  }
  await stillAnswers(t, agent.socketPath);
  if (withContainer) {
    await ctl.call(
      'grpc.AgentService',
      'RemoveContainer',
      toBinary(RemoveContainerRequestSchema, create(RemoveContainerRequestSchema, { containerId: 'fuzz-c' })),
      30_000,
    );
  }
  ctl.close();

  const fdsAtEnd = await fdsSettle(agent.pid, fdsAtStart);
  const targetsAtEnd = fdTargets(agent.pid);
  const opened = targetsAtEnd.filter((f) => !targetsAtStart.includes(f));
  const closed = targetsAtStart.filter((f) => !targetsAtEnd.includes(f));
  t.equal(
    fdsAtEnd,
    fdsAtStart,
    `the agent's open fds are back to ${fdsAtStart} (opened since: ${opened.join(', ') || 'none'}; closed since: ${closed.join(', ') || 'none'})`,
  );
  t.same(zombiesOf(agent.pid), [], 'no zombie children');
  t.equal(agent.child.exitCode, null, 'agent still running');
  t.notMatch(agent.logs(), /uncaught exception|unhandled rejection/, 'no uncaught errors logged');
});
