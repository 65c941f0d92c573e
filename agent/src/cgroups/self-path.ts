// Where the agent itself sits: containers' groups are created below the agent's own cgroup, so an
// agent started by systemd (or a test runner in a slice) keeps its groups inside its delegation.
import path from 'node:path';
import { invalidArgument } from '../errors.js';

export interface SelfCgroups {
  /** v1: hierarchy key (its controllers joined by ",", as /proc/self/cgroup names them) → path. */
  v1: Map<string, string>;
  /** v2: the path from the "0::" line, if the process is in a cgroup2 hierarchy. */
  v2?: string;
}

/** Parses /proc/<pid>/cgroup: "hierarchy-id:controllers:path" per line. */
export function parseProcCgroup(text: string): SelfCgroups {
  const out: SelfCgroups = { v1: new Map() };
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') out.v2 = m[3];
    else out.v1.set(m[2], m[3]);
  }
  return out;
}

/** The own path of the v1 hierarchy that carries `controller` (hierarchies may combine several). */
export function v1PathOf(self: SelfCgroups, controller: string): string | undefined {
  for (const [key, p] of self.v1) if (key.split(',').includes(controller)) return p;
  return undefined;
}

export interface CgroupMount {
  mountPoint: string;
  /** The group the mount shows as its root (not "/" when a bind mount or cgroup namespace cuts it). */
  root: string;
  fstype: 'cgroup' | 'cgroup2';
  /** v1: the controllers of the hierarchy (named hierarchies like name=systemd excluded). */
  controllers: string[];
}

const decodeMountPath = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** cgroup and cgroup2 mounts from /proc/self/mountinfo. */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const controllers = fstype === 'cgroup' ? superOpts.split(',').filter((o) => KNOWN_V1_CONTROLLERS.includes(o)) : [];
    if (fstype === 'cgroup' && controllers.length === 0) continue;
    out.push({ mountPoint: decodeMountPath(left[4]), root: decodeMountPath(left[3]), fstype, controllers });
  }
  return out;
}

/** The v1 controllers this driver knows how to use. */
export const KNOWN_V1_CONTROLLERS = [
  'cpu',
  'cpuacct',
  'cpuset',
  'memory',
  'devices',
  'freezer',
  'blkio',
  'pids',
  'hugetlb',
  'net_cls',
  'net_prio',
  'perf_event',
  'rdma',
];

/**
 * A container group's path relative to the agent's group: plain segments only, so a crafted
 * container id can never address a group outside the agent's subtree.
 */
export function checkRelPath(relPath: string): string {
  const segs = relPath.split('/');
  if (relPath === '' || path.isAbsolute(relPath) || segs.some((s) => s === '' || s === '.' || s === '..' || s.includes('\0'))) {
    throw invalidArgument(`cgroup path "${relPath}" must be relative, without empty, "." or ".." segments`);
  }
  return relPath;
}

/** A /proc/self/cgroup path as a path below a mount whose root is `mountRoot`. */
export function pathBelowMount(ownPath: string, mountRoot: string): string {
  if (mountRoot === '/' || mountRoot === '') return ownPath;
  const rel = path.posix.relative(mountRoot, ownPath);
  return rel.startsWith('..') ? ownPath : '/' + rel;
}

/**
 * The container's group from the spec's `Linux.CgroupsPath`, as a path relative to the agent's own
 * group (kata sends `/default/<cid>` or `/kubepods/<qos>/pod<uid>/<cid>`, meant from the cgroup root;
 * in a guest the agent's own group is that root, and elsewhere, e.g. our tests, this keeps containers
 * inside the agent's delegation). The systemd form `slice:prefix:name` becomes `slice/prefix-name.scope`,
 * the directory systemd would make for it: in init mode there is no systemd to ask. An empty path gives
 * `kata-<id>`, as before kata hosts sent one.
 */
export function containerCgroupPath(cgroupsPath: string, containerId: string): string {
  if (cgroupsPath === '') return `kata-${containerId}`;
  const parts = cgroupsPath.split(':');
  let rel: string;
  if (parts.length === 3 && !cgroupsPath.includes('/')) {
    const [slice, prefix, name] = parts;
    if (!slice || !name) throw invalidArgument(`container ${containerId}: Linux.CgroupsPath "${cgroupsPath}": the systemd form needs a slice and a name`);
    rel = `${slice}/${prefix ? `${prefix}-` : ''}${name}.scope`;
  } else {
    rel = cgroupsPath.replace(/^\/+/, '');
  }
  try {
    return checkRelPath(rel);
  } catch (err) {
    throw invalidArgument(`container ${containerId}: Linux.CgroupsPath "${cgroupsPath}": ${(err as Error).message}`);
  }
}
