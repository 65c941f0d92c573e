// Root-only: drives an in-process agent over its unix socket through whole container lifecycles on
// a busybox rootfs, then checks nothing was left behind.
import fs from 'node:fs';
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';

const skip = containerTestSkipReason();
const tag = `t${process.pid}`;

t.test('container lifecycle over the agent socket', { skip }, async (t) => {
  const h = await AgentHarness.start();
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  t.teardown(() => h.stop());

  await t.test('create + start: hostname, pid 1, uid, memory limit, caps', async (t) => {
    const id = `${tag}-info`;
    const script = 'echo host=$(hostname); echo pid=$$; echo uid=$(id -u); echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); grep CapEff /proc/self/status';
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', script], { hostname: 'box1', memoryLimit: 64n << 20n }) });
    await h.call('startContainer', { containerId: id });
    const out = await h.readAll('readStdout', id);
    t.match(out, /host=box1\n/);
    t.match(out, /pid=1\n/);
    t.match(out, /uid=0\n/);
    t.match(out, new RegExp(`mem=${64 << 20}\n`));
    t.match(out, /CapEff:\s+[0-9a-f]+\n/);
    t.same(await h.call('waitProcess', { containerId: id, execId: '' }), { $typeName: 'grpc.WaitProcessResponse', status: 0 });
    await h.call('removeContainer', { containerId: id });
    t.notOk(fs.existsSync(`${h.stateRoot}/${id}`), 'bundle removed');
  });
});
