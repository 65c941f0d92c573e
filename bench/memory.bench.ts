// Agent memory from /proc: idle after one ttrpc Check (a kata 3.x host), after its first AgentService
// call (which builds the agent service: descriptors and domains), after 1,000 ttrpc RPCs, after 1,000
// gRPC RPCs (kata 1.x; loads grpc-js), and with 10 running containers. The idle and first-call figures
// are also taken with node started as the guest image starts it (rootfs-builder/guest-node.json).
// Peer: an idle Node process; for the burst rows, the same agent with its heap tuning off
// (KATA_AGENT_HEAP_TUNING=0, agent/src/memory/heap-tuning.ts) in the same round.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { GrpcClient, type RpcClient } from '../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../agent-ctl/src/ttrpc-client.js';
import { AgentService } from '../protos/gen/agent_pb.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../test/support/busybox-rootfs.js';
import { busyboxSpec } from '../test/support/oci-spec.js';
import type { BenchOptions, BenchRow } from './types.js';
import { agentBin, connectWhenReady, memoryOf, repoRoot, sleep, tempDir } from './support.js';

const guestNode = JSON.parse(fs.readFileSync(path.join(repoRoot, 'rootfs-builder', 'guest-node.json'), 'utf8')) as {
  env: Record<string, string>;
  flags: string[];
};

type Methods = typeof AgentService.method;

async function call<K extends keyof Methods>(c: RpcClient, method: K, req: Parameters<typeof create<Methods[K]['input']>>[1]): Promise<void> {
  const m = AgentService.method[method];
  await c.call('grpc.AgentService', m.name, toBinary(m.input, create(m.input, req as never)), 60_000);
}

async function rpcs(c: RpcClient, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await c.call(i % 2 ? 'grpc.Health' : 'grpc.AgentService', i % 2 ? 'Check' : 'GetGuestDetails', new Uint8Array(0), 5000);
}

