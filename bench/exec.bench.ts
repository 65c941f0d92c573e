// Exec latency into a running container: ExecProcess + WaitProcess of /bin/true through the agent,
// against `runc exec` of /bin/true into a runc container of the same busybox rootfs, same run.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { AgentHarness } from '../test/support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../test/support/busybox-rootfs.js';
import { addNamespace, busyboxSpec } from '../test/support/oci-spec.js';
import type { BenchOptions, BenchRow } from './types.js';

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function run(cmd: string, args: string[]): Promise<void> {
  const child = spawn(cmd, args, { stdio: 'ignore' });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}`);
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  let skip = containerTestSkipReason();
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' });
  } catch {
    skip ??= 'needs runc (apt-get install runc)';
  }
  if (skip) {
    opts.progress(`exec: skipped (${skip})`);
    return [];
  }
  const h = await AgentHarness.start();
  const runcId = `bench-exec-runc-${process.pid}`;
  try {
    const rootfs = buildBusyboxRootfs(path.join(h.dir, 'bb'));
    const bundle = path.join(h.dir, 'runc-bundle');
    fs.mkdirSync(bundle);
    execFileSync('runc', ['spec', '--bundle', bundle]);
    const cfg = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
    cfg.process.args = ['/bin/sleep', '1000'];
    cfg.process.terminal = false;
    cfg.root = { path: rootfs, readonly: false };
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(cfg));
    await run('runc', ['run', '-d', '--bundle', bundle, runcId]);

    const id = `bench-exec-${process.pid}`;
    const spec = addNamespace(busyboxSpec(rootfs, ['/bin/sleep', '1000']), 'network');
    await h.call('createContainer', { containerId: id, OCI: spec });
    await h.call('startContainer', { containerId: id });
    const process1 = spec.Process!;
    const settle = () => new Promise((r) => setTimeout(r, 300));
    const runs = opts.quick ? 10 : 40;
    const ours: number[] = [];
    const peer: number[] = [];
    opts.progress(`exec: ${runs} ExecProcess+WaitProcess of /bin/true, alternating with runc exec`);
    for (let i = 0; i < runs; i++) {
      const execId = `e${i}`;
      // Exec probes come seconds apart, not back to back. The pause (longer than a node start, ~100 ms
      // wall here) lets background work finish (our next warm helper booting, runc's own teardown),
      // so neither side is timed under the other's load.
      await settle();
      const t0 = process.hrtime.bigint();
      await h.call('execProcess', { containerId: id, execId, process: { ...process1, Args: ['/bin/true'] } });
      const { status } = await h.call('waitProcess', { containerId: id, execId });
      ours.push(ms(t0));
      if (status !== 0) throw new Error(`exec ${execId} exited with ${status}`);
      await settle();
      const t1 = process.hrtime.bigint();
      await run('runc', ['exec', runcId, '/bin/true']);
      peer.push(ms(t1));
    }
    await h.call('signalProcess', { containerId: id, execId: '', signal: 9 });
    await h.call('waitProcess', { containerId: id, execId: '' });
    await h.call('removeContainer', { containerId: id });
    return [
      {
        measure: 'exec of /bin/true into a running container',
        unit: 'ms',
        higherIsBetter: false,
        ours: { name: 'agent ExecProcess+WaitProcess', samples: ours },
        peer: { name: 'runc exec', samples: peer },
        target: 'agent ≤ runc exec',
      },
    ];
  } finally {
    await run('runc', ['delete', '-f', runcId]).catch(() => undefined);
    await h.stop();
  }
}
