// Root-only: the kata 3.x semantics over ttrpc: end of stream is empty data, exec id "" with a
// signal other than SIGKILL goes to the init alone, and "" + SIGKILL reaches every process.
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `w${process.pid}`;

t.test('containers over ttrpc (kata 3.x)', { skip }, async (t) => {
  const h = await AgentHarness.start({}, 'ttrpc');
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const id = `${tag}-c`;
  await h.call('createContainer', {
    containerId: id,
    OCI: busyboxSpec(rootfs, ['sh', '-c', 'trap "echo usr1-init" USR1; sleep 1000 & echo started; while :; do wait; done']),
  });
  await h.call('startContainer', { containerId: id });
  t.equal(Buffer.from((await h.call('readStdout', { containerId: id, execId: '', len: 100 })).data).toString(), 'started\n');

  await h.call('execProcess', { containerId: id, execId: 'e1', process: { Args: ['sh', '-c', 'echo out; echo err >&2'], Cwd: '/' } });
  t.equal(await h.readAll('readStdout', id, 'e1'), 'out\n', 'stdout ends with the end-of-stream error');
  t.equal(await h.readAll('readStderr', id, 'e1'), 'err\n');
  t.equal(
    await h.code('readStdout', { containerId: id, execId: 'e1', len: 10 }),
    `INTERNAL: EOF: stdout of process e1 of container ${id} has ended`,
    'end of stream stays an error, never an OK answer',
  );
  t.equal((await h.call('waitProcess', { containerId: id, execId: 'e1' })).status, 0);

  // SIGUSR1 to exec id "" reaches the init only: the background sleep survives it.
  await h.call('signalProcess', { containerId: id, execId: '', signal: 10 });
  t.equal(Buffer.from((await h.call('readStdout', { containerId: id, execId: '', len: 100 })).data).toString(), 'usr1-init\n');
  await h.call('execProcess', { containerId: id, execId: 'ps', process: { Args: ['sh', '-c', 'ps -o args | grep -c "^sleep 1000"'], Cwd: '/' } });
  t.equal(await h.readAll('readStdout', id, 'ps'), '1\n', 'the sleep still runs');
  await h.call('waitProcess', { containerId: id, execId: 'ps' });

  await h.call('signalProcess', { containerId: id, execId: '', signal: 9 });
  t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 137);
  await h.call('removeContainer', { containerId: id });

  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