async function stop(c: ChildProcess): Promise<void> {
  const exited = new Promise((res) => c.once('exit', res));
  process.kill(c.pid!, 'SIGKILL');
  await exited;
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const rounds = opts.quick ? 2 : 5;
  const dir = tempDir('kata-bench-mem-');
  const canRunContainers = !containerTestSkipReason();
  const rootfs = canRunContainers ? buildBusyboxRootfs(path.join(dir, 'bb')) : '';
  const s = {
    idle: [] as number[],
    pss: [] as number[],
    first: [] as number[],
    guestIdle: [] as number[],
    guestFirst: [] as number[],
    ttrpc: [] as number[],
    grpc: [] as number[],
    ctr: [] as number[],
    node: [] as number[],
    burst: [] as number[],
    burstIdle: [] as number[],
    untunedBurst: [] as number[],
    untunedBurstIdle: [] as number[],
  };
  /** RssAnon after 2,000 ttrpc + 2,000 gRPC calls, and once more after 10 s without calls. */
  const burst = async (name: string, env: Record<string, string>) => {
    const a = startAgent(name, [], env);
    try {
      const t = new TtrpcClient(await connectWhenReady(a.sock, 10_000));
      await rpcs(t, 2000);
      const g = new GrpcClient(await connectWhenReady(a.sock, 10_000));
      await rpcs(g, 2000);
      g.close();
      await sleep(1000);
      const after = memoryOf(a.child.pid!).rssAnon;
      await sleep(10_000);
      const idle = memoryOf(a.child.pid!).rssAnon;
      t.close();
      return { after, idle };
    } finally {
      await stop(a.child);
    }
  };
  const startAgent = (name: string, flags: string[] = [], env: Record<string, string> = {}) => {
    const sock = path.join(dir, `${name}.sock`);
    const child = spawn(process.execPath, [...flags, agentBin, '--state-root', path.join(dir, `state-${name}`)], {
      env: { ...process.env, ...env, KATA_AGENT_SERVER_ADDR: `unix://${sock}`, KATA_AGENT_LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    return { child, sock };
  };
  /** Idle after one Check, then after one GetGuestDetails (the agent service's first call). */
  const idleThenFirstCall = async (pid: number, t: RpcClient) => {
    await t.call('grpc.Health', 'Check', new Uint8Array(0), 5000);
    await sleep(1000);
    const idle = memoryOf(pid);
    await t.call('grpc.AgentService', 'GetGuestDetails', new Uint8Array(0), 30_000);
    await sleep(1000);
    return { idle, first: memoryOf(pid).rssAnon };
  };
  for (let r = 0; r < rounds; r++) {
    opts.progress(`memory round ${r + 1}/${rounds}`);
    const guest = startAgent(`g${r}`, guestNode.flags, guestNode.env);
    try {
      const t = new TtrpcClient(await connectWhenReady(guest.sock, 10_000));
      const m = await idleThenFirstCall(guest.child.pid!, t);
      s.guestIdle.push(m.idle.rssAnon);
      s.guestFirst.push(m.first);
      t.close();
    } finally {
      await stop(guest.child);
    }
    const tuned = await burst(`b${r}`, {});
    const untuned = await burst(`u${r}`, { KATA_AGENT_HEAP_TUNING: '0' });
    s.burst.push(tuned.after);
    s.burstIdle.push(tuned.idle);
    s.untunedBurst.push(untuned.after);
    s.untunedBurstIdle.push(untuned.idle);
    const { child: agent, sock } = startAgent(`m${r}`);
    const peer = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const t = new TtrpcClient(await connectWhenReady(sock, 10_000));
      const m = await idleThenFirstCall(agent.pid!, t);
      s.idle.push(m.idle.rssAnon);
      s.pss.push(m.idle.pss);
      s.first.push(m.first);
      s.node.push(memoryOf(peer.pid!).rssAnon);
      await rpcs(t, 1000);
      await sleep(500);
      s.ttrpc.push(memoryOf(agent.pid!).rssAnon);
      const g = new GrpcClient(await connectWhenReady(sock, 10_000));
      await rpcs(g, 1000);
      g.close();
      await sleep(500);
      s.grpc.push(memoryOf(agent.pid!).rssAnon);
      if (canRunContainers) {
        await call(t, 'createSandbox', { hostname: 'mem', sandboxId: `mem${r}` });
        for (let i = 0; i < 10; i++) {
          await call(t, 'createContainer', { containerId: `mem-${r}-${i}`, OCI: busyboxSpec(rootfs, ['/bin/sleep', '1000']) });
          await call(t, 'startContainer', { containerId: `mem-${r}-${i}` });
        }
        await sleep(500);
        s.ctr.push(memoryOf(agent.pid!).rssAnon);
        await call(t, 'destroySandbox', {});
      }
      t.close();
    } finally {
      await stop(agent);
      await stop(peer);
    }
  }
  const ours = (samples: number[]) => ({ name: 'kata-agent-ts', samples });
  const peer = { name: 'idle node', samples: s.node };
  const rows: BenchRow[] = [
    { measure: 'agent RssAnon idle (after one ttrpc Check)', unit: 'MB', higherIsBetter: false, ours: ours(s.idle), peer, target: '≤ 15 MB' },
    {
      measure: 'agent RssAnon idle, node started as the guest image does',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.guestIdle),
      peer,
      target: '≤ 15 MB',
    },
    { measure: 'agent RssAnon after its first AgentService call (service built)', unit: 'MB', higherIsBetter: false, ours: ours(s.first), peer },
    {
      measure: 'agent RssAnon after its first AgentService call, node started as the guest image does',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.guestFirst),
      peer,
    },
    { measure: 'agent RssAnon after 1,000 ttrpc RPCs', unit: 'MB', higherIsBetter: false, ours: ours(s.ttrpc), peer },
    { measure: 'agent RssAnon after 1,000 more gRPC RPCs (loads grpc-js)', unit: 'MB', higherIsBetter: false, ours: ours(s.grpc), peer },
    { measure: 'agent PSS idle', unit: 'MB', higherIsBetter: false, ours: ours(s.pss) },
    {
      measure: 'agent RssAnon after 2,000 ttrpc + 2,000 gRPC RPCs, heap tuned vs not',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.burst),
      peer: { name: 'KATA_AGENT_HEAP_TUNING=0', samples: s.untunedBurst },
      target: '≤ 14 MB (issue 15; kata Go agent 1.x: 6.9 MB)',
    },
    {
      measure: 'agent RssAnon 10 s after that burst, heap tuned vs not',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.burstIdle),
      peer: { name: 'KATA_AGENT_HEAP_TUNING=0', samples: s.untunedBurstIdle },
      target: 'memory given back once idle',
    },
  ];
  if (s.ctr.length) rows.push({ measure: 'agent RssAnon with 10 running containers', unit: 'MB', higherIsBetter: false, ours: ours(s.ctr), peer });
  return rows;
}
