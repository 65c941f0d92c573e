// Cost of the cgroup work on a container's path through the agent: create with limits
// (CreateContainer), stats (StatsContainer), freeze+thaw of a group with one process
// (Pause/ResumeContainer), destroy (RemoveContainer). Needs root; returns no rows otherwise.
// No peer: runc does the same file writes inside `runc run`, where they cannot be timed apart.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { create } from '@bufbuild/protobuf';
import { LinuxResourcesSchema } from '../protos/gen/oci_pb.js';
import { createCgroupManager } from '../agent/src/cgroups/detect.js';
import type { BenchOptions, BenchRow } from './types.js';

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  if (process.getuid?.() !== 0) {
    opts.progress('cgroups: skipped (needs root)');
    return [];
  }
  const mgr = createCgroupManager();
  const resources = create(LinuxResourcesSchema, {
    Memory: { Limit: 64n << 20n },
    CPU: { Shares: 512n, Quota: 50000n, Period: 100000n },
    Pids: { Limit: 100n },
  });
  const runs = opts.quick ? 30 : 300;
  const samples = { create: [] as number[], stats: [] as number[], pause: [] as number[], destroy: [] as number[] };
  opts.progress(`cgroups: ${runs} create/stats/freeze+thaw/destroy cycles (${mgr.version})`);
  for (let i = 0; i < runs; i++) {
    let t0 = process.hrtime.bigint();
    const cg = mgr.create(`bench-cg-${process.pid}-${i}`, resources);
    samples.create.push(ms(t0));
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      cg.addProcess(child.pid!);
      t0 = process.hrtime.bigint();
      cg.stats();
      samples.stats.push(ms(t0));
      t0 = process.hrtime.bigint();
      await cg.freeze();
      await cg.thaw();
      samples.pause.push(ms(t0));
    } finally {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    t0 = process.hrtime.bigint();
    await cg.destroy();
    samples.destroy.push(ms(t0));
  }
  const row = (measure: string, s: number[]): BenchRow => ({
    measure,
    unit: 'ms',
    higherIsBetter: false,
    ours: { name: `agent cgroups ${mgr.version}`, samples: s },
  });
  return [
    row('cgroup create with memory/cpu/pids limits', samples.create),
    row('cgroup stats', samples.stats),
    row('cgroup freeze+thaw, one process', samples.pause),
    row('cgroup destroy', samples.destroy),
  ];
}
