// Agent memory from /proc: idle after one ttrpc Check (a kata 3.x host), after its first AgentService
// call (which builds the agent service: descriptors and domains), after 1,000 ttrpc RPCs, after 1,000
// gRPC RPCs (kata 1.x; loads grpc-js), and with 10 running containers. The idle and first-call figures
// are also taken with node started as the guest image starts it (rootfs-builder/guest-node.json).
// Peer: an idle Node process; for the burst rows, the same agent with its heap tuning and idle
// reclaim off (KATA_AGENT_HEAP_TUNING=0 KATA_AGENT_IDLE_RECLAIM=0: agent/src/memory/) in the same
// round. The pod rows count the agent and every node helper it keeps (the create pool's), in a
// fresh agent, before and after the helpers' idle timeout. Issue 15 measured kata's Go agent 1.x on
// this machine: 3.0 MB idle, 6.9 MB after the bursts, 8.9 MB with 10 containers (target column).
// Figures after a step are read 2 s after it, once the agent's idle reclaim (1 s without calls) has
// run, except the burst's peak, read as its last call returns.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
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

/** The agent as it was before issue 15's memory work. */
const baseline = { KATA_AGENT_HEAP_TUNING: '0', KATA_AGENT_IDLE_RECLAIM: '0' };
const baselineName = 'tuning + reclaim off';
/** agent.helper_idle_timeout for the pod rows: short, so a round does not wait the default 60 s. */
const HELPER_IDLE_S = 3;

