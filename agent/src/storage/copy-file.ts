// CopyFile: with no shared filesystem (shared_fs = none, the confidential configurations) a 3.x host
// copies a container's files (hostname, hosts, resolv.conf, configmaps and secrets) into the guest
// one entry at a time, a regular file in chunks. The path is the host's to choose, so it is resolved
// one component at a time below the shared directory through file descriptors (mount/in-root.ts),
// never following a symlink: a link the host made earlier with CopyFile itself, or a container that
// shares the directory, cannot turn a later write into one outside it.
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import path from 'node:path';
import type { CopyFileRequest } from '../../../protos/gen/agent_pb.js';
import { AgentError, FailedPrecondition, InvalidArgument } from '../errors.js';
import type { Libc } from '../linux/libc.js';
import { AT_FDCWD, AT_SYMLINK_NOFOLLOW, O_CLOEXEC, O_NONBLOCK, O_PATH, S_IFDIR, S_IFLNK, S_IFMT } from '../linux/libc.js';
import { fdPath, openInRoot, type Created } from '../mount/in-root.js';
import type { AgentHandlers } from '../rpc/service.js';
import { realStorageFs, type StorageFs } from './storage-fs.js';

const { O_CREAT, O_DIRECTORY, O_NOFOLLOW, O_TRUNC, O_WRONLY } = constants;
const S_IFREG = 0o100000;
const NAME_MAX = 255;

export interface CopyFileDeps {
  libc: Libc;
  fs?: StorageFs;
  /** `<state root>/shared/containers`: nothing is written anywhere else. */
  sharedDir: string;
}

export function copyFileHandlers(deps: CopyFileDeps): AgentHandlers {
  return {
    copyFile(req) {
      copyFile(deps, req);
      return {};
    },
  };
}

/** The request's path below the shared directory, as components; refused when it is not below it. */
function componentsBelow(sharedDir: string, p: string): string[] {
  const refuse = (why: string) => new InvalidArgument(`CopyFile ${JSON.stringify(p)}: ${why}`);
  if (p.includes('\0')) throw refuse('the path has a NUL byte');
  if (!path.posix.isAbsolute(p)) throw refuse('the path is not absolute');
  // Refused rather than normalised: a host that sends ".." is not sending what kata does.
  if (p.split('/').includes('..')) throw refuse('the path has a ".." component');
  const prefix = path.posix.normalize(sharedDir).replace(/\/+$/, '') + '/';
  const normal = path.posix.normalize(p);
  if (!normal.startsWith(prefix)) throw refuse(`the path is not below ${prefix}`);
  const parts = normal
    .slice(prefix.length)
    .split('/')
    .filter((c) => c !== '' && c !== '.');
  if (parts.length === 0) throw refuse(`the path is not below ${prefix}`);
  return parts;
}

function int(v: bigint, what: string, p: string): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidArgument(`CopyFile ${JSON.stringify(p)}: ${what} ${v} is out of range`);
  return Number(v);
}

/**
 * The failure as the host should see it, naming the request's path: a symlink or a non-directory
 * in the way is the request's fault (the lookup never follows one); anything else keeps its errno
 * name, which rpc/status.ts maps.
 */
function failure(err: unknown, p: string): Error {
  if (err instanceof AgentError) return err;
  const e = err as NodeJS.ErrnoException;
  const msg = e instanceof Error ? e.message : String(err);
  if (e?.code === 'ELOOP' || e?.code === 'ENOTDIR')
    return new InvalidArgument(`CopyFile ${JSON.stringify(p)}: a symlink or a non-directory is in the way (${e.code}): ${msg}`);
  const out = new Error(`CopyFile ${JSON.stringify(p)}: ${msg}`) as NodeJS.ErrnoException;
  if (e?.code) out.code = e.code;
  return out;
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code;
}

/**
 * The temp name a regular file (or a symlink) is built under before the rename: fixed for a path, as
 * its chunks come in separate calls. Hidden, so a reader listing the directory skips it; a hash when
 * the name would be too long for the filesystem.
 */
export function tempName(name: string): string {
  const tmp = `.${name}.tmp`;
  if (Buffer.byteLength(tmp) <= NAME_MAX) return tmp;
  return `.${createHash('sha256').update(name).digest('hex').slice(0, 32)}.tmp`;
}

