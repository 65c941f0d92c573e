// Storage drivers on the in-memory StorageFs and the recording libc: the owners, modes and cleanups
// that need root on a real filesystem (fsgid chown, watchable copies keeping the source's uid/gid,
// the undo after a failed chown or remount), checked as the exact sequence of changes.
import t from 'tap';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { FSGroupSchema, StorageSchema, type Storage } from '../../protos/gen/agent_pb.js';
import { FSGroupChangePolicy } from '../../protos/gen/types_pb.js';
import { MNT_DETACH, MS_BIND, MS_NODEV, MS_NOSUID, MS_RDONLY, MS_REMOUNT } from '../../agent/src/linux/libc.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { applyFsGroup } from '../../agent/src/storage/fs-group.js';
import { StorageRegistry, releaseStorages } from '../../agent/src/storage/storages.js';
import { volumeStats } from '../../agent/src/storage/volume-stats.js';
import { MemoryFs } from '../support/memory-fs.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { errorOf } from '../support/unit.js';

const SANDBOX = '/run/kata-containers/sandbox';
const SHARED = '/run/kata-containers/shared/containers';

function setup(t: { teardown(f: () => unknown): void }) {
  const fs = new MemoryFs();
  fs.addDir(SANDBOX);
  fs.addDir(SHARED);
  const libc = new RecordingLibc();
  const reg = new StorageRegistry({ libc, fs, log: createLogger('error'), ensureFilesystem: () => undefined, watchIntervalMs: 3_600_000 });
  t.teardown(() => reg.close());
  const effects = () => libc.calls.filter((c) => c.name === 'mount' || c.name === 'umount2').map((c) => [c.name, ...c.args]);
  return { fs, libc, reg, effects };
}

const st = (s: MessageInitShape<typeof StorageSchema>): Storage => create(StorageSchema, s);

t.test('ephemeral with fsgid: mount point made, tmpfs mounted, then group and setgid; release undoes both', async (t) => {
  const { fs, reg, effects } = setup(t);
  const mp = `${SANDBOX}/ephemeral/cache`;
  const [m] = reg.mount([st({ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: ['fsgid=2000'], mountPoint: mp })]);
  t.same(fs.changes, [`mkdir ${SANDBOX}/ephemeral 755`, `mkdir ${mp} 755`, `chown ${mp} -1:2000`, `chmod ${mp} 2755`]);
  t.same(effects(), [['mount', 'tmpfs', mp, 'tmpfs', 0, null]]);
  t.equal(fs.owner(mp), '0:2000 2755');
  m.release();
  t.same(effects().at(-1), ['umount2', mp, MNT_DETACH]);
  t.equal(fs.changes.at(-1), `rmdir ${mp}`, 'the directory it made goes, its parent (which had another maker) stays');
});

t.test('ephemeral: a chown that fails unmounts and removes the mount point, naming the storage and errno', async (t) => {
  const { fs, reg, effects } = setup(t);
  const mp = `${SANDBOX}/shm`;
  fs.fail('chown', mp, 'EPERM');
  const err = errorOf(() => reg.mount([st({ driver: 'ephemeral', fstype: 'tmpfs', options: ['fsgid=5'], mountPoint: mp })]));
  t.match(err.message, `storage ephemeral ${mp} fsgid`);
  t.match(err.message, 'EPERM');
  t.same(effects().at(-1), ['umount2', mp, MNT_DETACH]);
  t.notOk(fs.exists(mp), 'no mount point left');
  t.same(reg.refCounts(), {});
});

t.test('local: a new directory gets mode and fsgid exactly; an existing one is never changed', async (t) => {
  const { fs, reg } = setup(t);
  const made = `${SANDBOX}/local/data`;
  const [a] = reg.mount([st({ driver: 'local', source: 'local', options: ['mode=0750', 'fsgid=3000'], mountPoint: made })]);
  t.equal(fs.owner(made), '0:3000 2750', 'setgid on top of the mode asked');
  fs.addDir(`${SANDBOX}/local/old`, 0o700, 1000, 1000);
  const before = fs.changes.length;
  const [b] = reg.mount([st({ driver: 'local', source: 'local', options: ['mode=0777', 'fsgid=3000'], mountPoint: `${SANDBOX}/local/old` })]);
  t.same(fs.changes.slice(before), [], 'no chmod or chown of a directory the agent did not make');
  t.equal(fs.owner(`${SANDBOX}/local/old`), '1000:1000 700');
  releaseStorages([a, b]);
  t.notOk(fs.exists(made));
  t.ok(fs.exists(`${SANDBOX}/local/old`));
});

t.test('local: a path that exists as a file is refused, nothing changed', async (t) => {
  const { fs, reg } = setup(t);
  fs.addFile(`${SANDBOX}/f`, 'x');
  t.match(errorOf(() => reg.mount([st({ driver: 'local', mountPoint: `${SANDBOX}/f` })])).message, 'exists and is not a directory');
  t.same(fs.changes, []);
});

