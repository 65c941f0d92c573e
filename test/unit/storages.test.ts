// Storage drivers against the recording libc: the exact mount(2) calls for the storages real kata hosts
// send (both generations), refcounting by mount point, refusals, local directories, UpdateEphemeralMounts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { StorageSchema, type Storage } from '../../protos/gen/agent_pb.js';
import { MNT_DETACH, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REMOUNT, MS_BIND, MS_RDONLY } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { AgentError } from '../../agent/src/errors.js';
import { Code, toRpcError } from '../../agent/src/rpc/status.js';
import { StorageRegistry, releaseStorages } from '../../agent/src/storage/storages.js';

const log = createLogger('error');

function setup(t: { teardown(f: () => unknown): void }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'storage-unit-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const libc = new RecordingLibc();
  const fstypes: string[] = [];
  const reg = new StorageRegistry({ libc, log, ensureFilesystem: (f) => void fstypes.push(f) });
  t.teardown(() => reg.close());
  const mounts = () => libc.calls.filter((c) => c.name === 'mount').map((c) => c.args);
  const umounts = () => libc.calls.filter((c) => c.name === 'umount2').map((c) => c.args);
  return { dir, libc, reg, fstypes, mounts, umounts };
}

const st = (s: MessageInitShape<typeof StorageSchema>): Storage => create(StorageSchema, s);

function codeOf(f: () => unknown): string {
  try {
    f();
    return 'OK';
  } catch (err) {
    // A domain error or a system error (errno name in `code`) is a status; anything else is a bug.
    const errno = typeof (err as NodeJS.ErrnoException).code === 'string';
    if (!(err instanceof AgentError || errno)) return `throw: ${(err as Error).message}`;
    const e = toRpcError(err);
    return `${Code[e.code]}: ${e.message}`;
  }
}

