// The overlayfs storage driver (kata 3.x "overlayfs") on the in-memory StorageFs and the recording
// libc: the layers the host names checked before anything is made, overlay-rw's writable layer made
// below the state root and removed with the storage, create_directory, and the refusals.
import t from 'tap';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { StorageSchema, type Storage } from '../../protos/gen/agent_pb.js';
import { MNT_DETACH, MS_RDONLY } from '../../agent/src/linux/libc.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { StorageRegistry } from '../../agent/src/storage/storages.js';
import { MemoryFs } from '../support/memory-fs.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { errorOf } from '../support/unit.js';

const ROOT = '/run/kata-containers';
const SHARED = `${ROOT}/shared/containers`;

function setup(t: { teardown(f: () => unknown): void }) {
  const fs = new MemoryFs();
  fs.addDir(`${SHARED}/layers/l1`);
  fs.addDir(`${SHARED}/layers/l2`);
  fs.addDir(`${SHARED}/c1`);
  const libc = new RecordingLibc();
  const fstypes: string[] = [];
  const reg = new StorageRegistry({ libc, fs, log: createLogger('error'), ensureFilesystem: (f) => void fstypes.push(f), stateRoot: ROOT });
  t.teardown(() => reg.close());
  const effects = () => libc.calls.filter((c) => c.name === 'mount' || c.name === 'umount2').map((c) => [c.name, ...c.args]);
  return { fs, reg, effects, fstypes };
}

const st = (s: MessageInitShape<typeof StorageSchema>): Storage => create(StorageSchema, s);
const L1 = `${SHARED}/layers/l1`;
const L2 = `${SHARED}/layers/l2`;

t.test('overlay-rw: the writable layer is made for the container below the state root and goes with the storage', async (t) => {
  const { fs, reg, effects, fstypes } = setup(t);
  const mp = `${SHARED}/c1/rootfs`;
  const s = st({
    driver: 'overlayfs',
    source: 'overlay',
    fstype: 'overlay',
    options: [`lowerdir=${L1}:${L2}`, 'io.katacontainers.fs-opt.overlay-rw'],
    mountPoint: mp,
  });
  const [m] = reg.mount([s], 'c1');
  t.same(fstypes, ['overlay'], 'the overlay module made available first');
  t.same(effects(), [['mount', 'overlay', mp, 'overlay', 0, `lowerdir=${L1}:${L2},upperdir=${ROOT}/overlay/c1/upper,workdir=${ROOT}/overlay/c1/work`]]);
  t.ok(fs.exists(`${ROOT}/overlay/c1/upper`) && fs.exists(`${ROOT}/overlay/c1/work`));
  t.ok(fs.exists(mp), 'mount point made');
  m.release();
  t.same(effects().at(-1), ['umount2', mp, MNT_DETACH]);
  t.notOk(fs.exists(`${ROOT}/overlay/c1`), "the container's writes go with it");
  t.notOk(fs.exists(mp), 'the mount point it made goes too');
  t.ok(fs.exists(L1), 'the layers stay');
});

t.test("the host's own upper and work dirs, read-only flags, and create_directory made before the mount", async (t) => {
  const { fs, reg, effects } = setup(t);
  const mp = `${SHARED}/c1/merged`;
  fs.addDir(`${SHARED}/c1/vol`);
  const s = st({
    driver: 'overlayfs',
    source: 'overlay',
    fstype: 'overlay',
    options: ['ro', `lowerdir=${L1}`, `upperdir=${SHARED}/c1/vol/upper`, `workdir=${SHARED}/c1/vol/work`],
    driverOptions: [
      `io.katacontainers.volume.overlayfs.create_directory=${SHARED}/c1/vol/upper`,
      `io.katacontainers.volume.overlayfs.create_directory=${SHARED}/c1/vol/work`,
    ],
    mountPoint: mp,
  });
  const [m] = reg.mount([s], 'c1');
  t.same(effects(), [['mount', 'overlay', mp, 'overlay', MS_RDONLY, `lowerdir=${L1},upperdir=${SHARED}/c1/vol/upper,workdir=${SHARED}/c1/vol/work`]]);
  t.ok(fs.exists(`${SHARED}/c1/vol/upper`) && fs.exists(`${SHARED}/c1/vol/work`), 'create_directory made both');
  m.release();
  t.ok(fs.exists(`${SHARED}/c1/vol/upper`), "a volume's upper layer is the host's: kept");
});

