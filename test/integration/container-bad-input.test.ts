// Root-only: every kind of bad request gets its status, and a failed CreateContainer leaves no
// mount, cgroup, process or bundle behind.
import fs from 'node:fs';
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { addMount, addNamespace, busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `b${process.pid}`;

t.test('bad input', { skip }, async (t) => {
  const h = await AgentHarness.start();
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const spec = (args = ['true']) => busyboxSpec(rootfs, args);

  await t.test('invalid container ids', async (t) => {
    for (const id of ['', 'a', '-x', 'a/b', '../etc', 'a..b', 'x y', '.hidden']) {
      t.match(await h.code('createContainer', { containerId: id, OCI: spec() }), /^INVALID_ARGUMENT: invalid container id/, JSON.stringify(id));
    }
  });

  await t.test('duplicate and unknown ids', async (t) => {
    const id = `${tag}-dup`;
    await h.call('createContainer', { containerId: id, OCI: spec(['sleep', '100']) });
    t.match(await h.code('createContainer', { containerId: id, OCI: spec() }), /^ALREADY_EXISTS/);
    await h.call('startContainer', { containerId: id });
    const proc = { Args: ['true'], Cwd: '/' };
    await h.call('execProcess', { containerId: id, execId: 'e1', process: proc });
    t.match(await h.code('execProcess', { containerId: id, execId: 'e1', process: proc }), /^ALREADY_EXISTS/);
    t.match(await h.code('execProcess', { containerId: id, execId: 'bad/id', process: proc }), /^INVALID_ARGUMENT/);
    t.match(await h.code('startContainer', { containerId: 'nope' }), /^NOT_FOUND/);
    t.match(await h.code('waitProcess', { containerId: id, execId: 'nope' }), /^NOT_FOUND/);
    t.match(await h.code('signalProcess', { containerId: id, execId: 'nope', signal: 9 }), /^NOT_FOUND/);
    t.match(await h.code('readStdout', { containerId: id, execId: 'nope', len: 1 }), /^NOT_FOUND/);
    t.match(await h.code('statsContainer', { containerId: 'nope' }), /^NOT_FOUND/);
    t.match(await h.code('removeContainer', { containerId: 'nope' }), /^NOT_FOUND/);
    t.match(await h.code('ttyWinResize', { containerId: id, execId: '', row: 10, column: 10 }), /^UNAVAILABLE: no tty/);
    t.match(await h.code('listProcesses', { containerId: id, format: 'yaml' }), /^INVALID_ARGUMENT/);
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('out-of-range signals and resources', async (t) => {
    const id = `${tag}-range`;
    await h.call('createContainer', { containerId: id, OCI: spec(['sleep', '100']) });
    await h.call('startContainer', { containerId: id });
    for (const signal of [4294967295, 0, 65]) {
      t.match(
        await h.code('signalProcess', { containerId: id, execId: '', signal }),
        new RegExp(`^INVALID_ARGUMENT: SignalProcess ${id}/\\(init\\): signal ${signal} is out of range: valid signals are 1–64`),
      );
    }
    t.match(
      await h.code('updateContainer', { containerId: id, resources: { BlockIO: { Weight: 5 } } }),
      /^INVALID_ARGUMENT: BlockIO.Weight 5 is out of range: valid values are 10–1000/,
    );
    t.match(await h.code('updateContainer', { containerId: id, resources: { CPU: { Quota: 5n } } }), /^INVALID_ARGUMENT: CPU.Quota 5 is out of range/);
    t.match(
      await h.code('updateContainer', { containerId: id, resources: { Pids: { Limit: 1n << 40n } } }),
      /^INVALID_ARGUMENT: Pids.Limit 1099511627776 is out of range/,
    );
    t.equal(await h.code('updateContainer', { containerId: id, resources: { Pids: { Limit: 100n } } }), 'OK', 'a value in range still applies');
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('rootfs missing or not a directory', async (t) => {
    const missing = busyboxSpec(`${h.dir}/no-such-root`, ['true']);
    t.match(
      await h.code('createContainer', { containerId: `${tag}-r1`, OCI: missing }),
      new RegExp(`^INVALID_ARGUMENT: rootfs ${h.dir}/no-such-root does not exist`),
    );
    fs.writeFileSync(`${h.dir}/file-root`, '');
    const notDir = busyboxSpec(`${h.dir}/file-root`, ['true']);
    t.match(await h.code('createContainer', { containerId: `${tag}-r2`, OCI: notDir }), /^INVALID_ARGUMENT: rootfs .*file-root is not a directory/);
    t.match(
      await h.code('createContainer', { containerId: `${tag}-r3`, OCI: busyboxSpec('relative-root', ['true']) }),
      /^INVALID_ARGUMENT: rootfs .*relative-root does not exist/,
    );
  });

  await t.test('a relative Root.Path stays inside the bundle', async (t) => {
    // <state>/<id>/../../outside is <h.dir>/outside: the helper used to create outside/proc there.
    const outside = `${h.dir}/outside`;
    fs.mkdirSync(outside);
    const id = `${tag}-esc`;
    t.match(
      await h.code('createContainer', { containerId: id, OCI: busyboxSpec('../../outside', ['true']) }),
      new RegExp(`^INVALID_ARGUMENT: Root.Path "\\.\\./\\.\\./outside" escapes the bundle ${h.stateRoot}/${id}`),
    );
    t.same(fs.readdirSync(outside), [], 'nothing created outside the bundle');
    t.notOk(fs.existsSync(`${h.stateRoot}/${id}`), 'no bundle left');
    // Through a symlink in the bundle: the host put <bundle>/rootfs-link there.
    const linked = `${tag}-esclink`;
    fs.mkdirSync(`${h.stateRoot}/${linked}`, { recursive: true });
    fs.symlinkSync(outside, `${h.stateRoot}/${linked}/rootfs-link`);
    t.match(
      await h.code('createContainer', { containerId: linked, OCI: busyboxSpec('rootfs-link', ['true']) }),
      /^INVALID_ARGUMENT: Root.Path "rootfs-link" escapes the bundle .* through a symlink/,
    );
    t.same(fs.readdirSync(outside), [], 'nothing created through the symlink');
    fs.rmSync(`${h.stateRoot}/${linked}`, { recursive: true });
  });

  await t.test('executable not found fails CreateContainer', async (t) => {
    const id = `${tag}-noexe`;
    t.match(await h.code('createContainer', { containerId: id, OCI: spec(['/bin/not-here']) }), /^NOT_FOUND: .*not-here/);
    t.match(await h.code('createContainer', { containerId: id, OCI: spec(['not-here-either']) }), /^NOT_FOUND: .*PATH/);
    t.match(await h.code('createContainer', { containerId: id, OCI: spec([]) }), /^INVALID_ARGUMENT: .*args are empty/);
    t.notOk(fs.existsSync(`${h.stateRoot}/${id}`), 'no bundle left');
  });

  await t.test('mount destinations escaping the rootfs are refused', async (t) => {
    const viaDots = spec();
    addMount(viaDots, { destination: '/../../etc/evil', type: 'tmpfs', source: 'tmpfs' });
    t.match(
      await h.code('createContainer', { containerId: `${tag}-m1`, OCI: viaDots }),
      new RegExp(`^INVALID_ARGUMENT: mount destination: .*escapes the container root.* \\(container ${tag}-m1\\)$`),
      'the status names the container',
    );
    const linkRoot = buildBusyboxRootfs(`${h.dir}/bb-link`);
    fs.symlinkSync('../../../../../../tmp', `${linkRoot}/escape`);
    const viaLink = busyboxSpec(linkRoot, ['true']);
    addMount(viaLink, { destination: '/escape/x', type: 'tmpfs', source: 'tmpfs' });
    t.match(await h.code('createContainer', { containerId: `${tag}-m2`, OCI: viaLink }), /^INVALID_ARGUMENT: mount destination: .*symlink \/escape/);
    const relative = spec();
    addMount(relative, { destination: 'relative', type: 'tmpfs', source: 'tmpfs' });
    t.match(
      await h.code('createContainer', { containerId: `${tag}-m3`, OCI: relative }),
      /^INVALID_ARGUMENT: mount destination "relative" is not an absolute path/,
    );
    const badBind = spec();
    addMount(badBind, { destination: '/data', type: 'bind', source: `${h.dir}/missing-src`, options: ['rbind'] });
    t.match(await h.code('createContainer', { containerId: `${tag}-m4`, OCI: badBind }), /^INVALID_ARGUMENT: bind mount source .*missing-src/);
  });

  await t.test('a failing setup step leaves nothing behind', async (t) => {
    // Passes every agent-side check but fails inside the helper: sysctl of a file that does not exist.
    const s = spec();
    s.Linux!.Sysctl = { 'kernel.no_such_sysctl_here': '1' };
    // Mount points and device nodes the setup made in the rootfs go too.
    addMount(s, { destination: '/made/by/create', type: 'tmpfs', source: 'tmpfs' });
    addMount(s, { destination: '/etc/made-file', type: 'bind', source: '/etc/hostname', options: ['bind'] });
    s.Linux!.Devices = [{ Path: '/made-dev/null', Type: 'c', Major: 1n, Minor: 3n }];
    // The rootfs's own empty dev/pts: the setup makes dev/pts again on its /dev tmpfs, and that one
    // vanishes with the tmpfs; the rootfs's must stay.
    fs.mkdirSync(`${rootfs}/dev/pts`, { recursive: true });
    const id = `${tag}-fail`;
    t.match(await h.code('createContainer', { containerId: id, OCI: s }), /^INTERNAL: CreateContainer .*no_such_sysctl_here/);
    t.ok(fs.existsSync(`${rootfs}/dev/pts`), "the rootfs's own dev/pts stays");
    t.notOk(fs.existsSync(`${h.stateRoot}/${id}`), 'no bundle');
    t.same(
      ['made', 'etc/made-file', 'made-dev'].filter((p) => fs.existsSync(`${rootfs}/${p}`)),
      [],
      'nothing it created in the rootfs',
    );
    // Processes are checked after the agent stops: until then its pool keeps an idle helper.
    const { mounts, cgroups, zombies } = leftovers(id, h.dir);
    t.same({ mounts, cgroups, zombies }, { mounts: [], cgroups: [], zombies: [] });
  });

  await t.test('unsupported things say so', async (t) => {
    const user = spec();
    addNamespace(user, 'user');
    t.match(await h.code('createContainer', { containerId: `${tag}-u`, OCI: user }), /^INVALID_ARGUMENT: user namespaces are not supported/);
    t.match(
      await h.code('createContainer', { containerId: `${tag}-st`, OCI: spec(), storages: [{ driver: 'scsi', source: '0:0', mountPoint: `${h.dir}/st` }] }),
      /^UNIMPLEMENTED: storage driver scsi .*hot-plugged device/,
    );
    t.match(await h.code('createContainer', { containerId: `${tag}-noc` }), /^INVALID_ARGUMENT: .*no OCI spec/);
  });

  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