export function copyFile(deps: CopyFileDeps, req: CopyFileRequest): void {
  const parts = componentsBelow(deps.sharedDir, req.path);
  const { libc } = deps;
  const fs = deps.fs ?? realStorageFs;
  try {
    // The shared directory is the agent's own: with no shared filesystem nothing else makes it.
    fs.mkdirs(deps.sharedDir, 0o755);
    const root = libc.openat(AT_FDCWD, deps.sharedDir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    let parent: number;
    try {
      parent = openParent(libc, fs, root, deps.sharedDir, parts.slice(0, -1), req.dirMode & 0o7777);
    } finally {
      libc.close(root);
    }
    try {
      writeEntry(libc, fs, parent, parts[parts.length - 1], req);
    } finally {
      libc.close(parent);
    }
  } catch (err) {
    throw failure(err, req.path);
  }
}

/**
 * Opens (O_PATH) the directory the entry goes into, making the missing ones with `dirMode`. One
 * component per openInRoot call, each from its parent's fd, so every directory this call made is
 * known (and gets `dirMode`) even on a filesystem mounted below the shared directory.
 */
function openParent(libc: Libc, fs: StorageFs, rootFd: number, rootName: string, parts: string[], dirMode: number): number {
  let dir = libc.openat(rootFd, '.', O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  let where = rootName;
  try {
    for (const part of parts) {
      const created: Created = [];
      const next = openInRoot(libc, { fd: dir, name: where, dev: libc.fstat(dir).dev }, part, 'dir', 'dir', created);
      libc.close(dir);
      dir = next;
      where = `${where}/${part}`;
      // mkdirat's mode is cut by the umask; the host asked for this one exactly.
      if (created.length > 0) fs.chmod(fdPath(dir), dirMode);
    }
    return dir;
  } catch (err) {
    libc.close(dir);
    throw err;
  }
}

function writeEntry(libc: Libc, fs: StorageFs, parent: number, name: string, req: CopyFileRequest): void {
  const type = req.fileMode & S_IFMT;
  const mode = req.fileMode & 0o7777;
  // uid/gid are int32 on the wire: -1 means "leave it", as it does for chown.
  const { uid, gid } = req;
  if (type === S_IFDIR) return makeDirectory(libc, fs, parent, name, mode, uid, gid);
  if (type === S_IFLNK) return makeSymlink(libc, fs, parent, name, req, uid, gid);
  if (type !== S_IFREG && type !== 0)
    throw new InvalidArgument(
      `CopyFile ${JSON.stringify(req.path)}: file_mode ${req.fileMode.toString(8)} is neither a regular file, a directory nor a symlink`,
    );
  writeChunk(libc, fs, parent, name, req, mode, uid, gid);
}

function makeDirectory(libc: Libc, fs: StorageFs, parent: number, name: string, mode: number, uid: number, gid: number): void {
  try {
    libc.mkdirat(parent, name, 0o700);
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw err;
  }
  // O_NOFOLLOW|O_DIRECTORY: an existing symlink of that name is refused, not followed.
  const fd = libc.openat(parent, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC, 0);
  try {
    // chown before chmod: chown clears set-id bits the mode may ask for.
    fs.chown(fdPath(fd), uid, gid);
    fs.chmod(fdPath(fd), mode);
  } finally {
    libc.close(fd);
  }
}

function makeSymlink(libc: Libc, fs: StorageFs, parent: number, name: string, req: CopyFileRequest, uid: number, gid: number): void {
  const target = Buffer.from(req.data).toString('utf8');
  if (target === '' || target.includes('\0')) throw new InvalidArgument(`CopyFile ${JSON.stringify(req.path)}: the symlink target is empty or has a NUL byte`);
  const tmp = tempName(name);
  unlinkIfThere(libc, parent, tmp);
  libc.symlinkat(target, parent, tmp);
  try {
    // The binding takes uid_t: -1 has to arrive as its unsigned self.
    libc.fchownat(parent, tmp, uid >>> 0, gid >>> 0, AT_SYMLINK_NOFOLLOW);
    // A rename replaces the old link in one step: a configmap's "..data" switches to its new
    // timestamped directory without a moment where it is missing.
    renameIn(fs, parent, tmp, name);
  } catch (err) {
    unlinkIfThere(libc, parent, tmp);
    throw err;
  }
}

function writeChunk(libc: Libc, fs: StorageFs, parent: number, name: string, req: CopyFileRequest, mode: number, uid: number, gid: number): void {
  const size = int(req.fileSize, 'file_size', req.path);
  const offset = int(req.offset, 'offset', req.path);
  const data = req.data;
  if (offset + data.length > size)
    throw new InvalidArgument(`CopyFile ${JSON.stringify(req.path)}: a chunk of ${data.length} bytes at offset ${offset} goes past file_size ${size}`);
  const tmp = tempName(name);
  // The first chunk starts the file afresh (a transfer the host restarted leaves no stale tail).
  // O_NOFOLLOW refuses a symlink at the temp name; O_NONBLOCK keeps a FIFO there from blocking us.
  const flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (offset === 0 ? O_TRUNC : 0);
  const fd = libc.openat(parent, tmp, flags, 0o600);
  const complete = offset + data.length === size;
  try {
    if ((libc.fstat(fd).mode & S_IFMT) !== S_IFREG)
      throw new FailedPrecondition(`CopyFile ${JSON.stringify(req.path)}: its temp name ${tmp} is taken by something not a regular file`);
    fs.writeAt(fd, data, offset);
    if (complete) {
      fs.fchown(fd, uid, gid);
      fs.fchmod(fd, mode);
    }
  } finally {
    libc.close(fd);
  }
  if (!complete) return;
  try {
    // Only now does the file appear under its name, whole.
    renameIn(fs, parent, tmp, name);
  } catch (err) {
    unlinkIfThere(libc, parent, tmp);
    throw err;
  }
}

/**
 * rename(2) of two names in the directory `dirFd` stands for. The fd's magic link in /proc takes the
 * lookup straight to that directory, and rename never follows a symlink at either last component.
 */
function renameIn(fs: StorageFs, dirFd: number, from: string, to: string): void {
  fs.rename(`${fdPath(dirFd)}/${from}`, `${fdPath(dirFd)}/${to}`);
}

function unlinkIfThere(libc: Libc, dirFd: number, name: string): void {
  try {
    libc.unlinkat(dirFd, name, 0);
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err;
  }
}
