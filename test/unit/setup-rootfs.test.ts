// setupRootfs (container/init/rootfs.ts) on the recording libc, with a small in-memory kernel behind
// it: a tree of entries, fds, bind mounts as path aliases, pivot_root as a new "/". Each test builds
// its plan from an OCI spec the way the agent does and asserts the ordered kernel effects, with every
// /proc/self/fd/N mount target named by the path its fd was opened as. No root needed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { SpecSchema } from '../../protos/gen/oci_pb.js';
import { createPlan } from '../../agent/src/container/plan-builder.js';
import type { CreatePlan } from '../../agent/src/container/init/plan.js';
import { RootfsError, setupRootfs } from '../../agent/src/container/init/rootfs.js';
import { SyscallError } from '../../agent/src/linux/errno.js';
import {
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  MNT_DETACH,
  MS_BIND,
  MS_NODEV,
  MS_NOEXEC,
  MS_NOSUID,
  MS_PRIVATE,
  MS_RDONLY,
  MS_REC,
  MS_REMOUNT,
  MS_SLAVE,
  O_CLOEXEC,
  O_PATH,
  RESOLVE_IN_ROOT,
} from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { addMount, busyboxSpec, type SpecInit } from '../support/oci-spec.js';

const { O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW } = fs.constants;
const ENOENT = 2;
const EEXIST = 17;
const ENOTDIR = 20;
const EINVAL = 22;
const EBADF = 9;

const typeBits = { dir: 0o040000, file: 0o100000, link: 0o120000, node: 0o020000 } as const;
type Kind = keyof typeof typeBits;

const flagNames: [number, string][] = [
  [MS_RDONLY, 'ro'],
  [MS_NOSUID, 'nosuid'],
  [MS_NODEV, 'nodev'],
  [MS_NOEXEC, 'noexec'],
  [MS_REMOUNT, 'remount'],
  [MS_BIND, 'bind'],
  [MS_REC, 'rec'],
  [MS_PRIVATE, 'private'],
  [MS_SLAVE, 'slave'],
  [1 << 21, 'relatime'],
  [1 << 24, 'strictatime'],
];

function flagsText(flags: number): string {
  const names = flagNames.filter(([bit]) => flags & bit).map(([, n]) => n);
  const rest = flagNames.reduce((f, [bit]) => f & ~bit, flags);
  return [...names, ...(rest ? [`0x${rest.toString(16)}`] : [])].join('|') || '0';
}

/**
 * A kernel just big enough for the rootfs setup. Paths are canonical host paths: a bind mount makes
 * its target an alias of its source, and after pivot_root "/" is the new root. `effects` lists what
 * changed anything, in order; lookups are only checked (fds must all be closed at the end).
 */
