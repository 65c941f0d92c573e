// watchable-bind: the initial copy, each poll's copies and deletions, kata's size/count limits that turn
// it into a bind mount, and the tmpfs under ".../watchable" (mounts through the recording libc).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { StorageSchema } from '../../protos/gen/agent_pb.js';
import { MNT_DETACH, MS_BIND, MS_NODEV, MS_NOSUID } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { StorageRegistry, releaseStorages } from '../../agent/src/storage/storages.js';
import { WATCHABLE_MAX_BYTES, WATCHABLE_MAX_ENTRIES, watchableRoot } from '../../agent/src/storage/drivers/watchable-bind.js';

function setup(t: { teardown(f: () => unknown): void }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'watchable-unit-'));
  const libc = new RecordingLibc();
  // A poll interval no test reaches: each test polls by hand, so nothing depends on timing.
  const reg = new StorageRegistry({ libc, log: createLogger('error'), ensureFilesystem: () => undefined, watchIntervalMs: 3_600_000 });
  t.teardown(() => {
    reg.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, libc, reg };
}

const watchable = (source: string, mountPoint: string) =>
  create(StorageSchema, { driver: 'watchable-bind', source, fstype: 'bind', options: ['bind'], mountPoint });

t.test('the watchable root is the ancestor named watchable', async (t) => {
  t.equal(watchableRoot('/run/kata-containers/shared/containers/watchable/c1-ab-config'), '/run/kata-containers/shared/containers/watchable');
  t.equal(watchableRoot('/run/kata-containers/shared/containers/passthrough/watchable/x/y'), '/run/kata-containers/shared/containers/passthrough/watchable');
  t.equal(watchableRoot('/run/somewhere/else'), undefined);
});

t.test('a configmap directory: copied at once, then changes, additions and deletions at each poll', async (t) => {
  const { dir, libc, reg } = setup(t);
  const src = `${dir}/shared/c1-1234-config`;
  const root = `${dir}/shared/watchable`;
  const dst = `${root}/c1-1234-config`;
  // kubelet's atomic writer layout: a timestamped dir, ..data pointing at it, and key links.
  fs.mkdirSync(`${src}/..2026_12_03_1`, { recursive: true });
  fs.writeFileSync(`${src}/..2026_12_03_1/app.conf`, 'v=1\n', { mode: 0o640 });
  fs.symlinkSync('..2026_12_03_1', `${src}/..data`);
  fs.symlinkSync('..data/app.conf', `${src}/app.conf`);

  const list = reg.mount([watchable(src, dst)], 'c1');
  t.same(
    libc.calls.filter((c) => c.name === 'mount').map((c) => c.args),
    [['tmpfs', root, 'tmpfs', MS_NOSUID | MS_NODEV, null]],
    'one tmpfs for the watchable root, no bind',
  );
  t.equal(fs.readFileSync(`${dst}/app.conf`, 'utf8'), 'v=1\n', 'read through the copied links');
  t.equal(fs.readlinkSync(`${dst}/..data`), '..2026_12_03_1');
  t.equal(fs.statSync(`${dst}/..2026_12_03_1/app.conf`).mode & 0o777, 0o640, 'mode kept');
  t.notOk(fs.lstatSync(`${dst}/app.conf`).isFile(), 'a symlink stays a symlink');

  // The host updates the configmap the way kubelet does: new dir, swap ..data, drop the old dir.
  fs.mkdirSync(`${src}/..2026_12_03_2`);
  fs.writeFileSync(`${src}/..2026_12_03_2/app.conf`, 'v=2\n');
  fs.writeFileSync(`${src}/..2026_12_03_2/extra.conf`, 'new\n');
  fs.symlinkSync('..2026_12_03_2', `${src}/..data.tmp`);
  fs.renameSync(`${src}/..data.tmp`, `${src}/..data`);
  fs.rmSync(`${src}/..2026_12_03_1`, { recursive: true });
  t.equal(fs.readFileSync(`${dst}/app.conf`, 'utf8'), 'v=1\n', 'nothing changes between polls');
  reg.pollWatchable();
  t.equal(fs.readFileSync(`${dst}/app.conf`, 'utf8'), 'v=2\n', 'the change is copied at the next poll');
  t.equal(fs.readFileSync(`${dst}/..2026_12_03_2/extra.conf`, 'utf8'), 'new\n', 'an added file is copied');
  t.notOk(fs.existsSync(`${dst}/..2026_12_03_1`), 'a removed directory is removed from the copy');

  fs.writeFileSync(`${src}/..2026_12_03_2/app.conf`, 'v=3, same dir, in place\n');
  reg.pollWatchable();
  t.equal(fs.readFileSync(`${dst}/app.conf`, 'utf8'), 'v=3, same dir, in place\n', 'an in-place rewrite is copied too');

  releaseStorages(list);
  t.notOk(fs.existsSync(dst), 'the copy goes with the container');
  t.same(
    libc.calls.filter((c) => c.name === 'umount2').map((c) => c.args),
    [[root, MNT_DETACH]],
    'the tmpfs goes with the last watchable storage',
  );
});