t.test('kata 3.x CreateSandbox: virtio-fs kataShared and the shm tmpfs, exactly as sent', async (t) => {
  const { dir, reg, fstypes, mounts } = setup(t);
  const shared = `${dir}/shared/containers/`;
  const shm = `${dir}/sandbox/shm`;
  const list = reg.mount([
    st({ driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', options: [], mountPoint: shared }),
    st({ driver: 'ephemeral', source: 'shm', fstype: 'tmpfs', options: ['noexec', 'nosuid', 'nodev', 'mode=1777', 'size=67108864'], mountPoint: shm }),
  ]);
  t.same(fstypes, ['virtiofs'], 'virtiofs made available before the mount');
  t.same(mounts(), [
    ['kataShared', shared, 'virtiofs', 0, null],
    ['shm', shm, 'tmpfs', MS_NOEXEC | MS_NOSUID | MS_NODEV, 'mode=1777,size=67108864'],
  ]);
  t.ok(fs.statSync(shm).isDirectory(), 'mount point created');
  releaseStorages(list);
  t.notOk(fs.existsSync(shm), 'mount point the agent created is removed');
});

t.test('kata 3.x virtio-fs with a DAX window: "dax" is filesystem data', async (t) => {
  const { dir, reg, mounts } = setup(t);
  reg.mount([st({ driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', options: ['dax'], mountPoint: `${dir}/s` })]);
  t.same(mounts(), [['kataShared', `${dir}/s`, 'virtiofs', 0, 'dax']]);
  reg.mount([st({ driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', options: ['dax'], mountPoint: `${dir}/s/` })]);
  t.equal(mounts().length, 1, 'a trailing slash names the same mount point');
  t.same(reg.refCounts(), { [`${dir}/s`]: 2 });
});

t.test('kata 1.x CreateSandbox: 9p kataShared, nodev a flag and the rest data', async (t) => {
  const { dir, reg, fstypes, mounts } = setup(t);
  reg.mount([
    st({
      driver: '9p',
      source: 'kataShared',
      fstype: '9p',
      options: ['trans=virtio,version=9p2000.L,cache=mmap', 'nodev', 'msize=8192'],
      mountPoint: `${dir}/shared`,
    }),
  ]);
  t.same(fstypes, ['9p']);
  t.same(mounts(), [['kataShared', `${dir}/shared`, '9p', MS_NODEV, 'trans=virtio,version=9p2000.L,cache=mmap,msize=8192']]);
});

t.test('a per-container ephemeral volume shared by two containers is mounted once and unmounted with its last user', async (t) => {
  const { dir, reg, mounts, umounts } = setup(t);
  const vol = st({ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: [], mountPoint: `${dir}/sandbox/ephemeral/cache` });
  const a = reg.mount([vol], 'a');
  const b = reg.mount([vol], 'b');
  t.equal(mounts().length, 1, 'one mount for two users');
  t.same(reg.refCounts(), { [vol.mountPoint]: 2 });
  releaseStorages(a);
  releaseStorages(a);
  t.equal(umounts().length, 0, 'still used by b (a second release of a is a no-op)');
  releaseStorages(b);
  t.same(umounts(), [[vol.mountPoint, MNT_DETACH]]);
  t.same(reg.refCounts(), {});
});

t.test('device drivers fail naming the driver; unknown drivers are INVALID_ARGUMENT; nothing is left mounted', async (t) => {
  const { dir, reg, mounts, umounts } = setup(t);
  for (const driver of ['blk', 'scsi', 'nvdimm', 'mmioblk', 'vfio']) {
    t.match(
      codeOf(() => reg.mount([st({ driver, source: '0:0', fstype: 'ext4', mountPoint: `${dir}/c/${driver}` })])),
      new RegExp(`^UNIMPLEMENTED: storage driver ${driver} .*hot-plugged device`),
    );
  }
  t.match(
    codeOf(() => reg.mount([st({ driver: 'nosuch', mountPoint: `${dir}/x` })])),
    /^INVALID_ARGUMENT: storage driver nosuch not supported/,
  );
  t.match(
    codeOf(() => reg.mount([st({ driver: 'local', mountPoint: 'relative' })])),
    /^INVALID_ARGUMENT: storage mount point "relative"/,
  );
  t.equal(mounts().length, 0, 'refused before anything was mounted');
  // A mount that fails half way releases the ones before it.
  const libc = new RecordingLibc({
    mount: (src) => {
      if (src === 'bad') throw Object.assign(new Error('mount(bad): ENODEV'), { code: 'ENODEV' });
    },
  });
  const reg2 = new StorageRegistry({ libc, log, ensureFilesystem: () => undefined });
  t.match(
    codeOf(() =>
      reg2.mount([
        st({ driver: 'ephemeral', source: 'shm', fstype: 'tmpfs', mountPoint: `${dir}/ok` }),
        st({ driver: 'virtio-fs', source: 'bad', fstype: 'virtiofs', mountPoint: `${dir}/bad` }),
      ]),
    ),
    /^INTERNAL: storage virtio-fs .*\/bad: mount\(bad\): ENODEV/,
  );
  t.same(
    libc.calls.filter((c) => c.name === 'umount2').map((c) => c.args[0]),
    [`${dir}/ok`],
    'the first one undone',
  );
  t.same(reg2.refCounts(), {});
  t.same(umounts(), []);
});

t.test('local: an existing directory keeps its mode and stays after release (issue 18 item 6b)', async (t) => {
  const { dir, reg } = setup(t);
  const existing = `${dir}/private`;
  fs.mkdirSync(existing, { mode: 0o700 });
  fs.chmodSync(existing, 0o700);
  fs.writeFileSync(`${existing}/keep`, 'x');
  const list = reg.mount([st({ driver: 'local', source: 'local', mountPoint: existing, options: ['mode=0777'] })]);
  t.equal(fs.statSync(existing).mode & 0o7777, 0o700, 'not widened to 0777');
  releaseStorages(list);
  t.ok(fs.existsSync(`${existing}/keep`), 'not removed: the agent did not make it');
});

t.test('local: a directory the agent creates gets the mode asked (or mkdir less umask) and goes with its last user', async (t) => {
  const { dir, reg } = setup(t);
  const made = `${dir}/sandbox/local/vol`;
  const a = reg.mount([st({ driver: 'local', source: 'local', mountPoint: made, options: ['mode=0750'] })], 'a');
  const b = reg.mount([st({ driver: 'local', source: 'local', mountPoint: made, options: ['mode=0750'] })], 'b');
  t.equal(fs.statSync(made).mode & 0o7777, 0o750);
  fs.writeFileSync(`${made}/data`, 'x');
  releaseStorages(a);
  t.ok(fs.existsSync(made), 'kept while b uses it');
  releaseStorages(b);
  t.notOk(fs.existsSync(made), 'removed with the last user');

  const plain = `${dir}/plain`;
  const umask = process.umask();
  reg.mount([st({ driver: 'local', mountPoint: plain })]);
  t.equal(fs.statSync(plain).mode & 0o7777, 0o777 & ~umask, 'no mode option: mkdir 0777 less the umask, as kata');
  t.match(
    codeOf(() => reg.mount([st({ driver: 'local', mountPoint: `${dir}/bad`, options: ['mode=rwx'] })])),
    /^INVALID_ARGUMENT: storage local .* not an octal mode/,
  );
});

t.test(
  'local and ephemeral fsgid: the group owns the root, setgid set',
  { skip: process.getuid?.() === 0 ? false : 'chown to another group needs root' },
  async (t) => {
    const { dir, reg, mounts } = setup(t);
    const made = `${dir}/fsg`;
    reg.mount([st({ driver: 'local', mountPoint: made, options: ['mode=0770', 'fsgid=4321'] })]);
    const s = fs.statSync(made);
    t.equal(s.gid, 4321);
    t.equal(s.mode & 0o7777, 0o2770);
    reg.mount([st({ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', mountPoint: `${dir}/eph`, options: ['fsgid=4321', 'size=1m'] })]);
    t.same(mounts().at(-1), ['tmpfs', `${dir}/eph`, 'tmpfs', 0, 'size=1m'], 'fsgid is not passed to the mount');
    t.equal(fs.statSync(`${dir}/eph`).gid, 4321);
  },
);

t.test('bind: a shared file or directory bind-mounted, ro applied by a remount of the bind', async (t) => {
  const { dir, reg, mounts, umounts } = setup(t);
  fs.mkdirSync(`${dir}/shared/c1`, { recursive: true });
  fs.writeFileSync(`${dir}/shared/c1/hosts`, '127.0.0.1 localhost\n');
  const list = reg.mount([st({ driver: 'bind', source: `${dir}/shared/c1/hosts`, fstype: 'bind', options: ['ro'], mountPoint: `${dir}/c1/etc/hosts` })]);
  t.ok(fs.statSync(`${dir}/c1/etc/hosts`).isFile(), 'a file mount point for a file');
  t.same(mounts(), [
    [`${dir}/shared/c1/hosts`, `${dir}/c1/etc/hosts`, null, MS_BIND, null],
    [null, `${dir}/c1/etc/hosts`, null, MS_REMOUNT | MS_BIND | MS_RDONLY, null],
  ]);
  releaseStorages(list);
  t.same(umounts(), [[`${dir}/c1/etc/hosts`, MNT_DETACH]]);
  t.notOk(fs.existsSync(`${dir}/c1/etc/hosts`));
  t.match(
    codeOf(() => reg.mount([st({ driver: 'bind', source: `${dir}/nope`, mountPoint: `${dir}/m` })])),
    /^NOT_FOUND: storage bind .*nope/,
  );
});

t.test('UpdateEphemeralMounts remounts with the new size; other drivers are refused', async (t) => {
  const { reg, mounts } = setup(t);
  reg.updateEphemeral([
    st({ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: ['remount', 'size=2048M'], mountPoint: '/run/kata-containers/sandbox/ephemeral/v' }),
  ]);
  t.same(mounts(), [['tmpfs', '/run/kata-containers/sandbox/ephemeral/v', 'tmpfs', MS_REMOUNT, 'size=2048M']]);
  reg.updateEphemeral([st({ driver: 'ephemeral', source: 'shm', fstype: 'tmpfs', options: ['size=64M'], mountPoint: '/x' })]);
  t.same(mounts().at(-1), ['shm', '/x', 'tmpfs', MS_REMOUNT, 'size=64M'], 'MS_REMOUNT even when the host leaves "remount" out');
  t.match(
    codeOf(() => reg.updateEphemeral([st({ driver: 'local', mountPoint: '/y', options: ['size=1M'] })])),
    /^INVALID_ARGUMENT: UpdateEphemeralMounts \/y: storage driver local/,
  );
  const before = mounts().length;
  reg.updateEphemeral([st({ driver: 'ephemeral', mountPoint: '/z', options: [] })]);
  t.equal(mounts().length, before, 'no options: nothing to change');
});
