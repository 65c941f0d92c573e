// Root-only: the storages of a kata pod with real mounts on this host, through the agent socket: the shm
// tmpfs as kata sends it, a local volume on an existing private directory, a container whose rootfs is in
// the shared directory with watchable-bind (a configmap), bind and a per-container ephemeral volume that
// two containers share (refcounted), UpdateEphemeralMounts, OnlineCPUMem on a fake sysfs, GetGuestDetails.
// The shared directory is a plain directory here (no 9p/virtio-fs device on a host): the VM test mounts it.
import fs from 'node:fs';
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { addMount, busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `storage${process.pid}`;

function mountLine(mp: string): string | undefined {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === mp);
}
const mountCount = (mp: string) =>
  fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4] === mp).length;

t.test('storages of a kata pod', { skip }, async (t) => {
  const sysfs = fs.mkdtempSync('/tmp/storage-fake-sysfs-');
  t.teardown(() => fs.rmSync(sysfs, { recursive: true, force: true }));
  fs.mkdirSync(`${sysfs}/devices/system/cpu/cpu0`, { recursive: true });
  fs.mkdirSync(`${sysfs}/devices/system/cpu/cpu1`);
  fs.writeFileSync(`${sysfs}/devices/system/cpu/cpu1/online`, '0\n');
  fs.mkdirSync(`${sysfs}/devices/system/memory/memory7`, { recursive: true });
  fs.writeFileSync(`${sysfs}/devices/system/memory/memory7/online`, '0\n');

  const h = await AgentHarness.start({ sysfs, watchIntervalMs: 50 });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const shared = `${h.stateRoot}/shared/containers`;
  const shm = `${h.stateRoot}/sandbox/shm`;
  const priv = `${h.dir}/private`;
  fs.mkdirSync(priv, { mode: 0o700 });
  fs.chmodSync(priv, 0o700);

  await t.test('CreateSandbox: shm as kata sends it; local on an existing 0700 directory leaves it 0700', async (t) => {
    await h.call('createSandbox', {
      hostname: 'pod',
      sandboxId: `${tag}-pod`,
      storages: [
        { driver: 'ephemeral', source: 'shm', fstype: 'tmpfs', options: ['noexec', 'nosuid', 'nodev', 'mode=1777', 'size=67108864'], mountPoint: shm },
        { driver: 'local', source: 'local', mountPoint: priv, options: ['mode=0777'] },
      ],
    });
    const line = mountLine(shm) ?? '';
    t.match(line, / rw,nosuid,nodev,noexec[, ]/, 'flags');
    t.match(line, / - tmpfs shm rw,size=65536k/, 'fs data: size');
    t.equal(fs.statSync(shm).mode & 0o7777, 0o1777, 'fs data: mode (tmpfs does not list its default 1777)');
    t.equal(fs.statSync(priv).mode & 0o7777, 0o700, 'existing directory not widened');
  });

  const a = `${tag}-a`;
  const b = `${tag}-b`;
  const cache = `${h.stateRoot}/sandbox/ephemeral/cache`;
  const cfgSrc = `${shared}/${a}-1f2e-config`;
  const cfgDst = `${shared}/watchable/${a}-1f2e-config`;
  const hostsSrc = `${shared}/${a}-hosts`;
  const hostsDst = `${h.dir}/binds/${a}/hosts`;

  await t.test('CreateContainer with the rootfs in the shared dir, watchable-bind, bind and ephemeral storages', async (t) => {
    const rootfs = buildBusyboxRootfs(`${shared}/${a}`);
    fs.mkdirSync(cfgSrc, { recursive: true });
    fs.writeFileSync(`${cfgSrc}/app.conf`, 'v=1\n');
    fs.writeFileSync(hostsSrc, '127.0.0.1 pod\n');
    const spec = busyboxSpec(rootfs, ['sh', '-c', 'cat /cfg/app.conf /etc/hosts; echo from-a > /cache/a; exec sleep 1000']);
    addMount(spec, { destination: '/cfg', type: 'bind', source: cfgDst, options: ['rbind', 'ro'] });
    addMount(spec, { destination: '/etc/hosts', type: 'bind', source: hostsDst, options: ['rbind', 'ro'] });
    addMount(spec, { destination: '/cache', type: 'bind', source: cache, options: ['rbind'] });
    await h.call('createContainer', {
      containerId: a,
      execId: a,
      OCI: spec,
      storages: [
        { driver: 'watchable-bind', source: cfgSrc, fstype: 'bind', options: ['bind'], mountPoint: cfgDst },
        { driver: 'bind', source: hostsSrc, fstype: 'bind', options: ['ro'], mountPoint: hostsDst },
        { driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: [], mountPoint: cache },
      ],
    });
    t.ok(mountLine(`${shared}/watchable`)?.includes(' - tmpfs '), 'the copies live in a tmpfs');
    await h.call('startContainer', { containerId: a });
    let out = '';
    while (out.split('\n').length < 3) out += Buffer.from((await h.call('readStdout', { containerId: a, execId: a, len: 1000 })).data).toString();
    t.equal(out, 'v=1\n127.0.0.1 pod\n');
  });

  await t.test('a configmap update reaches the running container; the host cannot change the copy in place', async (t) => {
    fs.writeFileSync(`${cfgSrc}/app.conf`, 'v=2\n');
    // Waits for the poller (every 50 ms here) with a bound on tries, not on time.
    for (let i = 0; i < 400 && fs.readFileSync(`${cfgDst}/app.conf`, 'utf8') !== 'v=2\n'; i++) await new Promise((r) => setTimeout(r, 25));
    await h.call('execProcess', {
      containerId: a,
      execId: 'cat',
      process: { Args: ['cat', '/cfg/app.conf'], Env: ['PATH=/bin'], Cwd: '/', User: { UID: 0, GID: 0 } },
    });
    t.equal(await h.readAll('readStdout', a, 'cat'), 'v=2\n');
    await h.call('waitProcess', { containerId: a, execId: 'cat' });
    t.not(fs.statSync(`${cfgDst}/app.conf`).ino, fs.statSync(`${cfgSrc}/app.conf`).ino, 'a copy, not the host file');
  });

  await t.test('a second container naming the same ephemeral volume shares the one mount until the last goes', async (t) => {
    const rootfs = buildBusyboxRootfs(`${shared}/${b}`);
    const spec = busyboxSpec(rootfs, ['cat', '/cache/a']);
    addMount(spec, { destination: '/cache', type: 'bind', source: cache, options: ['rbind'] });
    await h.call('createContainer', {
      containerId: b,
      execId: b,
      OCI: spec,
      storages: [{ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: [], mountPoint: cache }],
    });
    t.equal(mountCount(cache), 1, 'mounted once');
    await h.call('startContainer', { containerId: b });
    t.equal(await h.readAll('readStdout', b, b), 'from-a\n', "b sees a's file");
    await h.call('waitProcess', { containerId: b, execId: b });
    await h.call('removeContainer', { containerId: b });
    t.equal(mountCount(cache), 1, 'still mounted for a');

    await h.call('updateEphemeralMounts', {
      storages: [{ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: ['remount', 'size=2M'], mountPoint: cache }],
    });
    t.match(mountLine(cache) ?? '', / - tmpfs tmpfs rw,size=2048k/, 'UpdateEphemeralMounts resized it in place');
    t.equal(fs.readFileSync(`${cache}/a`, 'utf8'), 'from-a\n', 'contents kept');

    await h.call('removeContainer', { containerId: a });
    t.equal(mountCount(cache), 0, 'unmounted with its last user');
    t.equal(mountCount(`${shared}/watchable`), 0, 'watchable tmpfs gone');
    t.notOk(fs.existsSync(hostsDst), 'bind mount point removed');
    t.ok(fs.existsSync(hostsSrc), 'the shared source stays');
  });

  await t.test('OnlineCPUMem onlines the fake tree; GetGuestDetails lists the storage drivers', async (t) => {
    await h.call('onlineCPUMem', { wait: true, nbCpus: 1, cpuOnly: false });
    t.equal(fs.readFileSync(`${sysfs}/devices/system/cpu/cpu1/online`, 'utf8'), '1');
    t.equal(fs.readFileSync(`${sysfs}/devices/system/memory/memory7/online`, 'utf8'), '1');
    const d = await h.call('getGuestDetails', { memBlockSize: false });
    t.same(d.agentDetails?.storageHandlers, ['9p', 'virtio-fs', 'ephemeral', 'local', 'bind', 'watchable-bind', 'overlayfs']);
  });

  await t.test('DestroySandbox undoes the pod storages and leaves the private directory', async (t) => {
    await h.call('destroySandbox', {});
    t.equal(mountCount(shm), 0);
    t.equal(fs.statSync(priv).mode & 0o7777, 0o700);
  });

  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
