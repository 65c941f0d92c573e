// Block storages (blk, mmioblk, scsi, nvdimm) against the recording libc and a fake device finder, and the
// fsGroup walk (fs-group.ts) on a temp tree.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { StorageSchema, type Storage } from '../../protos/gen/agent_pb.js';
import { FSGroupChangePolicy } from '../../protos/gen/types_pb.js';
import { MNT_DETACH, MS_RDONLY } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { StorageRegistry, releaseStorages } from '../../agent/src/storage/storages.js';

const storageDrivers = ['9p', 'virtio-fs', 'ephemeral', 'local', 'bind', 'watchable-bind', 'overlayfs'];
import { applyFsGroup } from '../../agent/src/storage/fs-group.js';
import { realStorageFs } from '../../agent/src/storage/storage-fs.js';
import type { BlockDevice } from '../../agent/src/device/block.js';
import { errorOf } from '../support/unit.js';

const log = createLogger('silent');

function tmpDir(t: { teardown(f: () => unknown): void }, prefix = 'block-storage-unit-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function setup(t: { teardown(f: () => unknown): void }, withDevices = true, device: BlockDevice = { path: '/dev/vdz', major: 254, minor: 32 }) {
  const dir = tmpDir(t);
  const libc = new RecordingLibc();
  const fstypes: string[] = [];
  const lookups: { kind: string; source: string }[] = [];
  const devices = {
    block: async (kind: string, source: string) => {
      lookups.push({ kind, source });
      return device;
    },
  } as never;
  const reg = new StorageRegistry({ libc, log, ensureFilesystem: (f) => void fstypes.push(f), devices: withDevices ? devices : undefined });
  t.teardown(() => reg.close());
  const mounts = () => libc.calls.filter((c) => c.name === 'mount').map((c) => c.args);
  const umounts = () => libc.calls.filter((c) => c.name === 'umount2').map((c) => c.args);
  return { dir, libc, reg, fstypes, lookups, mounts, umounts };
}

const st = (s: MessageInitShape<typeof StorageSchema>): Storage => create(StorageSchema, s);

async function rejection(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => new Error('resolved'),
    (e: Error) => e,
  );
}

t.test('blk: the disk found, then mounted read-only with its fstype; release unmounts', async (t) => {
  const { dir, reg, fstypes, lookups, mounts, umounts } = setup(t);
  const mp = `${dir}/mp`;
  const s = st({ driver: 'blk', source: '02/01', fstype: 'ext4', mountPoint: mp, options: ['ro'] });
  const found = await reg.findDevices([s]);
  t.same(lookups, [{ kind: 'blk', source: '02/01' }]);
  t.same(found.get(s), { path: '/dev/vdz', major: 254, minor: 32 });
  const list = reg.mount([s], 'c1', found);
  t.same(fstypes, ['ext4'], 'the filesystem made available');
  t.same(mounts(), [['/dev/vdz', mp, 'ext4', MS_RDONLY, null]]);
  t.ok(fs.statSync(mp).isDirectory(), 'mount point created');
  t.same(reg.refCounts(), { [mp]: 1 });
  releaseStorages(list);
  t.same(umounts(), [[mp, MNT_DETACH]]);
  t.notOk(fs.existsSync(mp), 'the mount point the agent made is removed');
  t.same(reg.refCounts(), {});
});

t.test('nvdimm: looked up as nvdimm by its /dev/pmemN; "dax" goes to the filesystem as data', async (t) => {
  const { dir, reg, lookups, mounts, umounts } = setup(t, true, { path: '/dev/pmem0', major: 259, minor: 0 });
  const mp = `${dir}/pmem`;
  const s = st({ driver: 'nvdimm', source: '/dev/pmem0', fstype: 'ext4', mountPoint: mp, options: ['dax', 'ro'] });
  const found = await reg.findDevices([s]);
  t.same(lookups, [{ kind: 'nvdimm', source: '/dev/pmem0' }]);
  const list = reg.mount([s], 'c1', found);
  t.same(mounts(), [['/dev/pmem0', mp, 'ext4', MS_RDONLY, 'dax']]);
  releaseStorages(list);
  t.same(umounts(), [[mp, MNT_DETACH]]);
});

t.test('mmioblk and scsi are looked up by their own kind; data options pass as data', async (t) => {
  const { dir, reg, lookups, mounts } = setup(t);
  const a = st({ driver: 'mmioblk', source: '/dev/vdb', fstype: 'xfs', mountPoint: `${dir}/a`, options: ['nouuid'] });
  const b = st({ driver: 'scsi', source: '0:1', fstype: 'ext4', mountPoint: `${dir}/b`, options: [] });
  const found = await reg.findDevices([a, b]);
  t.same(lookups, [
    { kind: 'mmioblk', source: '/dev/vdb' },
    { kind: 'scsi', source: '0:1' },
  ]);
  reg.mount([a, b], '', found);
  t.same(mounts(), [
    ['/dev/vdz', `${dir}/a`, 'xfs', 0, 'nouuid'],
    ['/dev/vdz', `${dir}/b`, 'ext4', 0, null],
  ]);
});

