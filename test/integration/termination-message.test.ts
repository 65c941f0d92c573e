// Root-only: a container's termination message as kata's runtime-rs recovers it with shared_fs =
// "none": the host CopyFiles an empty termination-log into the shared directory, mounts it at the
// pod's terminationMessagePath, and when the init has exited asks GetDiagnosticData "termination_log".
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { addMount, busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `tm${process.pid}`;

t.test('GetDiagnosticData returns what the container wrote at its terminationMessagePath', { skip }, async (t) => {
  const h = await AgentHarness.start({}, 'ttrpc');
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  const id = `${tag}-c`;
  // The name runtime-rs gives the copy: <container id>-<random>-termination-log.
  const source = `${h.stateRoot}/shared/containers/${id}-3f1c2a9b-termination-log`;
  const S_IFREG = 0o100000;
  t.equal(
    await h.code('copyFile', { path: source, fileSize: 0n, fileMode: S_IFREG | 0o666, dirMode: 0o750, uid: 0, gid: 0, offset: 0n, data: new Uint8Array(0) }),
    'OK',
  );
  const spec = busyboxSpec(rootfs, ['sh', '-c', 'printf "config /etc/app.conf missing: é\\n" > /dev/termination-log; exit 3']);
  addMount(spec, { destination: '/dev/termination-log', type: 'bind', source, options: ['rbind', 'rprivate', 'rw'] });
  spec.Annotations = {
    'io.kubernetes.container.terminationMessagePath': '/dev/termination-log',
    'io.kubernetes.container.terminationMessagePolicy': 'File',
  };
  const ask = { logType: 'termination_log', containerId: id };
  await h.call('createContainer', { containerId: id, execId: id, OCI: spec });
  t.equal((await h.call('getDiagnosticData', ask)).data, '', 'before the init ran: an empty message');
  await h.call('startContainer', { containerId: id });
  t.equal((await h.call('waitProcess', { containerId: id, execId: id })).status, 3);
  const got = await h.call('getDiagnosticData', ask);
  t.equal(got.data, 'config /etc/app.conf missing: é\n', 'the message, as UTF-8');

  t.match(
    await h.code('getDiagnosticData', { logType: 'agent_log', containerId: id }),
    /^INVALID_ARGUMENT: GetDiagnosticData: log_type "agent_log" is not supported/,
  );
  t.match(await h.code('getDiagnosticData', { logType: 'termination_log', containerId: `${tag}-ghost` }), /^NOT_FOUND: container tm\d+-ghost not found/);
  await h.call('removeContainer', { containerId: id });
  t.match(await h.code('getDiagnosticData', ask), /^NOT_FOUND: /, 'gone with the container');
  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
