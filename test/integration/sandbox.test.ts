// Root-only: CreateSandbox/DestroySandbox over the agent socket: hostname and IPC/UTS shared by the
// pod's containers, DNS, storages, a shared pid namespace, and a full undo.
import fs from 'node:fs';
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `s${process.pid}`;

t.test('sandbox', { skip }, async (t) => {
  const h = await AgentHarness.start();
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const hostResolv = fs.readFileSync(h.resolvConf, 'utf8');
  const shm = `${h.dir}/sandbox-shm`;
  const local = `${h.dir}/sandbox-local`;

  await t.test('unknown kernel module fails CreateSandbox and leaves nothing', async (t) => {
    t.match(
      await h.code('createSandbox', { hostname: 'x', sandboxId: `${tag}-m`, kernelModules: [{ name: `no_such_module_${tag}` }] }),
      /^INVALID_ARGUMENT: kernel module no_such_module_\S+: (not in \S+\/modules\.dep$|this guest has no modules\.dep)/,
    );
    t.notOk(fs.existsSync(`${h.stateRoot}/sandbox`));
    t.match(
      await h.code('createSandbox', { hostname: 'x', storages: [{ driver: 'nosuch', source: 'kataShared', mountPoint: `${h.dir}/x` }] }),
      /^INVALID_ARGUMENT: storage driver nosuch not supported/,
    );
    t.notOk(fs.existsSync(`${h.stateRoot}/sandbox`), 'pinned namespaces and sandbox dir released after the refusal');
    t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(h.stateRoot), 'no mount left');
  });

  await t.test('create: hostname, dns, storages', async (t) => {
    await h.call('createSandbox', {
      hostname: 'podhost',
      sandboxId: `${tag}-pod`,
      dns: ['nameserver 10.0.0.53', 'search example.test'],
      sandboxPidns: true,
      storages: [
        { driver: 'ephemeral', source: 'shm', fstype: 'tmpfs', options: ['size=1m'], mountPoint: shm },
        { driver: 'local', mountPoint: local, options: ['mode=0750'] },
      ],
    });
    t.match(await h.code('createSandbox', { hostname: 'again' }), /^ALREADY_EXISTS/);
    t.equal(fs.readFileSync(h.resolvConf, 'utf8'), 'nameserver 10.0.0.53\nsearch example.test\n', 'resolv.conf bind-mounted');
    t.ok(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${shm} `), 'ephemeral storage mounted');
    t.equal(fs.statSync(local).mode & 0o777, 0o750, 'local storage directory');
    t.match(await h.code('destroySandbox', {}), /^OK/);
    await h.call('createSandbox', { hostname: 'podhost', sandboxId: `${tag}-pod`, sandboxPidns: true });
  });

  await t.test('containers share the sandbox hostname, IPC and pid namespaces', async (t) => {
    const a = `${tag}-a`;
    const b = `${tag}-b`;
    await h.call('createContainer', {
      containerId: a,
      OCI: busyboxSpec(rootfs, ['sh', '-c', 'readlink /proc/self/ns/ipc; hostname; exec sleep 1000'], { hostname: 'ignored' }),
    });
    await h.call('startContainer', { containerId: a });
    let aOut = '';
    while (aOut.split('\n').length < 3) aOut += Buffer.from((await h.call('readStdout', { containerId: a, execId: '', len: 1000 })).data).toString();
    await h.call('createContainer', {
      containerId: b,
      OCI: busyboxSpec(rootfs, ['sh', '-c', 'readlink /proc/self/ns/ipc; hostname; echo self=$$; ps -o pid,args | grep -c "sleep 100[0]"']),
    });
    await h.call('startContainer', { containerId: b });
    const bOut = await h.readAll('readStdout', b);
    const [ipcA, hostA] = aOut.trim().split('\n');
    const [ipcB, hostB, self, seen] = bOut.trim().split('\n');
    t.equal(hostA, 'podhost');
    t.equal(hostB, 'podhost');
    t.equal(ipcA, ipcB, 'same IPC namespace');
    t.not(self, 'self=1', 'second container is not pid 1 in the shared pid namespace');
    t.equal(seen, '1', "second container sees the first container's process");
    t.equal((await h.call('waitProcess', { containerId: b, execId: '' })).status, 0);
    await h.call('removeContainer', { containerId: b });
  });

  await t.test('destroy removes containers and undoes the sandbox', async (t) => {
    await h.call('destroySandbox', {});
    t.equal(fs.readFileSync(h.resolvConf, 'utf8'), hostResolv, 'resolv.conf restored');
    t.notOk(fs.existsSync(`${h.stateRoot}/sandbox`), 'sandbox dir removed');
    t.notOk(fs.existsSync(`${h.stateRoot}/${tag}-a`), 'container removed');
    t.match(await h.code('destroySandbox', {}), /^FAILED_PRECONDITION/);
  });

  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
