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
import { create, toBinary } from '@bufbuild/protobuf';
import { CreateContainerRequestSchema as CreateContainerRequest1x } from '../protos/gen/compat_1x_pb.js';
import { dockerDefaultProfile, seccomp1x } from '../test/support/seccomp-profiles.js';
import { probeSeccomp } from '../agent/src/seccomp/index.js';
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
  const skip = containerTestSkipReason();
  if (skip) {
    opts.progress(`lifecycle: skipped (${skip})`);
    return [];
  }
  const h = await AgentHarness.start();
  try {
    const rootfs = buildBusyboxRootfs(path.join(h.dir, 'bb'));
    const bundle = path.join(h.dir, 'runc-bundle');
    fs.mkdirSync(bundle);
    // Without runc only the seccomp row (agent against agent) is measured.
    const withRunc = hasRunc();
    if (withRunc) runcBundle(bundle, rootfs);
    else opts.progress('lifecycle: runc rows skipped (needs runc: apt-get install runc)');
    // The same namespaces runc's default spec asks for.
    const spec = addNamespace(busyboxSpec(rootfs, ['/bin/true']), 'network');
    const runs = opts.quick ? 10 : 40;
    const ours: number[] = [];
    const peer: number[] = [];
    const crun: number[] = [];
    const withCrun = withRunc && hasCrun();
    // The same container with Docker's default seccomp profile: its cost is translation and a check
    // build in the agent, libseccomp's load and a second build in the helper.
    const withSeccomp = probeSeccomp().ok;
    const filtered: number[] = [];
    const plain: number[] = [];
    // The harness speaks gRPC, so the request is encoded in the 1.x numbering a gRPC host uses (3.x
    // bytes there would lose the syscall list: field 4 is not a 1.x field). Both kinds go this way.
    const create1x = (containerId: string, seccomp: boolean) =>
      toBinary(
        CreateContainerRequest1x,
        create(CreateContainerRequest1x, {
          containerId,
          OCI: { ...spec, Linux: { ...spec.Linux, Seccomp: seccomp ? seccomp1x(dockerDefaultProfile()) : undefined } } as never,
        }),
      );
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
      if (withRunc) peer.push(await runcRun(bundle, `runc-${id}`));
      if (withCrun) crun.push(await crunRun(bundle, `crun-${id}`));
      if (withSeccomp) {
        // Alternated in the same loop so both see the same machine load.
        for (const [samples, withProfile, suffix] of [
          [filtered, true, 'scmp'],
          [plain, false, 'plain'],
        ] as const) {
          const t1 = process.hrtime.bigint();
          await h.callRaw('CreateContainer', create1x(`${id}-${suffix}`, withProfile));
          await h.call('startContainer', { containerId: `${id}-${suffix}` });
          const r = await h.call('waitProcess', { containerId: `${id}-${suffix}`, execId: '' });
          await h.call('removeContainer', { containerId: `${id}-${suffix}` });
          samples.push(ms(t1));
          if (r.status !== 0) throw new Error(`container ${id}-${suffix} exited with ${r.status}`);
        }
      }
    }
    const rows: BenchRow[] = [];
    const lifecycle = {
      measure: 'container lifecycle of /bin/true (create, start, wait, remove)',
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'agent over gRPC', samples: ours },
    } as const;
    if (withRunc) rows.push({ ...lifecycle, peer: { name: 'runc run', samples: peer }, target: 'agent ≤ runc' });
    // Its own base, not rows[0]: a machine may have crun without runc.
    if (withCrun) rows.push({ ...lifecycle, peer: { name: 'crun run', samples: crun }, target: 'informational (crun is C; runc is the target)' });
    if (withSeccomp) {
      rows.push({
        measure: "container lifecycle of /bin/true with Docker's default seccomp profile vs without",
        unit: 'ms',
        higherIsBetter: false,
        ours: { name: 'agent, default profile', samples: filtered },
        peer: { name: 'agent, no profile', samples: plain },
        target: 'informational (the cost of enforcing a profile)',
      });
    } else opts.progress('lifecycle: seccomp row skipped (libseccomp does not load)');
    return rows;
  } finally {
    await h.stop();
  }
}
