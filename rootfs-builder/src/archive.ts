// The image formats: a newc cpio for initrds and an ext4 file system, both made from a folder
// without mounting anything and byte-for-byte reproducible from the same tree.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Every path under `dir`, relative ("." first), sorted so the archive order never depends on readdir. */
export function listTree(dir: string): string[] {
  const out: string[] = ['.'];
  const walk = (rel: string) => {
    const entries = fs
      .readdirSync(path.join(dir, rel), { withFileTypes: true })
      .map((e) => e.name)
      .sort();
    for (const name of entries) {
      const r = rel === '.' ? name : `${rel}/${name}`;
      out.push(r);
      const st = fs.lstatSync(path.join(dir, r));
      if (st.isDirectory()) walk(r);
    }
  };
  walk('.');
  return out;
}

export function makeCpio(dir: string, dest: string): void {
  const list = listTree(dir).join('\n') + '\n';
  const fd = fs.openSync(dest, 'w');
  try {
    // --reproducible: no device/inode numbers from the build machine; -R: every file owned by root.
    const r = spawnSync('cpio', ['--quiet', '-o', '-H', 'newc', '--reproducible', '-R', '0:0'], { cwd: dir, input: list, stdio: ['pipe', fd, 'pipe'] });
    if (r.error) throw new Error(`cpio: ${r.error.message} (install cpio)`);
    if (r.status !== 0) throw new Error(`cpio failed (${r.status}): ${r.stderr.toString()}`);
  } finally {
    fs.closeSync(fd);
  }
}

export function treeBytes(dir: string): number {
  let total = 0;
  for (const rel of listTree(dir)) {
    const st = fs.lstatSync(path.join(dir, rel));
    total += st.isFile() ? Math.ceil(st.size / 4096) * 4096 : 4096;
  }
  return total;
}

export interface Ext4Options {
  uuid: string;
  epoch: number;
  label: string;
  /** The filesystem's size; default ext4SizeMiB(dir). */
  sizeMiB?: number;
  /**
   * A 4 MiB journal: kata mounts `image =` roots with rootflags=data=ordered, which ext4 refuses
   * without one.
   */
  journal?: boolean;
}

/** Room for the tree plus the metadata mkfs adds and a little slack; whole MiB so the size is stable. */
export function ext4SizeMiB(dir: string): number {
  return Math.ceil((treeBytes(dir) * 1.15) / 1048576) + 16;
}

export function makeExt4(dir: string, dest: string, o: Ext4Options): void {
  const mib = o.sizeMiB ?? ext4SizeMiB(dir);
  fs.rmSync(dest, { force: true });
  const env = { ...process.env, E2FSPROGS_FAKE_TIME: String(o.epoch), SOURCE_DATE_EPOCH: String(o.epoch) };
  try {
    execFileSync(
      'mkfs.ext4',
      [
        '-q',
        '-F',
        '-t',
        'ext4',
        '-b',
        '4096',
        '-m',
        '0',
        '-L',
        o.label,
        '-U',
        o.uuid,
        ...(o.journal ? ['-J', 'size=4', '-O', '^metadata_csum_seed'] : ['-O', '^has_journal,^metadata_csum_seed']),
        '-E',
        `root_owner=0:0,hash_seed=${o.uuid},lazy_itable_init=0,nodiscard`,
        '-d',
        dir,
        dest,
        `${mib}M`,
      ],
      { env, stdio: ['ignore', 'inherit', 'inherit'] },
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('mkfs.ext4 not found (install e2fsprogs)', { cause: err });
    throw err;
  }
  // mke2fs 1.47.0 copies each source file's atime and ctime, which the build itself moves (reading
  // a file, touching it), so pin both afterwards; mtime and crtime already follow the tree/epoch.
  const cmds = ['/lost+found', ...listTree(dir).map((r) => (r === '.' ? '/' : `/${r}`))]
    .flatMap((p) => [`sif "${p}" ctime @${o.epoch}`, `sif "${p}" atime @${o.epoch}`])
    .join('\n');
  const r = spawnSync('debugfs', ['-w', '-f', '-', dest], { input: cmds + '\n', env, stdio: ['pipe', 'ignore', 'pipe'] });
  if (r.error) throw new Error(`debugfs: ${r.error.message} (install e2fsprogs)`);
  if (r.status !== 0) throw new Error(`debugfs on ${dest} failed (${r.status}): ${r.stderr.toString().slice(0, 500)}`);
}

/** sha256 of a file, read in 8 MiB pieces (images and packages are hundreds of MiB). */
export function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(8 * 1024 * 1024);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}