t.test('a single-file source is copied to a file', async (t) => {
  const { dir, reg } = setup(t);
  fs.writeFileSync(`${dir}/token`, 'secret-1');
  reg.mount([watchable(`${dir}/token`, `${dir}/watchable/c2-token`)], 'c2');
  t.equal(fs.readFileSync(`${dir}/watchable/c2-token`, 'utf8'), 'secret-1');
  fs.writeFileSync(`${dir}/token`, 'secret-2, longer');
  reg.pollWatchable();
  t.equal(fs.readFileSync(`${dir}/watchable/c2-token`, 'utf8'), 'secret-2, longer');
});

t.test(`over ${WATCHABLE_MAX_ENTRIES} entries or ${WATCHABLE_MAX_BYTES} bytes it becomes a bind mount and is no longer copied`, async (t) => {
  const { dir, libc, reg } = setup(t);
  const many = `${dir}/many`;
  fs.mkdirSync(many);
  for (let i = 0; i < WATCHABLE_MAX_ENTRIES; i++) fs.writeFileSync(`${many}/f${i}`, 'x');
  const big = `${dir}/big`;
  fs.mkdirSync(big);
  fs.writeFileSync(`${big}/a`, 'x');
  const list = reg.mount([watchable(many, `${dir}/watchable/many`), watchable(big, `${dir}/watchable/big`)], 'c3');
  const binds = () => libc.calls.filter((c) => c.name === 'mount' && c.args[3] === MS_BIND).map((c) => c.args.slice(0, 2));
  t.same(binds(), [[many, `${dir}/watchable/many`]], '16 files plus the directory is one too many');
  t.equal(fs.readFileSync(`${dir}/watchable/big/a`, 'utf8'), 'x', 'the small one is a copy');
  fs.writeFileSync(`${big}/huge`, Buffer.alloc(WATCHABLE_MAX_BYTES));
  reg.pollWatchable();
  t.same(binds()[1], [big, `${dir}/watchable/big`], 'grown past 1 MiB: bind-mounted at the next poll');
  const calls = libc.calls.length;
  reg.pollWatchable();
  t.equal(libc.calls.length, calls, 'bound storages are not polled');
  releaseStorages(list);
  const umounted = libc.calls.filter((c) => c.name === 'umount2').map((c) => c.args[0]);
  t.same(umounted, [`${dir}/watchable/big`, `${dir}/watchable/many`, `${dir}/watchable`], 'binds undone, then the tmpfs');
});

t.test('a missing source fails the storage and leaves nothing', async (t) => {
  const { dir, libc, reg } = setup(t);
  t.throws(() => reg.mount([watchable(`${dir}/nope`, `${dir}/watchable/x`)], 'c4'), /storage watchable-bind .*nope/);
  t.same(
    libc.calls.filter((c) => c.name === 'umount2').map((c) => c.args[0]),
    [`${dir}/watchable`],
  );
  t.same(reg.refCounts(), {});
});
