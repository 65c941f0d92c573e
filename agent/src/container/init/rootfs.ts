// Mount-namespace work of the container-init helper: runs in the helper's main thread only, with
// synchronous calls (libuv's threadpool threads stay in the agent's old mount namespace). Every
// path under the rootfs is opened through fds (mount/in-root.ts) and mounted on as /proc/self/fd/N:
// the rootfs may be shared with running containers that swap its directories for symlinks. Every
// kernel effect goes through the Libc it is given, so a unit test can drive the whole setup against
// RecordingLibc.
import path from 'node:path';
import { SyscallError } from '../../linux/errno.js';
import type { Libc } from '../../linux/libc.js';
import {
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  MNT_DETACH,
  MS_BIND,
  MS_MOVE,
  MS_NODEV,
  MS_NOEXEC,
  MS_NOSUID,
  MS_RDONLY,
  MS_REC,
  MS_REMOUNT,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_PATH,
  S_IFDIR,
  S_IFMT,
  O_WRONLY,
} from '../../linux/libc.js';
import { exists, mkdirAll } from '../../linux/paths.js';
import { fdPath, inParent, onRootFs, openFollowingInRoot, openIfExists, openInRoot, type Created, type Root } from '../../mount/in-root.js';
import type { CreatePlan, DeviceStep, MountStep } from './plan.js';

/** The rootfs being built, as an fd every lookup starts from, and what it created so far. */
interface Build {
  libc: Libc;
  root: Root;
  created: Created;
  /**
   * After pivot_root without a /proc in the container there is no /proc/self/fd: mounts then name
   * the path, which can only lead to places inside the container's own root by now.
   */
  byName?: boolean;
}

function targetOf(b: Build, fd: number, p: string): string {
  return b.byName ? p : fdPath(fd);
}

/** Opens (creating if missing) a mount destination and calls `f` with the path mount(2) is given. */
function atTarget(b: Build, rel: string, kind: 'dir' | 'file', f: (target: string) => void): void {
  const fd = openInRoot(b.libc, b.root, rel, kind, kind, b.created);
  try {
    f(fdPath(fd));
  } catch (err) {
    throw named(err, `${b.root.name}${rel}`);
  } finally {
    b.libc.close(fd);
  }
}

/** A mount(2) on /proc/self/fd/N names only the fd; the error should name the destination. */
function named(err: unknown, where: string): unknown {
  if (err instanceof SyscallError && err.syscall === 'mount') return new SyscallError('mount', err.errno, `${err.detail} (${where})`);
  return err;
}

/** A bind source inside the rootfs is opened in it (symlinks taken inside), so a swap cannot point it at the host. */
function withSource(b: Build, rootfs: string, source: string, f: (src: string) => void): void {
  const rel = path.relative(rootfs, source);
  if (rel === '..' || rel.startsWith('../') || path.isAbsolute(rel)) return f(source);
  const fd = openFollowingInRoot(b.libc, b.root, rel);
  try {
    f(fdPath(fd));
  } finally {
    b.libc.close(fd);
  }
}

function mountOne(b: Build, plan: CreatePlan, m: MountStep): void {
  const { libc } = b;
  const kind = m.isFile ? 'file' : 'dir';
  if (m.type === 'cgroup' || m.type === 'cgroup2') {
    mountCgroup(b, m, plan.cgroupV1Hierarchies);
  } else if (m.flags & MS_BIND) {
    withSource(b, plan.rootfs, m.source, (src) => atTarget(b, m.destination, kind, (t) => libc.mount(src, t, null, m.flags, null)));
    // Bind mounts ignore every other flag on the first call; ro/nosuid/... need a remount, on the
    // destination opened again: the first fd names the directory under the new mount.
    if (m.remountFlags) atTarget(b, m.destination, kind, (t) => libc.mount(null, t, null, MS_BIND | MS_REMOUNT | m.remountFlags, null));
  } else {
    atTarget(b, m.destination, kind, (t) => libc.mount(m.source, t, m.type, m.flags | m.remountFlags, m.data || null));
  }
  if (m.propagation) atTarget(b, m.destination, kind, (t) => libc.mount(null, t, null, m.propagation, null));
  if (m.type === 'devpts' && m.destination === '/dev/pts') {
    // A private devpts instance needs /dev/ptmx pointing into it, or openpt finds the host's.
    inParent(libc, b.root, 'dev/ptmx', false, (dev, name) => {
      unlinkIfThere(libc, dev, name);
      libc.symlinkat('pts/ptmx', dev, name);
    });
  }
}