t.test('bind of a shared file: an empty file made as mount point, ro by remount; a failed remount undoes it all', async (t) => {
  const { fs, libc, reg, effects } = setup(t);
  fs.addFile(`${SHARED}/c1-hosts`, '127.0.0.1 localhost\n');
  const mp = `${SANDBOX}/c1/hosts`;
  const [m] = reg.mount([st({ driver: 'bind', source: `${SHARED}/c1-hosts`, options: ['bind', 'ro'], mountPoint: mp })]);
  t.same(fs.changes, [`mkdir ${SANDBOX}/c1 755`, `write ${mp} 0`]);
  t.same(effects(), [
    ['mount', `${SHARED}/c1-hosts`, mp, null, MS_BIND, null],
    ['mount', null, mp, null, MS_REMOUNT | MS_BIND | MS_RDONLY, null],
  ]);
  m.release();
  t.notOk(fs.exists(mp));

  let n = 0;
  const failing = new RecordingLibc({
    mount: () => {
      if (++n === 2) throw Object.assign(new Error('EPERM: mount'), { code: 'EPERM' });
    },
  });
  const reg2 = new StorageRegistry({ libc: failing, fs, log: createLogger('error'), ensureFilesystem: () => undefined });
  t.teardown(() => reg2.close());
  t.match(errorOf(() => reg2.mount([st({ driver: 'bind', source: `${SHARED}/c1-hosts`, options: ['ro'], mountPoint: mp })])).message, 'EPERM');
  t.same(
    failing.calls.filter((c) => c.name === 'umount2').map((c) => c.args),
    [[mp, MNT_DETACH]],
  );
  t.notOk(fs.exists(mp), 'the mount point file it made is gone');
  t.equal(libc.calls.length, 3);
});

t.test('watchable-bind keeps owner and mode of each entry, writes beside and renames, follows updates', async (t) => {
  const { fs, reg, effects } = setup(t);
  const src = `${SHARED}/c1-cm`;
  fs.addDir(src, 0o755, 0, 1000);
  fs.addFile(`${src}/key`, 'v1', 0o440, 0, 1000);
  fs.addSymlink(`${src}/link`, 'key', 0, 1000);
  const mp = `${SHARED}/watchable/c1-cm`;
  const [m] = reg.mount([st({ driver: 'watchable-bind', source: src, options: ['bind'], mountPoint: mp })], 'c1');
  t.same(effects(), [['mount', 'tmpfs', `${SHARED}/watchable`, 'tmpfs', MS_NOSUID | MS_NODEV, null]]);
  t.equal(fs.owner(`${mp}/key`), '0:1000 440');
  t.equal(fs.owner(mp), '0:1000 755');
  t.equal(fs.readlink(`${mp}/link`), 'key');
  t.equal(fs.owner(`${mp}/link`).split(' ')[0], '0:1000', 'the link itself is re-owned (lchown), not its target');
  t.ok(fs.changes.includes(`rename ${mp}/.key.kata-copy ${mp}/key`), 'a reader sees the old or the new file, never half');

  fs.writeFile(`${src}/key`, 'v2');
  const before = fs.changes.length;
  reg.pollWatchable();
  t.equal(fs.content(`${mp}/key`), 'v2');
  t.same(
    fs.changes.slice(before),
    [`copy ${src}/key ${mp}/.key.kata-copy`, `chmod ${mp}/.key.kata-copy 440`, `chown ${mp}/.key.kata-copy 0:1000`, `rename ${mp}/.key.kata-copy ${mp}/key`],
    'only the changed file is copied again',
  );
  m.release();
  t.notOk(fs.exists(mp));
  t.same(effects().at(-1), ['umount2', `${SHARED}/watchable`, MNT_DETACH]);
});

t.test('applyFsGroup on a tree: group and modes, a symlink re-grouped but never followed', async (t) => {
  const fs = new MemoryFs();
  fs.addDir('/vol', 0o755);
  fs.addFile('/vol/a', 'x', 0o600, 1000, 1000);
  fs.addDir('/vol/d', 0o700);
  fs.addDir('/outside', 0o700);
  fs.addFile('/outside/secret', 's', 0o600);
  fs.addSymlink('/vol/d/escape', '/outside');
  t.same(applyFsGroup(fs, '/vol', 4000, false), { changed: 4 });
  t.equal(fs.owner('/vol'), '0:4000 2775');
  t.equal(fs.owner('/vol/a'), '1000:4000 660');
  t.equal(fs.owner('/vol/d'), '0:4000 2770');
  t.equal(fs.owner('/outside/secret'), '0:0 600', 'nothing behind the link touched');
  t.same(applyFsGroup(fs, '/vol', 4000, true), { changed: 0 }, 'OnRootMismatch: root already right');
});

t.test('a blk storage with an fsGroup: the walk runs on the mounted volume; a failure unmounts it', async (t) => {
  const { fs, reg, effects } = setup(t);
  const devices = { block: async () => ({ path: '/dev/vdb', major: 254, minor: 16 }) };
  const reg2 = new StorageRegistry({ libc: new RecordingLibc(), fs, log: createLogger('error'), ensureFilesystem: () => undefined, devices: devices as never });
  t.teardown(() => reg2.close());
  const s = st({
    driver: 'blk',
    source: '02/00',
    fstype: 'ext4',
    mountPoint: `${SANDBOX}/vol`,
    fsGroup: create(FSGroupSchema, { groupId: 7, groupChangePolicy: FSGroupChangePolicy.Always }),
  });
  fs.fail('chown', `${SANDBOX}/vol`, 'EROFS');
  const found = await reg2.findDevices([s]);
  t.match(errorOf(() => reg2.mount([s], 'c1', found)).message, /fsGroup 7.*EROFS/);
  t.notOk(fs.exists(`${SANDBOX}/vol`));
  t.same(effects(), [], 'the first registry did nothing');
  t.same(reg.refCounts(), {});
});

t.test('GetVolumeStats counts as df does from statfs', async (t) => {
  const fs = new MemoryFs();
  fs.addDir('/v');
  const r = volumeStats('/v', (p) => fs.statfs(p));
  t.same(
    r.usage.map((u) => [u.total, u.available, u.used]),
    [
      [4096000n, 2048000n, 1638400n],
      [100n, 90n, 10n],
    ],
  );
  t.throws(() => volumeStats('/nope', (p) => fs.statfs(p)), /no volume at \/nope/);
});
