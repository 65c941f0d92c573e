// Turns the OCI spec of a CreateContainer/ExecProcess request into the helper's plan, doing every
// check that deserves a clear status here, before any process exists.
import type { PidNamespaceChoice } from '../namespace/pid-namespace.js';
import fs from 'node:fs';
import path from 'node:path';
import type { LinuxDevice, Mount, Process, Spec } from '../../../protos/gen/oci_pb.js';
import { CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUTS, MS_BIND, MS_REC, MS_REMOUNT } from '../linux/libc.js';
import { parseMountOptions, rootPropagation } from '../mount/options.js';
import { PathEscapeError, secureJoin } from '../mount/secure-join.js';
import { invalidArgument } from '../errors.js';
import { capMask, capNumber } from './capabilities.js';
import type { CreatePlan, DeviceStep, MountStep, NamespaceJoin, ProcessPlan } from './init/plan.js';
import { rlimitResource } from './rlimits.js';

export interface SharedNamespaces {
  /** Pinned sandbox namespaces every container joins, when a sandbox exists. */
  ipc?: string;
  uts?: string;
}

const nsFlags: Record<string, number> = {
  network: CLONE_NEWNET,
  mount: CLONE_NEWNS,
  ipc: CLONE_NEWIPC,
  uts: CLONE_NEWUTS,
  cgroup: CLONE_NEWCGROUP,
};

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

const defaultDevices: [string, number, number][] = [
  ['/dev/null', 1, 3],
  ['/dev/zero', 1, 5],
  ['/dev/full', 1, 7],
  ['/dev/random', 1, 8],
  ['/dev/urandom', 1, 9],
  ['/dev/tty', 5, 0],
];

export function processPlan(p: Process | undefined, what: string): ProcessPlan {
  if (!p) throw invalidArgument(`${what}: the spec has no process`);
  if (p.Args.length === 0 || p.Args[0] === '') throw invalidArgument(`${what}: process args are empty`);
  const cwd = p.Cwd || '/';
  if (!cwd.startsWith('/')) throw invalidArgument(`${what}: cwd "${cwd}" is not absolute`);
  const c = p.Capabilities;
  return {
    args: p.Args,
    env: p.Env,
    cwd,
    uid: p.User?.UID ?? 0,
    gid: p.User?.GID ?? 0,
    additionalGids: p.User?.AdditionalGids ?? [],
    terminal: p.Terminal,
    caps: c && {
      bounding: capMask(c.Bounding).toString(),
      effective: capMask(c.Effective).toString(),
      permitted: capMask(c.Permitted).toString(),
      inheritable: capMask(c.Inheritable).toString(),
      ambient: c.Ambient.map(capNumber),
    },
    rlimits: p.Rlimits.map((r) => ({ resource: rlimitResource(r.Type), soft: r.Soft.toString(), hard: r.Hard.toString() })),
    noNewPrivileges: p.NoNewPrivileges,
    oomScoreAdj: p.OOMScoreAdj !== 0n ? Number(p.OOMScoreAdj) : undefined,
  };
}

/**
 * Root.path absolute, or relative to the bundle; it must be an existing directory. A relative path
 * stays inside the bundle, also through symlinks: the helper creates mount points under the root,
 * and "../../x" would have it make them in some host directory.
 */
export function resolveRootfs(spec: Spec, bundle: string): string {
  const p = spec.Root?.Path ?? '';
  if (p === '') throw invalidArgument('spec has no Root.Path');
  const abs = path.resolve(bundle, p);
  const relative = !path.isAbsolute(p);
  if (relative && !strictlyInside(bundle, abs)) throw invalidArgument(`Root.Path "${p}" escapes the bundle ${bundle}`);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw invalidArgument(`rootfs ${abs} does not exist`);
  }
  if (!st.isDirectory()) throw invalidArgument(`rootfs ${abs} is not a directory`);
  if (relative) {
    const real = fs.realpathSync(abs);
    if (!strictlyInside(fs.realpathSync(bundle), real)) throw invalidArgument(`Root.Path "${p}" escapes the bundle ${bundle} through a symlink (to ${real})`);
  }
  return abs;
}

function strictlyInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && rel !== '..' && !rel.startsWith('../') && !path.isAbsolute(rel);
}

function inRoot(rootfs: string, dest: string, what: string): string {
  if (!dest.startsWith('/')) throw invalidArgument(`${what} "${dest}" is not an absolute path`);
  try {
    return '/' + path.relative(rootfs, secureJoin(rootfs, dest));
  } catch (err) {
    if (err instanceof PathEscapeError) throw invalidArgument(`${what}: ${err.message}`);
    throw err;
  }
}

