// GetVolumeStats on a real filesystem (root: a tmpfs of known size this test mounts and unmounts),
// checked against what df reports for it; then the refusals.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { volumeStats } from '../../agent/src/storage/volume-stats.js';
import { toRpcError } from '../../agent/src/rpc/status.js';
import { VolumeUsage_Unit } from '../../protos/gen/csi_pb.js';

const skip = process.getuid?.() !== 0 ? 'needs root (mounts a tmpfs)' : false;

/** df's numbers for `dir`, in bytes or inodes. */
function df(dir: string, inodes: boolean): { total: bigint; used: bigint; available: bigint } {
  const cols = inodes ? 'itotal,iused,iavail' : 'size,used,avail';
  const r = spawnSync('df', ['-B1', `--output=${cols}`, dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`df: ${r.stderr}`);
  const [total, used, available] = r.stdout.trim().split('\n')[1].trim().split(/\s+/).map(BigInt);
  return { total, used, available };
}

t.test('bytes and inodes of a mounted volume, as df counts them', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'volume-stats-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,nr_inodes=1000', 'kata-test-vol', dir]);
  t.equal(r.status, 0, 'tmpfs mounted');
  t.teardown(() => {
    spawnSync('umount', [dir]);
    fs.rmdirSync(dir);
  });
  fs.writeFileSync(path.join(dir, 'data'), Buffer.alloc(3 << 20, 1));
  for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(dir, `f${i}`), 'x');

  const stats = volumeStats(dir);
  const [bytes, inodes] = stats.usage;
  t.equal(bytes.unit, VolumeUsage_Unit.BYTES);
  t.equal(inodes.unit, VolumeUsage_Unit.INODES);
  t.same({ total: bytes.total, used: bytes.used, available: bytes.available }, df(dir, false));
  t.equal(bytes.total, 8n << 20n);
  t.ok(bytes.used >= 3n << 20n, 'the 3 MiB written count as used');
  t.same({ total: inodes.total, used: inodes.used, available: inodes.available }, df(dir, true));
  t.equal(inodes.total, 1000n);
  t.same(stats.volumeCondition, { abnormal: false, message: '' });
});

t.test('refusals name the path', async (t) => {
  const status = (p: string) => {
    try {
      volumeStats(p);
      return 'OK';
    } catch (err) {
      const e = toRpcError(err);
      return `${e.code}: ${e.message}`;
    }
  };
  t.equal(status('relative/vol'), '3: GetVolumeStats: volume_guest_path "relative/vol" is not a normalized absolute path');
  t.equal(status('/run/../etc'), '3: GetVolumeStats: volume_guest_path "/run/../etc" is not a normalized absolute path');
  t.equal(status('/nonexistent/kata-volume'), '5: GetVolumeStats: no volume at /nonexistent/kata-volume (ENOENT)');
});

t.test('the arithmetic on a statfs answer: reserved blocks are neither used nor available', async (t) => {
  const st = { type: 0, bsize: 4096, blocks: 1000, bfree: 300, bavail: 250, files: 64, ffree: 60 } as never;
  const [bytes, inodes] = volumeStats('/vol', () => st).usage;
  t.same([bytes.total, bytes.used, bytes.available], [4096000n, 2867200n, 1024000n]);
  t.same([inodes.total, inodes.used, inodes.available], [64n, 4n, 60n]);
});
