// Root-only: the create pool's idle helper killed from outside (kill -9, the OOM killer) just before
// a CreateContainer. The request used to fail with "helper exited with status 137 before it was
// ready"; it must run in a fresh helper, and the pool must replace the dead one.
import t from 'tap';
import { libc } from '../../agent/src/linux/index.js';
import { HelperPool } from '../../agent/src/process/helper-pool.js';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `safety-pool${process.pid}`;
const ROUNDS = 10;

/** Waits for a state the pool reaches in the background (tap's test timeout is the bound). */
async function until(f: () => boolean): Promise<void> {
  while (!f()) await new Promise((r) => setTimeout(r, 10));
}

t.test('CreateContainer right after the idle pooled helper was SIGKILLed', { skip }, async (t) => {
  const pool = new HelperPool(libc(), 1);
  const h = await AgentHarness.start({ pool });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  const results: string[] = [];
  const killed = new Set<number>();
  for (let i = 0; i < ROUNDS; i++) {
    const id = `${tag}-${i}`;
    if (i > 0) {
      // The pool refills after each take; a replacement of a killed helper is a new pid.
      await until(() => pool.idlePids.length === 1 && !killed.has(pool.idlePids[0]));
      const pid = pool.idlePids[0];
      killed.add(pid);
      process.kill(pid, 'SIGKILL');
    }
    results.push(await h.code('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['true']) }));
    if (results[i] === 'OK') await h.call('removeContainer', { containerId: id });
  }
  t.same(results, Array(ROUNDS).fill('OK'), 'every CreateContainer succeeds');
  t.equal(killed.size, ROUNDS - 1);

  // An idle helper killed with no request coming is replaced by the pool on its own.
  await until(() => pool.idlePids.length === 1);
  const idle = pool.idlePids[0];
  process.kill(idle, 'SIGKILL');
  await until(() => pool.idlePids.length === 1 && pool.idlePids[0] !== idle);
  t.pass('the dead idle helper was replaced');

  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