t.test('a block storage mounted already needs no lookup; it is shared by mount point', async (t) => {
  const { dir, reg, lookups, mounts, umounts } = setup(t);
  const s = st({ driver: 'blk', source: '02/01', fstype: 'ext4', mountPoint: `${dir}/mp`, options: [] });
  const first = reg.mount([s], 'c1', await reg.findDevices([s]));
  const again = await reg.findDevices([s]);
  t.equal(again.size, 0, 'no wait for a disk mounted already');
  t.equal(lookups.length, 1);
  const second = reg.mount([s], 'c2', again);
  t.equal(mounts().length, 1, 'mounted once');
  t.same(reg.refCounts(), { [`${dir}/mp`]: 2 });
  releaseStorages(first);
  t.same(umounts(), [], 'still used by the second container');
  releaseStorages(second);
  t.equal(umounts().length, 1);
});

t.test('blk with an empty fstype is InvalidArgument, and nothing is mounted', async (t) => {
  const { dir, reg, mounts } = setup(t);
  const s = st({ driver: 'blk', source: '02/01', fstype: '', mountPoint: `${dir}/mp`, options: [] });
  const found = await reg.findDevices([s]);
  const err = errorOf(() => reg.mount([s], '', found));
  t.equal(err.name, 'InvalidArgument');
  t.match(err.message, /fstype is empty/);
  t.match(err.message, '02/01');
  t.same(mounts(), []);
  t.same(reg.refCounts(), {});
});

t.test('a filesystem the kernel cannot have fails the mount with that error', async (t) => {
  const dir = tmpDir(t);
  const libc = new RecordingLibc();
  const reg = new StorageRegistry({
    libc,
    log,
    ensureFilesystem: () => {
      throw Object.assign(new Error('no module for btrfs'), { code: 'ENODEV' });
    },
    devices: { block: async () => ({ path: '/dev/vdz', major: 254, minor: 32 }) } as never,
  });
  t.teardown(() => reg.close());
  const s = st({ driver: 'blk', source: '02/01', fstype: 'btrfs', mountPoint: `${dir}/mp`, options: [] });
  const err = errorOf(() => reg.mount([s], '', new Map([[s, { path: '/dev/vdz', major: 254, minor: 32 }]])));
  t.equal((err as NodeJS.ErrnoException).code, 'ENODEV');
  t.match(err.message, /no module for btrfs/);
  t.same(
    libc.calls.filter((c) => c.name === 'mount'),
    [],
  );
});

t.test('a failed mount(2) leaves no mount point behind', async (t) => {
  const { dir, libc, reg } = setup(t);
  libc.fail('mount', 6); // ENXIO
  const s = st({ driver: 'scsi', source: '0:1', fstype: 'ext4', mountPoint: `${dir}/mp`, options: [] });
  const found = await reg.findDevices([s]);
  const err = errorOf(() => reg.mount([s], '', found));
  t.equal((err as NodeJS.ErrnoException).code, 'ENXIO');
  t.notOk(fs.existsSync(`${dir}/mp`));
});

t.test('without devices the block drivers are refused and not listed', async (t) => {
  const { dir, reg, mounts } = setup(t, false);
  t.same(reg.drivers, storageDrivers);
  for (const driver of ['blk', 'mmioblk', 'scsi']) {
    t.notOk(reg.drivers.includes(driver), `${driver} not listed`);
    const s = st({ driver, source: 'x', fstype: 'ext4', mountPoint: `${dir}/mp`, options: [] });
    const err = await rejection(reg.findDevices([s]));
    t.equal(err.name, 'Unimplemented', `${driver}: findDevices`);
    t.match(err.message, driver);
    t.equal(errorOf(() => reg.mount([s])).name, 'Unimplemented', `${driver}: mount`);
  }
  t.same(mounts(), []);
});

t.test('with devices the block drivers are listed', async (t) => {
  const { reg } = setup(t);
  t.same(reg.drivers, [...storageDrivers, 'blk', 'mmioblk', 'scsi', 'nvdimm']);
});

t.test('a block storage mounted without findDevices is refused', async (t) => {
  const { dir, reg, mounts } = setup(t);
  const s = st({ driver: 'blk', source: '02/01', fstype: 'ext4', mountPoint: `${dir}/mp`, options: [] });
  t.throws(() => reg.mount([s]), /without its device/);
  t.same(mounts(), []);
});

t.test('a storage with a relative mount point is refused before any lookup', async (t) => {
  const { reg, lookups } = setup(t);
  const err = await rejection(reg.findDevices([st({ driver: 'blk', source: '02/01', fstype: 'ext4', mountPoint: 'mp', options: [] })]));
  t.equal(err.name, 'InvalidArgument');
  t.same(lookups, []);
});

// ---- fsGroup ----

const GID = 12345;
const modeOf = (p: string) => fs.lstatSync(p).mode & 0o7777;