function fakeKernel(entries: Record<string, Kind>, opts: { writeFails?: number; mountFails?: string } = {}) {
  const tree = new Map<string, { kind: Kind; dev: number; perm: number }>([['/', { kind: 'dir', dev: 1, perm: 0o755 }]]);
  for (const [p, kind] of Object.entries(entries)) tree.set(p, { kind, dev: 1, perm: 0o755 });
  const fds = new Map<number, string>();
  const binds: { target: string; source: string }[] = [];
  const effects: string[] = [];
  let nextFd = 10;
  let nextDev = 2;
  let cwd = '/';
  let newRoot = '';
  const procAt = new Set<string>();

  /** An absolute path as the caller sees it: under the new root once pivot_root made one. */
  const fromRoot = (p: string): string => (newRoot ? path.normalize(`${newRoot}/${p}`).replace(/(.)\/$/, '$1') : p);
  const canon = (p: string): string => {
    for (const b of [...binds].reverse()) {
      if (p === b.target) return b.source;
      if (p.startsWith(`${b.target}/`)) return canon(b.source + p.slice(b.target.length));
    }
    return p;
  };
  const join = (dir: number, name: string, call: string): string => {
    if (name.startsWith('/')) return canon(fromRoot(name));
    const base = dir === AT_FDCWD ? cwd : fds.get(dir);
    if (base === undefined) throw new SyscallError(call, EBADF, `fd ${dir}`);
    return canon(name === '.' ? base : path.join(base, name));
  };
  /** A mount(2) path: /proc/self/fd/N is the file the fd names, anything else a path from "/". */
  const target = (p: string): string => {
    const m = /^\/proc\/self\/fd\/(\d+)$/.exec(p);
    if (m) {
      const named = fds.get(Number(m[1]));
      if (named === undefined) throw new SyscallError('mount', ENOENT, p);
      return named;
    }
    return join(AT_FDCWD, p, 'mount');
  };
  const make = (p: string, kind: Kind, perm: number, call: string) => {
    if (tree.has(p)) throw new SyscallError(call, EEXIST, p);
    const parent = tree.get(path.dirname(p));
    if (!parent) throw new SyscallError(call, ENOENT, p);
    tree.set(p, { kind, dev: parent.dev, perm });
  };
  const open = (p: string, flags: number, mode: number) => {
    if (!tree.has(p)) {
      if (!(flags & O_CREAT)) throw new SyscallError('openat', ENOENT, p);
      make(p, 'file', mode, 'openat');
      effects.push(`create ${p} 0o${mode.toString(8)}`);
    } else if (flags & O_CREAT && flags & O_EXCL) throw new SyscallError('openat', EEXIST, p);
    if (flags & O_DIRECTORY && tree.get(p)!.kind !== 'dir') throw new SyscallError('openat', ENOTDIR, p);
    fds.set(nextFd, p);
    return nextFd++;
  };

  const libc = new RecordingLibc({
    openat: (dir, name, flags, mode) => open(join(dir, name, 'openat'), flags, mode),
    openat2: (dir, name, flags, mode) => open(join(dir, name, 'openat2'), flags, mode),
    close: (fd) => {
      if (!fds.delete(fd)) throw new SyscallError('close', EBADF, `fd ${fd}`);
    },
    fstat: (fd) => {
      const e = tree.get(fds.get(fd) ?? '');
      if (!e) throw new SyscallError('fstat', EBADF, `fd ${fd}`);
      return { dev: e.dev, mode: typeBits[e.kind] | e.perm };
    },
    faccessat: (dir, name) => {
      const p = join(dir, name, 'faccessat');
      // /proc/self/fd exists where a proc is mounted on the current root's /proc.
      if (p.endsWith('/proc/self/fd') && procAt.has(p.slice(0, -'/self/fd'.length))) return;
      if (!tree.has(p)) throw new SyscallError('faccessat', ENOENT, p);
    },
    mkdirat: (dir, name, mode) => {
      const p = join(dir, name, 'mkdirat');
      make(p, 'dir', mode, 'mkdirat');
      effects.push(`mkdir ${p} 0o${mode.toString(8)}`);
    },
    mknodat: (dir, name, mode, major, minor) => {
      const p = join(dir, name, 'mknodat');
      make(p, 'node', mode & 0o7777, 'mknodat');
      effects.push(`mknod ${p} 0o${mode.toString(8)} ${major}:${minor}`);
    },
    fchownat: (dir, name, uid, gid, flags) => {
      const p = join(dir, name, 'fchownat');
      if (!tree.has(p)) throw new SyscallError('fchownat', ENOENT, p);
      effects.push(`chown ${p} ${uid}:${gid}${flags & AT_SYMLINK_NOFOLLOW ? ' nofollow' : ''}`);
    },
    symlinkat: (to, dir, name) => {
      const p = join(dir, name, 'symlinkat');
      make(p, 'link', 0o777, 'symlinkat');
      effects.push(`symlink ${p} -> ${to}`);
    },
    unlinkat: (dir, name) => {
      const p = join(dir, name, 'unlinkat');
      if (!tree.delete(p)) throw new SyscallError('unlinkat', ENOENT, p);
      effects.push(`unlink ${p}`);
    },
    mount: (source, to, fstype, flags, data) => {
      const t = target(to);
      if (!tree.has(t)) throw new SyscallError('mount', ENOENT, t);
      const src = source === null ? '' : source.startsWith('/') ? target(source) : source;
      if (fstype === opts.mountFails) throw new SyscallError('mount', 16, to);
      effects.push(`mount ${src || '-'} ${t} ${fstype ?? '-'} ${flagsText(flags)}${data ? ` ${data}` : ''}`);
      if (flags & MS_REMOUNT || flags & (MS_PRIVATE | MS_SLAVE)) return;
      if (flags & MS_BIND) {
        if (src !== t && tree.get(src)?.kind === 'dir') binds.push({ target: t, source: src });
        return;
      }
      tree.get(t)!.dev = nextDev++;
      if (fstype === 'proc') procAt.add(t);
    },
    write: (fd, data) => {
      effects.push(`write ${fds.get(fd)} "${Buffer.from(data).toString()}"`);
      if (opts.writeFails) throw new SyscallError('write', opts.writeFails, `fd=${fd}`);
      return data.length;
    },
    chdir: (p) => {
      cwd = join(AT_FDCWD, p, 'chdir');
      effects.push(`chdir ${cwd}`);
    },
    pivotRoot: (n, o) => {
      effects.push(`pivot_root ${n} ${o}`);
      newRoot = cwd;
    },
    umount2: (p, flags) => void effects.push(`umount2 ${p} ${flags === MNT_DETACH ? 'detach' : flags}`),
  });
  return { libc, tree, fds, effects };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-rootfs-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const rootfs = `${dir}/rootfs`;
const hostData = `${dir}/host-data`;
fs.mkdirSync(rootfs);
fs.mkdirSync(hostData);
fs.writeFileSync(`${dir}/hosts`, '');
const mnt = '/run/b/rootfs';

function planOf(spec: SpecInit, cgroupV1Hierarchies: string[] = []): CreatePlan {
  return createPlan({ spec: create(SpecSchema, spec), rootfs, rootfsMount: mnt, shared: {}, cgroupV1Hierarchies }).plan;
}

/** A busybox-like rootfs: the directories an image has, and /proc/sys after proc is mounted. */
const image = (extra: Record<string, Kind> = {}): Record<string, Kind> => ({
  '/run': 'dir',
  [rootfs]: 'dir',
  [`${rootfs}/proc`]: 'dir',
  [`${rootfs}/proc/sys`]: 'dir',
  [`${rootfs}/proc/sys/kernel`]: 'dir',
  [`${rootfs}/dev`]: 'dir',
  [`${rootfs}/sys`]: 'dir',
  [`${rootfs}/etc`]: 'dir',
  ...extra,
});

/** What the default devices of a tmpfs /dev come to. */
const defaultDevices = [
  ['null', 1, 3],
  ['zero', 1, 5],
  ['full', 1, 7],
  ['random', 1, 8],
  ['urandom', 1, 9],
  ['tty', 5, 0],
].flatMap(([n, ma, mi]) => [`mknod ${rootfs}/dev/${n} 0o20666 ${ma}:${mi}`, `chown ${rootfs}/dev/${n} 0:0 nofollow`]);

t.test('the default spec: root bound and pivoted, the usual mounts in order, devices, masked and readonly paths', async (t) => {
  const plan = planOf(busyboxSpec(rootfs, ['sh']));
  // What the mounts above leave for masking: /proc/kcore and /proc/keys files, /sys/firmware a directory.
  const k = fakeKernel(image({ [`${rootfs}/proc/kcore`]: 'file', [`${rootfs}/proc/sys`]: 'dir', [`${rootfs}/sys/firmware`]: 'dir' }));
  setupRootfs(k.libc, plan);
  t.same(k.effects, [
    'mount - / - rec|private',
    'mkdir /run/b 0o777',
    `mkdir ${mnt} 0o777`,
    `mount ${rootfs} ${mnt} - bind|rec`,
    `mount proc ${rootfs}/proc proc nosuid|nodev|noexec`,
    `mount tmpfs ${rootfs}/dev tmpfs nosuid|strictatime mode=755,size=65536k`,
    `mkdir ${rootfs}/dev/pts 0o755`,
    `mount devpts ${rootfs}/dev/pts devpts nosuid|noexec newinstance,ptmxmode=0666,mode=0620`,
    `symlink ${rootfs}/dev/ptmx -> pts/ptmx`,
    `mkdir ${rootfs}/dev/shm 0o755`,
    `mount shm ${rootfs}/dev/shm tmpfs nosuid|nodev|noexec mode=1777,size=65536k`,
    `mount sysfs ${rootfs}/sys sysfs ro|nosuid|nodev|noexec`,
    `mkdir ${rootfs}/sys/fs 0o755`,
    `mkdir ${rootfs}/sys/fs/cgroup 0o755`,
    `mount cgroup2 ${rootfs}/sys/fs/cgroup cgroup2 ro|nosuid|nodev|noexec|relatime`,
    ...defaultDevices,
    `chdir ${rootfs}`,
    'pivot_root . .',
    'umount2 . detach',
    `chdir ${rootfs}`,
    `mount ${rootfs}/dev/null ${rootfs}/proc/kcore - bind`,
    `mount tmpfs ${rootfs}/sys/firmware tmpfs ro`,
    `mount ${rootfs}/proc/sys ${rootfs}/proc/sys - bind|rec`,
    `mount - ${rootfs}/proc/sys - ro|remount|bind|rec`,
  ]);
  t.notOk(
    k.libc.calls.some((c) => c.name === 'mount' && String(c.args[1]).startsWith(rootfs)),
    'no mount names a path under the rootfs: each names the fd it opened',
  );
  t.same([...k.fds.keys()], [], 'every fd the setup opened is closed');
  t.same(
    k.libc.calls.filter((c) => c.name === 'faccessat').map((c) => c.args),
    [[AT_FDCWD, '/proc/self/fd', 0, 0]],
    'after pivot_root, /proc/self/fd is looked for once',
  );
});

t.test('binds, readonly root, a sysctl and a device; what is made in the rootfs itself is reported on failure', async (t) => {
  const spec = busyboxSpec(rootfs, ['sh']);
  spec.Mounts = [{ destination: '/proc', type: 'proc', source: 'proc', options: [] }];
  spec.Linux!.MaskedPaths = [];
  spec.Linux!.ReadonlyPaths = [];
  spec.Root!.Readonly = true;
  spec.Linux!.RootfsPropagation = 'rslave';
  addMount(spec, { destination: '/data', type: 'bind', source: hostData, options: ['rbind', 'ro', 'nosuid', 'rprivate'] });
  addMount(spec, { destination: '/etc/hosts', type: 'bind', source: `${dir}/hosts`, options: ['bind'] });
  spec.Linux!.Sysctl = { 'kernel.msgmax': '4242' };
  (spec.Linux!.Devices as object[]) = [{ Path: '/dev/mydev', Type: 'c', Major: 1n, Minor: 3n, FileMode: 0o640, UID: 7, GID: 8 }];
  const plan = planOf(spec);
  const k = fakeKernel(image({ [mnt]: 'dir', '/run/b': 'dir', [hostData]: 'dir', [`${dir}/hosts`]: 'file', [`${rootfs}/proc/sys/kernel/msgmax`]: 'file' }));
  setupRootfs(k.libc, plan);
  t.same(k.effects, [
    'mount - / - rec|slave',
    `mount ${rootfs} ${mnt} - bind|rec`,
    `mount proc ${rootfs}/proc proc 0`,
    `mkdir ${rootfs}/data 0o755`,
    `mount ${hostData} ${rootfs}/data - bind|rec`,
    `mount - ${hostData} - ro|nosuid|remount|bind`,
    `mount - ${hostData} - rec|private`,
    `create ${rootfs}/etc/hosts 0o644`,
    `mount ${dir}/hosts ${rootfs}/etc/hosts - bind`,
    `mknod ${rootfs}/dev/mydev 0o20640 1:3`,
    `chown ${rootfs}/dev/mydev 7:8 nofollow`,
    `chdir ${rootfs}`,
    'pivot_root . .',
    'umount2 . detach',
    `chdir ${rootfs}`,
    `write ${rootfs}/proc/sys/kernel/msgmax "4242"`,
    `mount - ${rootfs} - ro|remount|bind`,
  ]);
  const sysctlOpen = k.libc.calls.find((c) => c.name === 'openat' && c.args[1] === 'msgmax');
  t.equal(sysctlOpen?.args[2], fs.constants.O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 'the sysctl file is opened write-only, never through a link');
  t.same([...k.fds.keys()], []);

  // The same plan where the kernel refuses the value: the error names the sysctl; the mount point,
  // file and device made in the rootfs itself (not /proc's, on its own filesystem) go back to the agent.
  const bad = fakeKernel(image({ [mnt]: 'dir', '/run/b': 'dir', [hostData]: 'dir', [`${dir}/hosts`]: 'file', [`${rootfs}/proc/sys/kernel/msgmax`]: 'file' }), {
    writeFails: EINVAL,
  });
  const err = t.throws(() => setupRootfs(bad.libc, plan)) as RootfsError;
  t.type(err, RootfsError);
  t.match(err.message, /^write\(\/proc\/sys\/kernel\/msgmax \(sysctl kernel\.msgmax\) = "4242"\): EINVAL/);
  t.same(err.created, [
    { path: 'data', kind: 'dir' },
    { path: 'etc/hosts', kind: 'file' },
    { path: 'dev/mydev', kind: 'file' },
  ]);
  t.notOk(bad.effects.includes(`mount - ${rootfs} - ro|remount|bind`), 'the root is not made read-only after a failure');
  t.same([...bad.fds.keys()], [], 'no fd left open on the way out');
});

t.test('a bind source inside the rootfs is opened in it (RESOLVE_IN_ROOT), not by its host path', async (t) => {
  const spec = busyboxSpec(rootfs, ['sh']);
  spec.Mounts = [];
  spec.Linux!.MaskedPaths = [];
  spec.Linux!.ReadonlyPaths = [];
  fs.mkdirSync(`${rootfs}/srv`, { recursive: true });
  addMount(spec, { destination: '/mnt', type: 'bind', source: `${rootfs}/srv`, options: ['bind'] });
  const k = fakeKernel(image({ [`${rootfs}/srv`]: 'dir', [`${rootfs}/mnt`]: 'dir' }));
  setupRootfs(k.libc, planOf(spec));
  const o2 = k.libc.calls.filter((c) => c.name === 'openat2');
  t.same(
    o2.map((c) => [c.args[1], c.args[2], c.args[4]]),
    [['srv', O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | 0x02]],
  );
  t.ok(k.effects.includes(`mount ${rootfs}/srv ${rootfs}/mnt - bind`), k.effects.join('\n'));
});

t.test('cgroup v1: a tmpfs, one mount per hierarchy, aliases as symlinks, then read-only', async (t) => {
  const spec = busyboxSpec(rootfs, ['sh']);
  spec.Mounts = [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'ro'] }];
  spec.Linux!.MaskedPaths = [];
  spec.Linux!.ReadonlyPaths = [];
  const k = fakeKernel(image({ [`${rootfs}/sys/fs`]: 'dir', [`${rootfs}/sys/fs/cgroup`]: 'dir' }));
  setupRootfs(k.libc, planOf(spec, ['cpu,cpuacct', 'memory']));
  const cg = `${rootfs}/sys/fs/cgroup`;
  t.same(k.effects.slice(k.effects.indexOf(`mount ${rootfs} ${mnt} - bind|rec`) + 1, k.effects.indexOf(`chdir ${rootfs}`)), [
    `mount tmpfs ${cg} tmpfs nosuid|nodev|noexec mode=755`,
    `mkdir ${cg}/cpu,cpuacct 0o755`,
    `mount cgroup ${cg}/cpu,cpuacct cgroup ro|nosuid|nodev|noexec cpu,cpuacct`,
    `symlink ${cg}/cpu -> cpu,cpuacct`,
    `symlink ${cg}/cpuacct -> cpu,cpuacct`,
    `mkdir ${cg}/memory 0o755`,
    `mount cgroup ${cg}/memory cgroup ro|nosuid|nodev|noexec memory`,
    `mount - ${cg} - ro|nosuid|nodev|noexec|remount mode=755`,
  ]);
});

