// Path resolution under a container root through file descriptors. A rootfs can be shared with
// containers that already run, and they may swap any directory of it for a symlink at any moment:
// a path checked by the agent (secure-join.ts) and then used by name could lead out of the root by
// the time the helper mkdirs or mounts on it. Here every component is opened relative to the fd of
// its parent with O_NOFOLLOW, created (when asked) relative to that fd, and the caller mounts onto
// /proc/self/fd/N, so a lookup never leaves the directory it started from.
import fs from 'node:fs';
import { EEXIST, ENOENT, SyscallError } from '../linux/errno.js';
import type { Libc } from '../linux/libc.js';
import { AT_FDCWD, AT_REMOVEDIR, O_CLOEXEC, O_PATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, S_IFLNK, S_IFMT } from '../linux/libc.js';

const { O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_WRONLY } = fs.constants;
const ELOOP = 40;
const ENOSYS = 38;
const EINVAL = 22;

export type Kind = 'dir' | 'file' | 'any';

/** A directory fd the lookups start from, and what it stands for in error messages. */
export interface Root {
  fd: number;
  /** Host path the fd was opened as, for messages ("" for the container's own "/" after pivot_root). */
  name: string;
  /**
   * st_dev of the root: only entries made on that filesystem are recorded as created. One made on
   * a mount the setup added (the tmpfs on /dev) vanishes with it, and the same path in the rootfs
   * below is the rootfs's own.
   */
  dev?: number;
}

/** Whether an entry made in `dirFd` is in the rootfs itself (and so outlives the helper's mounts). */
export function onRootFs(libc: Libc, root: Root, dirFd: number): boolean {
  return root.dev !== undefined && libc.fstat(dirFd).dev === root.dev;
}

/** What a resolution created, relative to the root, in creation order (so a failed setup can undo it). */
export type Created = { path: string; kind: 'dir' | 'file' }[];

function components(rel: string): string[] {
  const parts = rel.split('/').filter((c) => c !== '' && c !== '.');
  // Plans carry paths the agent already resolved; ".." here would be a plan the agent never made.
  if (parts.includes('..')) throw new SyscallError('openat', ELOOP, `path "${rel}" has a ".." component`);
  return parts;
}

function errnoOf(err: unknown): number | undefined {
  return err instanceof SyscallError ? err.errno : undefined;
}

/** Where a mount(2) given only an fd finds it: the magic link of the fd in our own /proc. */
export function fdPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/**
 * Opens `rel` under `root` as an O_PATH fd, never following a symlink on the way (a symlink at any
 * component is ELOOP/ENOTDIR). `create` makes missing components: directories for every one but the
 * last, which is a directory or an empty file. The caller closes the fd.
 */
export function openInRoot(libc: Libc, root: Root, rel: string, kind: Kind, create?: 'dir' | 'file', created?: Created): number {
  const parts = components(rel);
  let dir = root.fd;
  try {
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      const part = parts[i];
      const flags = O_PATH | O_NOFOLLOW | O_CLOEXEC | (!last || kind === 'dir' ? O_DIRECTORY : 0);
      const where = `${root.name}/${parts.slice(0, i + 1).join('/')}`;
      let fd: number;
      try {
        fd = libc.openat(dir, part, flags, 0);
      } catch (err) {
        if (errnoOf(err) !== ENOENT || !create) throw annotate(err, where);
        const asFile = last && create === 'file';
        if (makeEntry(libc, dir, part, asFile) && created && onRootFs(libc, root, dir))
          created.push({ path: parts.slice(0, i + 1).join('/'), kind: asFile ? 'file' : 'dir' });
        try {
          fd = libc.openat(dir, part, flags, 0);
        } catch (again) {
          throw annotate(again, where);
        }
      }
      if (dir !== root.fd) libc.close(dir);
      dir = fd;
      // O_PATH|O_NOFOLLOW without O_DIRECTORY opens a symlink itself: refuse it, it is not what was planned.
      if (last && kind !== 'dir' && (libc.fstat(fd).mode & S_IFMT) === S_IFLNK) throw new SyscallError('openat', ELOOP, `${where} is a symlink`);
    }
    if (dir === root.fd) return libc.openat(root.fd, '.', O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    return dir;
  } catch (err) {
    if (dir !== root.fd) libc.close(dir);
    throw err;
  }
}