/** root/{file, sub/{deep}, link -> outside file}, outside: a file in another directory. */
function tree(t: { teardown(f: () => unknown): void }) {
  const root = path.join(tmpDir(t, 'fs-group-unit-'), 'vol');
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true, mode: 0o755 });
  fs.chmodSync(root, 0o755);
  fs.chmodSync(path.join(root, 'sub'), 0o700);
  fs.writeFileSync(path.join(root, 'file'), 'a', { mode: 0o644 });
  fs.chmodSync(path.join(root, 'file'), 0o644);
  fs.writeFileSync(path.join(root, 'sub', 'deep'), 'b');
  fs.chmodSync(path.join(root, 'sub', 'deep'), 0o600);
  const outside = path.join(tmpDir(t, 'fs-group-outside-'), 'target');
  fs.writeFileSync(outside, 'c');
  fs.chmodSync(outside, 0o600);
  fs.symlinkSync(outside, path.join(root, 'link'));
  return { root, outside };
}

t.test('applyFsGroup: every file and directory gets the group, group rw, and setgid directories', async (t) => {
  const { root, outside } = tree(t);
  const outsideGid = fs.statSync(outside).gid;
  t.not(outsideGid, GID);
  const r = applyFsGroup(realStorageFs, root, GID, false);
  t.same(r, { changed: 5 }, 'root, file, sub, sub/deep and the link');
  for (const p of [root, path.join(root, 'file'), path.join(root, 'sub'), path.join(root, 'sub', 'deep')]) {
    t.equal(fs.lstatSync(p).gid, GID, `${path.relative(root, p) || '.'}: group`);
  }
  t.equal(modeOf(path.join(root, 'file')), 0o664);
  t.equal(modeOf(path.join(root, 'sub', 'deep')), 0o660);
  t.equal(modeOf(root), 0o2775, 'the root: setgid, group rwx');
  t.equal(modeOf(path.join(root, 'sub')), 0o2770, 'a 0700 directory: setgid, group rwx');
  t.equal(fs.lstatSync(path.join(root, 'link')).gid, GID, 'the link itself is re-grouped');
  t.equal(fs.statSync(outside).gid, outsideGid, "the link's target outside the volume keeps its group");
  t.equal(modeOf(outside), 0o600, 'and its mode');
});

t.test('applyFsGroup: a symlinked directory is not walked into', async (t) => {
  const { root } = tree(t);
  const elsewhere = tmpDir(t, 'fs-group-dir-outside-');
  fs.writeFileSync(path.join(elsewhere, 'x'), 'x');
  const before = fs.statSync(path.join(elsewhere, 'x')).gid;
  fs.symlinkSync(elsewhere, path.join(root, 'dirlink'));
  applyFsGroup(realStorageFs, root, GID, false);
  t.equal(fs.statSync(path.join(elsewhere, 'x')).gid, before);
  t.not(fs.statSync(elsewhere).gid, GID, 'the directory the link points to keeps its group');
});

t.test('applyFsGroup OnRootMismatch: a root with the group and setgid already is left alone', async (t) => {
  const { root } = tree(t);
  fs.chownSync(root, -1, GID);
  fs.chmodSync(root, 0o2775);
  t.same(applyFsGroup(realStorageFs, root, GID, true), { changed: 0 });
  t.not(fs.statSync(path.join(root, 'file')).gid, GID, 'the files inside were not walked');
  t.equal(modeOf(path.join(root, 'file')), 0o644);
});

t.test('applyFsGroup OnRootMismatch: a root without setgid (or another group) is walked', async (t) => {
  const { root } = tree(t);
  fs.chownSync(root, -1, GID);
  t.same(applyFsGroup(realStorageFs, root, GID, true), { changed: 5 }, 'the group alone is not enough');
  t.equal(fs.statSync(path.join(root, 'file')).gid, GID);
  t.same(applyFsGroup(realStorageFs, root, GID + 1, true), { changed: 5 }, 'another group');
  t.equal(fs.statSync(path.join(root, 'sub', 'deep')).gid, GID + 1);
});

t.test('a blk storage with an fsGroup applies it on the mounted volume', async (t) => {
  const { dir, reg, mounts } = setup(t);
  const mp = path.join(dir, 'vol');
  fs.mkdirSync(mp);
  fs.writeFileSync(path.join(mp, 'data'), 'x', { mode: 0o600 });
  fs.chmodSync(path.join(mp, 'data'), 0o600);
  const s = st({
    driver: 'blk',
    source: '02/01',
    fstype: 'ext4',
    mountPoint: mp,
    options: [],
    fsGroup: { groupId: GID, groupChangePolicy: FSGroupChangePolicy.Always },
  });
  const list = reg.mount([s], '', await reg.findDevices([s]));
  t.equal(mounts().length, 1);
  t.equal(fs.statSync(path.join(mp, 'data')).gid, GID);
  t.equal(modeOf(path.join(mp, 'data')), 0o660);
  t.equal(modeOf(mp) & 0o2000, 0o2000);
  releaseStorages(list);
  t.ok(fs.existsSync(mp), 'a mount point that was there stays');
});
