// Container lifecycle latency: create → start → wait → remove of /bin/true through the agent (gRPC
// over its unix socket, container-init helper, namespaces, cgroup, pivot_root) against `runc run`
// of the same busybox rootfs with runc's default spec, measured in the same run. Needs root and
// runc (apt-get install runc); returns no rows otherwise.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { AgentHarness } from '../test/support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../test/support/busybox-rootfs.js';
import { addNamespace, busyboxSpec } from '../test/support/oci-spec.js';
import type { BenchOptions, BenchRow } from './types.js';

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

function hasRunc(): boolean {
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** runc's own default spec for the bundle, running /bin/true without a terminal. */
function runcBundle(dir: string, rootfs: string): void {
  execFileSync('runc', ['spec', '--bundle', dir]);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  cfg.process.args = ['/bin/true'];
  cfg.process.terminal = false;
  cfg.root = { path: rootfs, readonly: false };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
}

async function runcRun(bundle: string, id: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const child = spawn('runc', ['run', '--bundle', bundle, id], { stdio: 'ignore' });
  const [code] = (await once(child, 'exit')) as [number | null];
  const t = ms(t0);
  if (code !== 0) throw new Error(`runc run ${id} exited with ${code}`);
  return t;
}

function hasCrun(): boolean {
  try {
    execFileSync('crun', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * crun refuses this machine's hybrid cgroup layout (v1 plus a cgroup2 mount at
 * /sys/fs/cgroup/unified), so it runs in a private mount namespace with that mount removed; the
 * unshare and sh add ~1-2 ms to crun's figure.
 */
async function crunRun(bundle: string, id: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const child = spawn('unshare', ['-m', 'sh', '-c', `umount /sys/fs/cgroup/unified 2>/dev/null; exec crun run --bundle ${bundle} ${id}`], { stdio: 'ignore' });
  const [code] = (await once(child, 'exit')) as [number | null];
  const t = ms(t0);
  if (code !== 0) throw new Error(`crun run ${id} exited with ${code}`);
  return t;
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const skip = containerTestSkipReason() ?? (hasRunc() ? undefined : 'needs runc');
  if (skip) {
    opts.progress(`lifecycle: skipped (${skip})`);
    return [];
  }
  const h = await AgentHarness.start();
  try {
    const rootfs = buildBusyboxRootfs(path.join(h.dir, 'bb'));
    const bundle = path.join(h.dir, 'runc-bundle');
    fs.mkdirSync(bundle);
    runcBundle(bundle, rootfs);
    // The same namespaces runc's default spec asks for.
    const spec = addNamespace(busyboxSpec(rootfs, ['/bin/true']), 'network');
    const runs = opts.quick ? 10 : 40;
    const ours: number[] = [];
    const peer: number[] = [];
    const crun: number[] = [];
    const withCrun = hasCrun();
    opts.progress(`lifecycle: ${runs} create→start→wait→remove through the agent, alternating with runc run`);
    for (let i = 0; i < runs; i++) {
      const id = `bench-${process.pid}-${i}`;
      const t0 = process.hrtime.bigint();
      await h.call('createContainer', { containerId: id, OCI: spec });
      await h.call('startContainer', { containerId: id });
      const { status } = await h.call('waitProcess', { containerId: id, execId: '' });
      await h.call('removeContainer', { containerId: id });
      ours.push(ms(t0));
      if (status !== 0) throw new Error(`container ${id} exited with ${status}`);
      peer.push(await runcRun(bundle, `runc-${id}`));
      if (withCrun) crun.push(await crunRun(bundle, `crun-${id}`));
    }
    const rows: BenchRow[] = [
      {
        measure: 'container lifecycle of /bin/true (create, start, wait, remove)',
        unit: 'ms',
        higherIsBetter: false,
        ours: { name: 'agent over gRPC', samples: ours },
        peer: { name: 'runc run', samples: peer },
        target: 'agent ≤ runc',
      },
    ];
    if (withCrun) rows.push({ ...rows[0], peer: { name: 'crun run', samples: crun }, target: 'informational (crun is C; runc is the target)' });
    return rows;
  } finally {
    await h.stop();
  }
}
