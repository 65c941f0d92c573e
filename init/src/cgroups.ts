// cgroup hierarchy for the guest: cgroup2 at /sys/fs/cgroup unless the host asked for v1
// (agent.unified_cgroup_hierarchy=0) or the kernel has no cgroup2.
import fs from 'node:fs';
import path from 'node:path';
import { splitWords } from '../../agent/src/config/words.js';
import { MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REMOUNT, type Libc } from '../../agent/src/linux/libc.js';

const cgroupFlags = MS_NOSUID | MS_NODEV | MS_NOEXEC;

export interface CgroupSetup {
  version: 1 | 2;
  /** v2: controllers the root offers (cgroup.controllers); v1: hierarchies mounted. */
  controllers: string[];
}

/** Subsystems the kernel lists as enabled in /proc/cgroups (column 4 == 1). */
export function enabledV1Subsystems(procCgroups: string): string[] {
  return procCgroups
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map(splitWords)
    .filter((f) => f.length >= 4 && f[3] === '1')
    .map((f) => f[0]);
}

export function kernelHasCgroup2(procFilesystems: string): boolean {
  return splitWords(procFilesystems).includes('cgroup2');
}

export function mountCgroups(libc: Pick<Libc, 'mount'>, wantV2: boolean | undefined, root = '/sys/fs/cgroup', proc = '/proc'): CgroupSetup {
  const hasV2 = kernelHasCgroup2(fs.readFileSync(path.join(proc, 'filesystems'), 'utf8'));
  if (wantV2 !== false && hasV2) {
    libc.mount('cgroup2', root, 'cgroup2', cgroupFlags, 'nsdelegate');
    const available = splitWords(fs.readFileSync(path.join(root, 'cgroup.controllers'), 'utf8'));
    // The root's subtree_control is left to the v2 driver, which enables every controller in each
    // ancestor of the first group it creates (cgroups/v2.ts delegate()): enabling them here cost
    // ~40 ms of boot under TCG for groups that do not exist yet.
    return { version: 2, controllers: available };
  }
  libc.mount('tmpfs', root, 'tmpfs', cgroupFlags, 'mode=755');
  const mounted: string[] = [];
  for (const sub of enabledV1Subsystems(fs.readFileSync(path.join(proc, 'cgroups'), 'utf8'))) {
    const dir = path.join(root, sub);
    fs.mkdirSync(dir, { recursive: true });
    libc.mount('cgroup', dir, 'cgroup', cgroupFlags, sub);
    mounted.push(sub);
  }
  // Hierarchies are fixed now: no one should create new top-level folders in the tmpfs.
  libc.mount('tmpfs', root, 'tmpfs', cgroupFlags | MS_REMOUNT | MS_RDONLY, 'mode=755');
  try {
    fs.writeFileSync(path.join(root, 'memory', 'memory.use_hierarchy'), '1');
  } catch {
    // Newer kernels always use the hierarchy and reject or lack this file.
  }
  return { version: 1, controllers: mounted };
}