/** RssAnon of the agent and of its node children (container helpers; container programs are not node). */
function agentAndHelpers(pid: number): { total: number; helpers: number } {
  let helpers = 0;
  let kids = '';
  try {
    kids = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' });
  } catch {
    // ps exits 1 when there is no child.
  }
  for (const line of kids.trim().split('\n').filter(Boolean)) {
    const [child, comm] = line.trim().split(/\s+/);
    if (comm !== 'node') continue;
    try {
      helpers += memoryOf(Number(child)).rssAnon;
    } catch {
      // exited meanwhile
    }
  }
  return { total: memoryOf(pid).rssAnon + helpers, helpers };
}

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
    burstEnd: [] as number[],
    ownBurst: [] as number[],
    ownBurstEnd: [] as number[],
    untunedBurstEnd: [] as number[],
    pod: [] as number[],
    podRetired: [] as number[],
    podHelpers: [] as number[],
    createFresh: [] as number[],
    createPooled: [] as number[],
    pause: [] as number[],
  };
  /**
   * RssAnon right at the end of 2,000 ttrpc + 2,000 gRPC calls, 2 s later (the idle reclaim runs after
   * 1 s without calls) and 10 s later; node started as the guest image starts it.
   */
  const burst = async (name: string, env: Record<string, string>) => {
    const a = startAgent(name, guestNode.flags, { ...guestNode.env, ...env });
    try {
      const t = new TtrpcClient(await connectWhenReady(a.sock, 10_000));
      await rpcs(t, 2000);
      const g = new GrpcClient(await connectWhenReady(a.sock, 10_000));
      await rpcs(g, 2000);
      const end = memoryOf(a.child.pid!).rssAnon;
      g.close();
      await sleep(2000);
      const after = memoryOf(a.child.pid!).rssAnon;
      await sleep(8000);
      const idle = memoryOf(a.child.pid!).rssAnon;
      t.close();
      return { end, after, idle };
    } finally {
      await stop(a.child);
    }
  };
  const startAgent = (name: string, flags: string[] = [], env: Record<string, string> = {}, args: string[] = []) => {
    const sock = path.join(dir, `${name}.sock`);
    const child = spawn(process.execPath, [...flags, agentBin, '--state-root', path.join(dir, `state-${name}`), ...args], {
      env: { ...process.env, KATA_AGENT_LOG_LEVEL: 'warn', ...env, KATA_AGENT_SERVER_ADDR: `unix://${sock}` },
      stdio: ['ignore', 'ignore', env.KATA_AGENT_LOG_LEVEL === 'debug' ? 'pipe' : 'ignore'],
    });
    return { child, sock };
  };
  /** A pod in a fresh agent: CreateSandbox and 10 running containers; agent + its node helpers, before and after their idle timeout. */
  const pod = async (r: number) => {
    const config = path.join(dir, 'helpers.toml');
    fs.writeFileSync(config, `helper_idle_timeout = "${HELPER_IDLE_S}s"\n`);
    const a = startAgent(`p${r}`, [], {}, ['--config', config]);
    try {
      const t = new TtrpcClient(await connectWhenReady(a.sock, 10_000));
      await call(t, 'createSandbox', { hostname: 'pod', sandboxId: `pod${r}` });
      for (let i = 0; i < 10; i++) {
        await call(t, 'createContainer', { containerId: `pod-${r}-${i}`, OCI: busyboxSpec(rootfs, ['/bin/sleep', '1000']) });
        await call(t, 'startContainer', { containerId: `pod-${r}-${i}` });
      }
      await sleep(1500);
      const withHelpers = agentAndHelpers(a.child.pid!);
      const end = Date.now() + HELPER_IDLE_S * 1000 + 10_000;
      while (agentAndHelpers(a.child.pid!).helpers > 0 && Date.now() < end) await sleep(200);
      await sleep(1500);
      const retired = agentAndHelpers(a.child.pid!);
      // The price of retiring: a CreateContainer that finds the pool empty starts its own helper;
      // the one after it finds the helper the pool started meanwhile.
      const createMs = async (id: string) => {
        const t0 = performance.now();
        await call(t, 'createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['/bin/sleep', '1000']) });
        return performance.now() - t0;
      };
      const fresh = await createMs(`pod-${r}-fresh`);
      await sleep(1000);
      const pooled = await createMs(`pod-${r}-pooled`);
      await call(t, 'destroySandbox', {});
      t.close();
      return { withHelpers, retired, fresh, pooled };
    } finally {
      await stop(a.child);
    }
  };
  /** Pauses of the idle reclaim, from the agent's debug log after short bursts. */
  const pauses = async (r: number) => {
    const a = startAgent(`r${r}`, [], { KATA_AGENT_LOG_LEVEL: 'debug' });
    let log = '';
    a.child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const t = new TtrpcClient(await connectWhenReady(a.sock, 10_000));
      for (let i = 0; i < 3; i++) {
        await rpcs(t, 500);
        await sleep(2500);
      }
      t.close();
    } finally {
      await stop(a.child);
    }
    return log
      .split('\n')
      .filter((l) => l.includes('idle memory reclaimed'))
      .map((l) => (JSON.parse(l) as { pause_ms: number }).pause_ms);
  };
  /** Idle after one Check, then after one GetGuestDetails (the agent service's first call). */
  const idleThenFirstCall = async (pid: number, t: RpcClient) => {
    await t.call('grpc.Health', 'Check', new Uint8Array(0), 5000);
    await sleep(2000);
    const idle = memoryOf(pid);
    await t.call('grpc.AgentService', 'GetGuestDetails', new Uint8Array(0), 30_000);
    await sleep(2000);
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
    const untuned = await burst(`u${r}`, baseline);
    const ownH2 = await burst(`o${r}`, { KATA_AGENT_GRPC_SERVER: 'own' });
    s.ownBurst.push(ownH2.after);
    s.ownBurstEnd.push(ownH2.end);
    s.burstEnd.push(tuned.end);
    s.untunedBurstEnd.push(untuned.end);
    s.burst.push(tuned.after);
    s.burstIdle.push(tuned.idle);
    s.untunedBurst.push(untuned.after);
    s.untunedBurstIdle.push(untuned.idle);
    if (canRunContainers) {
      const p = await pod(r);
      s.pod.push(p.withHelpers.total);
      s.podHelpers.push(p.withHelpers.helpers);
      s.podRetired.push(p.retired.total);
      s.createFresh.push(p.fresh);
      s.createPooled.push(p.pooled);
    }
    s.pause.push(...(await pauses(r)));
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
      await sleep(2000);
      s.ttrpc.push(memoryOf(agent.pid!).rssAnon);
      const g = new GrpcClient(await connectWhenReady(sock, 10_000));
      await rpcs(g, 1000);
      g.close();
      await sleep(2000);
      s.grpc.push(memoryOf(agent.pid!).rssAnon);
      if (canRunContainers) {
        await call(t, 'createSandbox', { hostname: 'mem', sandboxId: `mem${r}` });
        for (let i = 0; i < 10; i++) {
          await call(t, 'createContainer', { containerId: `mem-${r}-${i}`, OCI: busyboxSpec(rootfs, ['/bin/sleep', '1000']) });
          await call(t, 'startContainer', { containerId: `mem-${r}-${i}` });
        }
        await sleep(2000);
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
    {
      measure: 'agent RssAnon idle (after one ttrpc Check)',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.idle),
      peer,
      target: '≤ 8 MB (issue 15; kata Go agent 1.x: 3.0 MB)',
    },
    {
      measure: 'agent RssAnon idle, node started as the guest image does',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.guestIdle),
      peer,
      target: '≤ 8 MB (issue 15; kata Go agent 1.x: 3.0 MB)',
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
      measure: 'agent RssAnon at the end of 2,000 ttrpc + 2,000 gRPC RPCs (the peak), vs heap tuning and idle reclaim off',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.burstEnd),
      peer: { name: baselineName, samples: s.untunedBurstEnd },
    },
    {
      measure: 'agent RssAnon 2 s after 2,000 ttrpc + 2,000 gRPC RPCs, vs heap tuning and idle reclaim off',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.burst),
      peer: { name: baselineName, samples: s.untunedBurst },
      target: '≤ 14 MB (issue 15; kata Go agent 1.x: 6.9 MB)',
    },
    {
      measure: 'agent RssAnon 2 s after that burst, gRPC on our own HTTP/2 (KATA_AGENT_GRPC_SERVER=own) vs grpc-js',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.ownBurst),
      peer: { name: 'grpc-js (default)', samples: s.burst },
      target: '≤ 14 MB (issue 15; kata Go agent 1.x: 6.9 MB)',
    },
    {
      measure: 'agent RssAnon at the end of that burst (the peak), own HTTP/2 vs grpc-js',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.ownBurstEnd),
      peer: { name: 'grpc-js (default)', samples: s.burstEnd },
    },
    {
      measure: 'agent RssAnon 10 s after that burst, vs heap tuning and idle reclaim off',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.burstIdle),
      peer: { name: baselineName, samples: s.untunedBurstIdle },
      target: 'memory given back once idle',
    },
  ];
  if (s.ctr.length) {
    rows.push({ measure: 'agent RssAnon with 10 running containers (after the RPC bursts above)', unit: 'MB', higherIsBetter: false, ours: ours(s.ctr), peer });
    rows.push({
      measure: 'pod of 10 running containers: agent + node helpers, 1.5 s after the last start',
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.pod),
      peer: { name: 'of which node helpers', samples: s.podHelpers },
      target: '≤ 18 MB (issue 15; kata Go agent 1.x: 8.9 MB)',
    });
    rows.push({
      measure: `pod of 10 running containers: agent + node helpers, after the helpers' idle timeout (${HELPER_IDLE_S} s here, 60 s by default)`,
      unit: 'MB',
      higherIsBetter: false,
      ours: ours(s.podRetired),
      peer: { name: 'before it', samples: s.pod },
      target: '≤ 18 MB (issue 15; kata Go agent 1.x: 8.9 MB)',
    });
  }
  if (s.createFresh.length)
    rows.push({
      measure: "CreateContainer once the helpers' idle timeout emptied the pool (own node start) vs from the pool",
      unit: 'ms',
      higherIsBetter: false,
      ours: ours(s.createFresh),
      peer: { name: 'from the pool', samples: s.createPooled },
      target: 'the stated price of retiring idle helpers',
    });
  if (s.pause.length)
    rows.push({
      measure: 'idle reclaim pause (one compacting GC + malloc_trim, after 500 RPCs and 1 s quiet)',
      unit: 'ms',
      higherIsBetter: false,
      ours: ours(s.pause),
    });
  return rows;
}
