// Mount-namespace work of the container-init helper: runs in the helper's main thread only, with
// synchronous fs calls (libuv's threadpool threads stay in the agent's old mount namespace).
import fs from 'node:fs';
import path from 'node:path';
import type { Libc } from '../../linux/libc.js';
import { MNT_DETACH, MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT } from '../../linux/libc.js';
import type { CreatePlan, DeviceStep, MountStep } from './plan.js';

function ensureTarget(target: string, isFile: boolean): void {
  if (isFile) {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    if (!fs.existsSync(target)) fs.closeSync(fs.openSync(target, 'a'));
  } else {
    fs.mkdirSync(target, { recursive: true });
  }
}

function mountOne(libc: Libc, root: string, m: MountStep, cgroupV1: string[]): void {
  const target = path.join(root, m.destination);
  ensureTarget(target, m.isFile);
  if (m.type === 'cgroup' || m.type === 'cgroup2') {
    mountCgroup(libc, target, m, cgroupV1);
  } else if (m.flags & MS_BIND) {
    libc.mount(m.source, target, null, m.flags, null);
    // Bind mounts ignore every other flag on the first call; ro/nosuid/... need a remount.
    if (m.remountFlags) libc.mount(null, target, null, MS_BIND | MS_REMOUNT | m.remountFlags, null);
  } else {
    libc.mount(m.source, target, m.type, m.flags | m.remountFlags, m.data || null);
  }
  if (m.propagation) libc.mount(null, target, null, m.propagation, null);
  if (m.type === 'devpts' && m.destination === '/dev/pts') {
    // A private devpts instance needs /dev/ptmx pointing into it, or openpt finds the host's.
    const ptmx = path.join(root, 'dev/ptmx');
    fs.rmSync(ptmx, { force: true });
    fs.symlinkSync('pts/ptmx', ptmx);
  }
}

/** v2: the container's own group (with a cgroup namespace); v1: a tmpfs with one mount per hierarchy. */
function mountCgroup(libc: Libc, target: string, m: MountStep, cgroupV1: string[]): void {
  const flags = m.flags & ~MS_BIND & ~MS_REC;
  const ro = (m.flags | m.remountFlags) & MS_RDONLY;
  if (cgroupV1.length === 0) {
    libc.mount('cgroup2', target, 'cgroup2', flags | m.remountFlags, null);
    return;
  }
  libc.mount('tmpfs', target, 'tmpfs', MS_NOSUID | MS_NODEV | MS_NOEXEC, 'mode=755');
  for (const h of cgroupV1) {
    const dir = path.join(target, h);
    fs.mkdirSync(dir, { recursive: true });
    libc.mount('cgroup', dir, 'cgroup', MS_NOSUID | MS_NODEV | MS_NOEXEC | ro, h);
    // "cpu,cpuacct" is also reachable as cpu and cpuacct, as on a host.
    for (const alias of h.split(',')) if (alias !== h && !fs.existsSync(path.join(target, alias))) fs.symlinkSync(h, path.join(target, alias));
  }
  if (ro) libc.mount(null, target, null, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 'mode=755');
}

function makeDevice(libc: Libc, root: string, d: DeviceStep): void {
  const target = path.join(root, d.path);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.rmSync(target, { force: true });
  libc.mknod(target, d.mode, d.major, d.minor);
  fs.chownSync(target, d.uid, d.gid);
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

function maskPath(libc: Libc, p: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return;
  }
  if (st.isDirectory()) libc.mount('tmpfs', p, 'tmpfs', MS_RDONLY, null);
  else libc.mount('/dev/null', p, null, MS_BIND, null);
}

function readonlyPath(libc: Libc, p: string): void {
  if (!fs.existsSync(p)) return;
  libc.mount(p, p, null, MS_BIND | MS_REC, null);
  libc.mount(null, p, null, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, null);
}

/** Everything between unshare and the container's view of "/": mounts, devices, root switch, paths, sysctls. */
export function setupRootfs(libc: Libc, plan: CreatePlan): void {
  libc.mount(null, '/', null, plan.rootPropagation, null);
  fs.mkdirSync(plan.rootfsMount, { recursive: true });
  libc.mount(plan.rootfs, plan.rootfsMount, null, MS_BIND | MS_REC, null);
  for (const m of plan.mounts) mountOne(libc, plan.rootfsMount, m, plan.cgroupV1Hierarchies);
  for (const d of plan.devices) makeDevice(libc, plan.rootfsMount, d);
  enterRoot(libc, plan.rootfsMount);
  for (const [key, value] of Object.entries(plan.sysctl)) {
    fs.writeFileSync(`/proc/sys/${key.replace(/\./g, '/')}`, value);
  }
  for (const p of plan.maskedPaths) maskPath(libc, p);
  for (const p of plan.readonlyPaths) readonlyPath(libc, p);
  if (plan.readonlyRoot) libc.mount(null, '/', null, MS_BIND | MS_REMOUNT | MS_RDONLY, null);
}