/** true when there was something to remove. */
function unlinkIfThere(libc: Libc, dirFd: number, name: string): boolean {
  try {
    libc.unlinkat(dirFd, name, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return false;
  }
}

/** v2: the container's own group (with a cgroup namespace); v1: a tmpfs with one mount per hierarchy. */
function mountCgroup(b: Build, m: MountStep, cgroupV1: string[]): void {
  const { libc } = b;
  const flags = m.flags & ~MS_BIND & ~MS_REC;
  const ro = (m.flags | m.remountFlags) & MS_RDONLY;
  if (cgroupV1.length === 0) {
    atTarget(b, m.destination, 'dir', (t) => libc.mount('cgroup2', t, 'cgroup2', flags | m.remountFlags, null));
    return;
  }
  atTarget(b, m.destination, 'dir', (t) => libc.mount('tmpfs', t, 'tmpfs', MS_NOSUID | MS_NODEV | MS_NOEXEC, 'mode=755'));
  // Everything below lives on that fresh tmpfs, which only this mount namespace sees.
  for (const h of cgroupV1) {
    atTarget(b, `${m.destination}/${h}`, 'dir', (t) => libc.mount('cgroup', t, 'cgroup', MS_NOSUID | MS_NODEV | MS_NOEXEC | ro, h));
    // "cpu,cpuacct" is also reachable as cpu and cpuacct, as on a host.
    for (const alias of h.split(',')) {
      if (alias === h) continue;
      inParent(libc, b.root, `${m.destination}/${alias}`, false, (dir, name) => {
        try {
          libc.symlinkat(h, dir, name);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
      });
    }
  }
  if (ro) atTarget(b, m.destination, 'dir', (t) => libc.mount(null, t, null, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 'mode=755'));
}

function makeDevice(b: Build, d: DeviceStep): void {
  const { libc } = b;
  inParent(
    libc,
    b.root,
    d.path,
    true,
    (dir, name) => {
      const replaced = unlinkIfThere(libc, dir, name);
      libc.mknodat(dir, name, d.mode, d.major, d.minor);
      // A node that replaced one of the rootfs's own stays on failure; one made from nothing goes.
      if (!replaced && onRootFs(libc, b.root, dir)) b.created.push({ path: d.path.replace(/^\/+/, ''), kind: 'file' });
      libc.fchownat(dir, name, d.uid, d.gid, AT_SYMLINK_NOFOLLOW);
    },
    b.created,
  );
}

/** pivot_root into `root`; where "/" is an initramfs pivot_root is EINVAL, so move it over "/" and chroot. */
function enterRoot(libc: Libc, root: string): void {
  libc.chdir(root);
  try {
    libc.pivotRoot('.', '.');
    libc.umount2('.', MNT_DETACH);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    libc.mount(root, '/', null, MS_MOVE, null);
    libc.chroot('.');
  }
  libc.chdir('/');
}

function maskPath(b: Build, p: string): void {
  const fd = openIfExists(b.libc, b.root, p, 'any');
  if (fd === undefined) return;
  try {
    const target = targetOf(b, fd, p);
    if ((b.libc.fstat(fd).mode & S_IFMT) === S_IFDIR) b.libc.mount('tmpfs', target, 'tmpfs', MS_RDONLY, null);
    else b.libc.mount('/dev/null', target, null, MS_BIND, null);
  } catch (err) {
    throw named(err, p);
  } finally {
    b.libc.close(fd);
  }
}

function readonlyPath(b: Build, p: string): void {
  const fd = openIfExists(b.libc, b.root, p, 'any');
  if (fd === undefined) return;
  try {
    b.libc.mount(targetOf(b, fd, p), targetOf(b, fd, p), null, MS_BIND | MS_REC, null);
  } catch (err) {
    throw named(err, p);
  } finally {
    b.libc.close(fd);
  }
  // Opened again: the remount is of the bind just made, not of what it covers.
  atExisting(b, p, (t) => b.libc.mount(null, t, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, null));
}

function atExisting(b: Build, p: string, f: (target: string) => void): void {
  const fd = openInRoot(b.libc, b.root, p, 'any');
  try {
    f(targetOf(b, fd, p));
  } catch (err) {
    throw named(err, p);
  } finally {
    b.libc.close(fd);
  }
}

/** Writes /proc/sys/<key> of the container's own /proc, never through a symlink. */
function writeSysctl(b: Build, key: string, value: string): void {
  const rel = `proc/sys/${key.replace(/\./g, '/')}`;
  inParent(b.libc, b.root, rel, false, (dir, name) => {
    const where = `/${rel} (sysctl ${key})`;
    let fd: number;
    try {
      fd = b.libc.openat(dir, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0);
    } catch (err) {
      throw err instanceof SyscallError ? new SyscallError('open', err.errno, where) : err;
    }
    try {
      b.libc.write(fd, Buffer.from(value));
    } catch (err) {
      // The kernel refuses a bad value at write(): the fd alone would not say which sysctl it was.
      throw err instanceof SyscallError ? new SyscallError('write', err.errno, `${where} = "${value}"`) : err;
    } finally {
      b.libc.close(fd);
    }
  });
}

/** Attaches what the setup created to its error, so the agent can remove it once this helper is gone. */
export class RootfsError extends Error {
  constructor(
    err: unknown,
    readonly created: Created,
  ) {
    super((err as Error).message);
  }
}

/** Everything between unshare and the container's view of "/": mounts, devices, root switch, paths, sysctls. */
export function setupRootfs(libc: Libc, plan: CreatePlan): void {
  libc.mount(null, '/', null, plan.rootPropagation, null);
  mkdirAll(libc, plan.rootfsMount);
  libc.mount(plan.rootfs, plan.rootfsMount, null, MS_BIND | MS_REC, null);
  const rootFd = libc.openat(AT_FDCWD, plan.rootfsMount, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  const b: Build = { libc, root: { fd: rootFd, name: plan.rootfs, dev: libc.fstat(rootFd).dev }, created: [] };
  try {
    for (const m of plan.mounts) mountOne(b, plan, m);
    for (const d of plan.devices) makeDevice(b, d);
  } catch (err) {
    throw new RootfsError(err, b.created);
  } finally {
    libc.close(rootFd);
  }
  enterRoot(libc, plan.rootfsMount);
  // From here on "/" is the container's root: nothing the container links to can reach the host.
  const inner: Build = {
    libc,
    root: { fd: libc.openat(AT_FDCWD, '/', O_PATH | O_DIRECTORY | O_CLOEXEC, 0), name: '' },
    created: [],
    byName: !exists(libc, '/proc/self/fd'),
  };
  try {
    for (const [key, value] of Object.entries(plan.sysctl)) writeSysctl(inner, key, value);
    for (const p of plan.maskedPaths) maskPath(inner, p);
    for (const p of plan.readonlyPaths) readonlyPath(inner, p);
  } catch (err) {
    throw new RootfsError(err, b.created);
  } finally {
    libc.close(inner.root.fd);
  }
  if (plan.readonlyRoot) libc.mount(null, '/', null, MS_BIND | MS_REMOUNT | MS_RDONLY, null);
}
