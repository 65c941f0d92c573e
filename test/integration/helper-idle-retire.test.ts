// Root-only: helpers started ahead of need are killed once they waited `idleMs` unused, so an idle
// pod holds no spare node process: the create pool empties and fills again at CreateSandbox or the
// next CreateContainer (which runs in a fresh helper), and a container's warm exec helper goes
// unless an exec takes it in time.
import fs from 'node:fs';
import t from 'tap';
import { libc } from '../../agent/src/linux/index.js';
import { HelperPool } from '../../agent/src/process/helper-pool.js';
import { WarmExecHelpers } from '../../agent/src/process/warm-exec-helpers.js';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `t${process.pid}idle`;
// Long enough that an exec right after the previous one always finds its warm helper, even on a loaded CI machine.
const IDLE_MS = 1500;

async function until(f: () => boolean): Promise<void> {
  while (!f()) await new Promise((r) => setTimeout(r, 10));
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const gone = (pid: number) => !fs.existsSync(`/proc/${pid}`);

t.test('idle helpers are retired and come back when containers do', { skip }, async (t) => {
  const pool = new HelperPool(libc(), 1, IDLE_MS);
  const warm = new WarmExecHelpers(libc(), 4, IDLE_MS);
  const h = await AgentHarness.start({ pool, warmExec: warm });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  // The first AgentService call starts the domains, and with them the pool.
  await h.call('getGuestDetails', {});
  await until(() => pool.idlePids.length === 1);
  const first = pool.idlePids[0];
  await until(() => gone(first));
  t.same(pool.idlePids, [], 'no CreateContainer came: the pooled helper was killed and reaped');
  t.equal(pool.retiredHelpers, 1);
  await sleep(IDLE_MS / 2);
  t.same(pool.idlePids, [], 'and not replaced');

  await h.call('createSandbox', { hostname: 'idle', sandboxId: `${tag}-sb` });
  await until(() => pool.idlePids.length === 1);
  t.pass('CreateSandbox fills the pool again');

  const id = `${tag}-c`;
  await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sleep', '1000']) });
  await h.call('startContainer', { containerId: id });
  await until(() => pool.idlePids.length === 1);
  const refill = pool.idlePids[0];
  await until(() => gone(refill));
  t.equal(pool.retiredHelpers, 2, 'the refill after that create is retired in turn');

  // After retirement a CreateContainer runs in a fresh helper, and the pool refills for the next one.
  const id2 = `${tag}-c2`;
  t.equal(await h.code('createContainer', { containerId: id2, OCI: busyboxSpec(rootfs, ['sleep', '1000']) }), 'OK');
  await until(() => pool.idlePids.length === 1);
  t.pass('the pool refills after a create found it empty');

  // A warm exec helper: started by the first exec, killed when no second exec comes in time.
  const exec = async (execId: string) => {
    await h.call('execProcess', { containerId: id, execId, process: { Args: ['true'], Env: ['PATH=/bin'], Cwd: '/', User: { UID: 0, GID: 0 } } });
    return (await h.call('waitProcess', { containerId: id, execId })).status;
  };
  t.equal(await exec('e1'), 0);
  await until(() => warm.pidOf(id) !== undefined);
  const w1 = warm.pidOf(id)!;
  t.equal(await exec('e2'), 0, 'an exec in time takes it');
  t.equal(warm.stats.taken, 1);
  await until(() => warm.pidOf(id) !== undefined && warm.pidOf(id) !== w1);
  const w2 = warm.pidOf(id)!;
  await until(() => gone(w2));
  t.equal(warm.pidOf(id), undefined, 'an untaken warm helper is killed and reaped');
  t.equal(warm.stats.retired, 1);
  t.equal(await exec('e3'), 0, 'the next exec spawns its own helper');

  for (const c of [id, id2]) await h.call('removeContainer', { containerId: c });
  await h.call('destroySandbox', {});
  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