t.test('without a /proc in the container, masked and readonly paths are mounted by name', async (t) => {
  const spec = busyboxSpec(rootfs, ['sh']);
  spec.Mounts = [];
  spec.Linux!.MaskedPaths = ['/etc/secret', '/missing'];
  spec.Linux!.ReadonlyPaths = ['/etc'];
  const k = fakeKernel(image({ [`${rootfs}/etc/secret`]: 'file' }));
  setupRootfs(k.libc, planOf(spec));
  t.same(k.effects.slice(k.effects.indexOf('umount2 . detach') + 2), [
    `mount ${rootfs}/dev/null ${rootfs}/etc/secret - bind`,
    `mount ${rootfs}/etc ${rootfs}/etc - bind|rec`,
    `mount - ${rootfs}/etc - ro|remount|bind|rec`,
  ]);
  const targets = k.libc.calls.filter((c) => c.name === 'mount').map((c) => String(c.args[1]));
  t.same(targets.slice(-3), ['/etc/secret', '/etc', '/etc'], 'no /proc/self/fd to name them by');
});

t.test('a failed mount names its destination, not the fd it was given', async (t) => {
  const plan = planOf(busyboxSpec(rootfs, ['sh']));
  const k = fakeKernel(image(), { mountFails: 'sysfs' });
  const err = t.throws(() => setupRootfs(k.libc, plan)) as RootfsError;
  t.type(err, RootfsError);
  t.match(err.message, new RegExp(`^mount\\(/proc/self/fd/\\d+ \\(${rootfs}/sys\\)\\): EBUSY`));
  t.same(err.created, [], 'the mount points made so far are on the /dev tmpfs, which goes with the helper');
  t.notOk(k.effects.includes('pivot_root . .'));
  t.same([...k.fds.keys()], []);
});
