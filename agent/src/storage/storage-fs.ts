// The file operations of the storage drivers, CopyFile and the volume RPCs, behind one typed seam
// beside the libc one (as cgroups/files.ts does for cgroupfs): mount(2) goes through Libc, the
// directories, copies, owners and modes around it go through StorageFs. Unit tests swap in an
// in-memory tree (test/support/memory-fs.ts) that records every change, so a driver's chown of a
// volume or its cleanup after a failed mount is checked without root and without touching /run.
// Errors are node's: an Error with the errno name as `code`, which errors.ts maps like any other.
import fs from 'node:fs';

/** What the drivers read of an lstat/stat: the fields a copy or a mode check needs. */
export interface FileInfo {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  ino: number;
  mtimeMs: number;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

/** statfs(2) as GetVolumeStats and ResizeVolume use it. */
export interface FsUsage {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

export interface StorageFs {
  stat(p: string): FileInfo;
  lstat(p: string): FileInfo;
  /** Follows symlinks, as existsSync does: a dangling link is not there. */
  exists(p: string): boolean;
  /** mkdir -p; `mode` (less the umask) for the directories it makes. */
  mkdirs(p: string, mode?: number): void;
  /** Removes an empty directory; throws (ENOTEMPTY…) otherwise. */
  rmdir(p: string): void;
  /** rm -rf: no error when nothing is there. */
  remove(p: string): void;
  chown(p: string, uid: number, gid: number): void;
  lchown(p: string, uid: number, gid: number): void;
  chmod(p: string, mode: number): void;
  readdir(p: string): string[];
  readlink(p: string): string;
  symlink(target: string, p: string): void;
  copyFile(from: string, to: string): void;
  writeFile(p: string, data: string | Uint8Array): void;
  rename(from: string, to: string): void;
  readText(p: string): string;
  statfs(p: string): FsUsage;
  /** pwrite(2) of all of `data` at `position` (repeated until written). */
  writeAt(fd: number, data: Uint8Array, position: number): void;
  fchown(fd: number, uid: number, gid: number): void;
  fchmod(fd: number, mode: number): void;
}

export const realStorageFs: StorageFs = {
  stat: (p) => fs.statSync(p),
  lstat: (p) => fs.lstatSync(p),
  exists: (p) => fs.existsSync(p),
  mkdirs: (p, mode) => void fs.mkdirSync(p, { recursive: true, mode }),
  rmdir: (p) => fs.rmdirSync(p),
  remove: (p) => fs.rmSync(p, { recursive: true, force: true }),
  chown: (p, uid, gid) => fs.chownSync(p, uid, gid),
  lchown: (p, uid, gid) => fs.lchownSync(p, uid, gid),
  chmod: (p, mode) => fs.chmodSync(p, mode),
  readdir: (p) => fs.readdirSync(p),
  readlink: (p) => fs.readlinkSync(p),
  symlink: (target, p) => fs.symlinkSync(target, p),
  copyFile: (from, to) => fs.copyFileSync(from, to),
  writeFile: (p, data) => fs.writeFileSync(p, data),
  rename: (from, to) => fs.renameSync(from, to),
  readText: (p) => fs.readFileSync(p, 'utf8'),
  statfs: (p) => fs.statfsSync(p),
  writeAt: (fd, data, position) => {
    for (let done = 0; done < data.length;) done += fs.writeSync(fd, data, done, data.length - done, position + done);
  },
  fchown: (fd, uid, gid) => fs.fchownSync(fd, uid, gid),
  fchmod: (fd, mode) => fs.fchmodSync(fd, mode),
};
