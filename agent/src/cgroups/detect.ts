// Picks the cgroup driver for this machine and builds it.
//
// Which version: the agent uses what the kernel has mounted at /sys/fs/cgroup. In init mode the boot
// mounts decide that from the command line (kata 1.x `agent.unified_cgroup_hierarchy`, 3.x
// `systemd.unified_cgroup_hierarchy=1` / `cgroup_no_v1=all`): cgroup2 at /sys/fs/cgroup gives the v2
// driver. Otherwise, if v1 hierarchies are mounted, the v1 driver is used even when a cgroup2 mount
// also exists (the "hybrid" layout, where cgroup2 sits at /sys/fs/cgroup/unified with few or no
// controllers). `forceVersion` overrides the choice (tests, and configs that know better).
//
// Where: each container group is created below the agent's own group (from /proc/self/cgroup), so
// an agent running under systemd or a test runner stays inside the subtree delegated to it.
//
// What is enforced: v1 memory/cpu/cpuset/pids/blkio/hugetlb/devices/net_cls/net_prio files; v2
// memory/cpu/cpuset/pids/io/hugetlb files and device rules (an eBPF filter, device-filter.ts). Not
// enforced, with a warning log: v2 rt-cpu/kernel-memory/swappiness/oom-killer/network settings (no
// v2 file), v1 kernel memory (deprecated by the kernel), blkio leaf weights, and a swap limit on a
// kernel without swap accounting. kata's protos have no field presence, so 0 means "unset" for every
// number and -1 "unlimited".
//
// Also here: freezer (Pause/Resume), stats (StatsContainer), OOM watch (v1 eventfd on
// memory.oom_control, v2 inotify on memory.events), and signal-all.ts (freeze + signal each pid +
// thaw; v2 SIGKILL through cgroup.kill). The v2 driver was also checked in a QEMU guest on the
// Debian kernel with every controller (test/cgroups/guest-v2.test.ts).
import path from 'node:path';
import { libc as realLibc } from '../linux/index.js';
import type { Libc } from '../linux/libc.js';
import { failedPrecondition } from '../errors.js';
import type { CgroupManager } from './cgroup.js';
import { CgroupFiles, realCgroupFs, type CgroupFs } from './files.js';
import { KNOWN_V1_CONTROLLERS, parseCgroupMounts, parseProcCgroup, pathBelowMount, v1PathOf, type SelfCgroups } from './self-path.js';
import { defaultCgroupLog, type CgroupLog, type DriverDeps } from './deps.js';
import { V1Manager, type V1Hierarchy } from './v1.js';
import { V2Manager } from './v2.js';

export interface CgroupManagerOptions {
  /** v1: the directory holding one directory per hierarchy (named by its controllers); v2: the cgroup2 mount. Default: from /proc/self/mountinfo. */
  root?: string;
  forceVersion?: 'v1' | 'v2';
  /** Content of /proc/self/cgroup to place groups by (tests); default: the real file. */
  procSelfCgroup?: string;
  /** Content of /proc/self/mountinfo (tests); default: the real file. */
  mountinfo?: string;
  log?: CgroupLog;
  libc?: Libc;
  /** fs operations (tests emulate cgroupfs rmdir on a plain directory). */
  fs?: Partial<CgroupFs>;
  /** Default 10 s. */
  freezeTimeoutMs?: number;
  /** Default 2 s. */
  destroyGraceMs?: number;
}

/**
 * The forceVersion for an AgentConfig's unifiedCgroupHierarchy: an explicit "true" insists on v2 (and
 * fails clearly if no cgroup2 is mounted); "false" or unset follow what is mounted, since the boot
 * mounts already applied the same setting in init mode.
 */
export function cgroupVersionFromConfig(unifiedCgroupHierarchy: boolean | undefined): 'v2' | undefined {
  return unifiedCgroupHierarchy === true ? 'v2' : undefined;
}

export function createCgroupManager(opts: CgroupManagerOptions = {}): CgroupManager {
  const files = new CgroupFiles({ ...realCgroupFs, ...opts.fs });
  const self = parseProcCgroup(opts.procSelfCgroup ?? files.fs.readFile('/proc/self/cgroup'));
  const deps: DriverDeps = {
    files,
    libc: () => opts.libc ?? realLibc(),
    log: opts.log ?? defaultCgroupLog(),
    freezeTimeoutMs: opts.freezeTimeoutMs ?? 10_000,
    destroyGraceMs: opts.destroyGraceMs ?? 2_000,
  };
  return opts.root !== undefined
    ? fromRoot(opts.root, self, deps, opts.forceVersion)
    : fromMounts(opts.mountinfo ?? files.fs.readFile('/proc/self/mountinfo'), self, deps, opts.forceVersion);
}

/** The named v1 hierarchies of /proc/self/cgroup ("name=systemd" and the v2 line left out). */
function ownHierarchies(self: SelfCgroups): string[] {
  return [...self.v1.keys()].filter((c) => c !== '' && !c.startsWith('name='));
}

function fromMounts(mountinfo: string, self: SelfCgroups, deps: DriverDeps, force?: 'v1' | 'v2'): CgroupManager {
  const mounts = parseCgroupMounts(mountinfo);
  const v1 = mounts.filter((m) => m.fstype === 'cgroup');
  const v2 = mounts.find((m) => m.fstype === 'cgroup2');
  const version = force ?? (v1.length > 0 ? 'v1' : v2 ? 'v2' : undefined);
  if (version === 'v2') {
    if (!v2) throw failedPrecondition('cgroup v2 requested but no cgroup2 filesystem is mounted');
    return new V2Manager(v2.mountPoint, pathBelowMount(self.v2 ?? '/', v2.root), deps);
  }
  if (version === 'v1' && v1.length > 0) {
    return new V1Manager(
      v1.map((m) => ({ mountPoint: m.mountPoint, controllers: m.controllers, ownPath: pathBelowMount(v1PathOf(self, m.controllers[0]) ?? '/', m.root) })),
      deps,
      ownHierarchies(self),
    );
  }
  throw failedPrecondition('no cgroup filesystem is mounted (neither v1 hierarchies nor cgroup2)');
}

function fromRoot(root: string, self: SelfCgroups, deps: DriverDeps, force?: 'v1' | 'v2'): CgroupManager {
  const isV2 = force ? force === 'v2' : deps.files.exists(path.join(root, 'cgroup.controllers'));
  if (isV2) return new V2Manager(root, self.v2 ?? '/', deps);
  const hierarchies: V1Hierarchy[] = [];
  for (const name of deps.files.fs.readdir(root).sort()) {
    const dir = path.join(root, name);
    // /sys/fs/cgroup/cpu is often a symlink to the combined "cpu,cpuacct" hierarchy: count it once.
    if (deps.files.fs.isSymlink(dir)) continue;
    const controllers = name.split(',').filter((c) => KNOWN_V1_CONTROLLERS.includes(c));
    if (controllers.length === 0) continue;
    hierarchies.push({ mountPoint: dir, controllers, ownPath: v1PathOf(self, controllers[0]) ?? '/' });
  }
  if (hierarchies.length === 0) throw failedPrecondition(`no cgroup v1 hierarchy under ${root}`);
  return new V1Manager(hierarchies, deps, ownHierarchies(self));
}