t.test('refusals name the storage and come before anything is made or mounted', async (t) => {
  const { fs, reg, effects } = setup(t);
  const mp = `${SHARED}/c1/rootfs`;
  const refuse = (over: MessageInitShape<typeof StorageSchema>, cid = 'c1') =>
    errorOf(() => reg.mount([st({ driver: 'overlayfs', source: 'overlay', fstype: 'overlay', mountPoint: mp, ...over })], cid));
  const cases: [string, MessageInitShape<typeof StorageSchema>, RegExp, string?][] = [
    ['no lowerdir', { options: [`upperdir=${L2}`, `workdir=${L1}`] }, /no lowerdir/],
    ['a relative layer', { options: [`lowerdir=${L1}:layers/l2`] }, /lowerdir "layers\/l2" must be an absolute path/],
    ['".." in a layer', { options: [`lowerdir=${SHARED}/../../../etc`] }, /without "\.\."/],
    ['upperdir without workdir', { options: [`lowerdir=${L1}`, `upperdir=${L2}`] }, /upperdir and workdir go together/],
    [
      'overlay-rw and an upperdir',
      { options: [`lowerdir=${L1}`, `upperdir=${L2}`, `workdir=${L2}w`, 'io.katacontainers.fs-opt.overlay-rw'] },
      /with an upperdir or workdir/,
    ],
    ['another fstype', { fstype: 'ext4', options: [`lowerdir=${L1}`] }, /fstype "ext4" is not overlay/],
    ['a missing layer', { options: [`lowerdir=${L1}:${SHARED}/layers/gone`] }, /lowerdir .*layers\/gone does not exist/],
    ['an empty path', { options: ['lowerdir='] }, /option lowerdir has no path/],
    [
      'a create_directory escaping',
      { options: [`lowerdir=${L1}`], driverOptions: ['io.katacontainers.volume.overlayfs.create_directory=../x'] },
      /must be an absolute path/,
    ],
    ['overlay-rw for no container', { options: [`lowerdir=${L1}`, 'io.katacontainers.fs-opt.overlay-rw'] }, /needs the container it is for/, ''],
    ['overlay-rw for a container id with a slash', { options: [`lowerdir=${L1}`, 'io.katacontainers.fs-opt.overlay-rw'] }, /needs the container/, '../c2'],
  ];
  for (const [what, over, re, cid] of cases) {
    const err = refuse(over, cid ?? 'c1');
    t.equal(err.name, 'InvalidArgument', what);
    t.match(err.message, re, what);
    t.match(err.message, `storage overlayfs ${mp}`, `${what}: names the storage`);
  }
  const blk = refuse({ options: [`lowerdir=${L1}`], driverOptions: ['io.katacontainers.rootfs.overlayfs.mount_blk_src=/dev/vdb'] });
  t.equal(blk.name, 'Unimplemented', 'an upper layer on a block device is not served');
  t.same(effects(), [], 'nothing mounted');
  t.notOk(fs.exists(mp), 'no mount point made');
  t.notOk(fs.exists(`${ROOT}/overlay`), 'no writable layer made');
  t.same(reg.refCounts(), {});
});

t.test('a failed mount(2) removes the writable layer and mount point it made', async (t) => {
  const fs = new MemoryFs();
  fs.addDir(L1);
  const libc = new RecordingLibc().fail('mount', 22); // EINVAL
  const reg = new StorageRegistry({ libc, fs, log: createLogger('silent'), ensureFilesystem: () => undefined, stateRoot: ROOT });
  t.teardown(() => reg.close());
  const mp = `${SHARED}/c1/rootfs`;
  const err = errorOf(() =>
    reg.mount(
      [st({ driver: 'overlayfs', source: 'overlay', fstype: 'overlay', options: [`lowerdir=${L1}`, 'io.katacontainers.fs-opt.overlay-rw'], mountPoint: mp })],
      'c1',
    ),
  );
  t.match(err.message, `storage overlayfs ${mp}`);
  t.match(err.message, 'EINVAL');
  t.notOk(fs.exists(mp));
  t.notOk(fs.exists(`${ROOT}/overlay/c1`));
});