function mountStep(rootfs: string, m: Mount): MountStep {
  const destination = inRoot(rootfs, m.destination, 'mount destination');
  const opts = parseMountOptions(m.options);
  const isBind = m.type === 'bind' || (opts.flags & MS_BIND) !== 0;
  let isFile = false;
  if (isBind) {
    let st: fs.Stats;
    try {
      st = fs.statSync(m.source);
    } catch {
      throw invalidArgument(`bind mount source ${m.source} (for ${m.destination}) does not exist`);
    }
    isFile = !st.isDirectory();
  }
  const bindFlags = MS_BIND | (opts.flags & MS_REC);
  return {
    source: m.source,
    destination,
    type: isBind ? 'bind' : m.type,
    flags: isBind ? bindFlags : opts.flags & ~MS_REMOUNT,
    remountFlags: isBind ? opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT) : 0,
    propagation: opts.propagation,
    data: opts.data,
    isFile,
  };
}

function deviceStep(rootfs: string, d: LinuxDevice): DeviceStep {
  const kinds: Record<string, number> = { c: S_IFCHR, u: S_IFCHR, b: S_IFBLK, p: S_IFIFO };
  const kind = kinds[d.Type];
  if (kind === undefined) throw invalidArgument(`device ${d.Path}: unknown type "${d.Type}"`);
  return {
    path: inRoot(rootfs, d.Path, 'device path'),
    mode: kind | (d.FileMode ? d.FileMode & 0o7777 : 0o666),
    major: Number(d.Major),
    minor: Number(d.Minor),
    uid: d.UID,
    gid: d.GID,
  };
}

export interface CreatePlanInput {
  spec: Spec;
  rootfs: string;
  rootfsMount: string;
  shared: SharedNamespaces;
  cgroupV1Hierarchies: string[];
}

export function createPlan(input: CreatePlanInput): { plan: CreatePlan; pidns: PidNamespaceChoice | 'unset' } {
  const { spec, rootfs } = input;
  const linux = spec.Linux;
  let unshare = CLONE_NEWNS;
  const join: NamespaceJoin[] = [];
  let pidns: PidNamespaceChoice | 'unset' = 'unset';
  for (const ns of linux?.Namespaces ?? []) {
    if (ns.Type === 'pid') {
      pidns = ns.Path ? { kind: 'join', path: ns.Path } : { kind: 'new' };
      continue;
    }
    if (ns.Type === 'user') throw invalidArgument('user namespaces are not supported');
    const flag = nsFlags[ns.Type];
    if (flag === undefined) throw invalidArgument(`unknown namespace type "${ns.Type}"`);
    if (flag === CLONE_NEWNS) continue;
    const sharedPath = flag === CLONE_NEWIPC ? input.shared.ipc : flag === CLONE_NEWUTS ? input.shared.uts : undefined;
    const nsPath = sharedPath ?? ns.Path;
    if (nsPath) {
      if (!fs.existsSync(nsPath)) throw invalidArgument(`${ns.Type} namespace path ${nsPath} does not exist`);
      join.push({ type: flag, path: nsPath });
    } else unshare |= flag;
  }
  const mounts = spec.Mounts.map((m) => mountStep(rootfs, m));
  const devices = (linux?.Devices ?? []).map((d) => deviceStep(rootfs, d));
  if (mounts.some((m) => m.destination === '/dev' && m.type === 'tmpfs')) {
    for (const [p, major, minor] of defaultDevices) {
      if (!devices.some((d) => d.path === p)) devices.push({ path: p, mode: S_IFCHR | 0o666, major, minor, uid: 0, gid: 0 });
    }
  }
  let propagation: number;
  try {
    propagation = rootPropagation(linux?.RootfsPropagation ?? '');
  } catch (err) {
    throw invalidArgument((err as Error).message);
  }
  const sysctl = { ...(linux?.Sysctl ?? {}) };
  for (const key of Object.keys(sysctl)) {
    if (!/^[a-z0-9_.-]+$/i.test(key) || key.includes('..')) throw invalidArgument(`invalid sysctl name "${key}"`);
  }
  const plan: CreatePlan = {
    kind: 'create',
    rootfs,
    rootfsMount: input.rootfsMount,
    readonlyRoot: spec.Root?.Readonly ?? false,
    rootPropagation: propagation,
    unshare,
    join,
    hostname: unshare & CLONE_NEWUTS && spec.Hostname ? spec.Hostname : undefined,
    mounts,
    devices,
    maskedPaths: (linux?.MaskedPaths ?? []).map((p) => inRoot(rootfs, p, 'masked path')),
    readonlyPaths: (linux?.ReadonlyPaths ?? []).map((p) => inRoot(rootfs, p, 'readonly path')),
    sysctl,
    cgroupV1Hierarchies: input.cgroupV1Hierarchies,
    process: processPlan(spec.Process, 'CreateContainer'),
  };
  return { plan, pidns };
}