/** true when this call made it, false when something else did meanwhile. */
function makeEntry(libc: Libc, dir: number, name: string, asFile: boolean): boolean {
  try {
    if (asFile) libc.close(libc.openat(dir, name, O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY | O_CLOEXEC, 0o644));
    else libc.mkdirat(dir, name, 0o755);
    return true;
  } catch (err) {
    if (errnoOf(err) === EEXIST) return false;
    throw err;
  }
}

function annotate(err: unknown, where: string): unknown {
  if (err instanceof SyscallError) return new SyscallError(err.syscall, err.errno, where);
  return err;
}

/** Like openInRoot, but undefined when some component does not exist (masked/readonly paths are optional). */
export function openIfExists(libc: Libc, root: Root, rel: string, kind: Kind): number | undefined {
  try {
    return openInRoot(libc, root, rel, kind);
  } catch (err) {
    if (errnoOf(err) === ENOENT) return undefined;
    throw err;
  }
}

/**
 * Opens `rel` under `root` following symlinks the way the container will, each one taken inside the
 * root (openat2 RESOLVE_IN_ROOT): for a bind source that lives in the rootfs. Kernels before 5.6
 * have no openat2; there no symlink is followed at all.
 */
export function openFollowingInRoot(libc: Libc, root: Root, rel: string): number {
  try {
    return libc.openat2(root.fd, rel === '' ? '.' : rel, O_PATH | O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
  } catch (err) {
    if (errnoOf(err) !== ENOSYS) throw annotate(err, `${root.name}/${rel}`);
    return openInRoot(libc, root, rel, 'any');
  }
}

/** Calls `f` with a directory fd for the parent of `rel` (created if asked) and the last component's name. */
export function inParent<T>(libc: Libc, root: Root, rel: string, create: boolean, f: (dirFd: number, name: string) => T, created?: Created): T {
  const parts = components(rel);
  if (parts.length === 0) throw new SyscallError('openat', EINVAL, `${root.name}/ has no parent`);
  const dir = openInRoot(libc, root, parts.slice(0, -1).join('/'), 'dir', create ? 'dir' : undefined, created);
  // An O_PATH fd is good for *at() calls of the entries below it.
  try {
    return f(dir, parts[parts.length - 1]);
  } finally {
    libc.close(dir);
  }
}

/**
 * Removes what a resolution created, newest first, each relative to its parent's fd. A directory
 * that is not empty (or a mount point) stays: it is then no longer only ours.
 */
export function removeCreated(libc: Libc, root: Root, created: Created): string[] {
  const left: string[] = [];
  for (const c of [...created].reverse()) {
    try {
      inParent(libc, root, c.path, false, (dir, name) => libc.unlinkat(dir, name, c.kind === 'dir' ? AT_REMOVEDIR : 0));
    } catch (err) {
      if (errnoOf(err) !== ENOENT) left.push(`${c.path}: ${(err as Error).message}`);
    }
  }
  return left;
}

/** removeCreated for a failed setup, from the agent once the helper (and its mounts) are gone. */
export function removeCreatedUnder(libc: Libc, rootPath: string, created: Created): string[] {
  if (created.length === 0) return [];
  let fd: number;
  try {
    fd = libc.openat(AT_FDCWD, rootPath, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  } catch (err) {
    return [`${rootPath}: ${(err as Error).message}`];
  }
  try {
    return removeCreated(libc, { fd, name: rootPath }, created);
  } finally {
    libc.close(fd);
  }
}
