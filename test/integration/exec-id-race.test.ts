// Root-only: ExecProcess calls racing with one exec id. Only one may start; before the id was reserved
// for the whole setup, several passed the duplicate check and the last registration orphaned the
// others' processes and pipes (found by the payload fuzz: fds left open after RemoveContainer).
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';

t.test('concurrent ExecProcess with one exec id: one starts, the others are ALREADY_EXISTS', { skip: containerTestSkipReason() }, async (t) => {
  const h = await AgentHarness.start({}, 'ttrpc');
  t.teardown(() => h.stop());
  const id = `exec-race-${process.pid}`;
  await h.call('createContainer', {
    containerId: id,
    execId: id,
    OCI: busyboxSpec(buildBusyboxRootfs(`${h.dir}/bb`), ['/bin/sh', '-c', 'while :; do sleep 1; done']),
  });
  await h.call('startContainer', { containerId: id });
  for (let round = 0; round < 3; round++) {
    const execId = `dup-${round}`;
    const codes = await Promise.all(
      Array.from({ length: 6 }, () =>
        h.code('execProcess', { containerId: id, execId, process: { Args: ['/bin/echo', 'x'], Env: ['PATH=/bin'], Cwd: '/', User: { UID: 0, GID: 0 } } }),
      ),
    );
    t.equal(codes.filter((c) => c === 'OK').length, 1, `round ${round}: exactly one started (${codes.join(', ')})`);
    t.ok(
      codes.every((c) => c === 'OK' || c.startsWith('ALREADY_EXISTS')),
      `round ${round}: the rest ALREADY_EXISTS`,
    );
    t.equal(await h.readAll('readStdout', id, execId), 'x\n');
    t.equal((await h.call('waitProcess', { containerId: id, execId })).status, 0);
  }
  await h.call('removeContainer', { containerId: id });
});
