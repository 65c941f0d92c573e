// One interface over cgroup v1 (this CI machine's layout) and cgroup v2 (the guest). Container code
// talks only to this; cgroups/v1.ts and cgroups/v2.ts implement it, cgroups/detect.ts picks one.
import type { LinuxResources } from '../../../protos/gen/oci_pb.js';
import type { CgroupStats } from '../../../protos/gen/agent_pb.js';

export interface CgroupManager {
  /** "v1" or "v2". */
  readonly version: 'v1' | 'v2';
  /**
   * The agent's own v1 hierarchies as mount options ("memory", "cpu,cpuacct"...), from
   * /proc/self/cgroup: what a container's /sys/fs/cgroup mounts. [] under v2.
   */
  readonly v1Hierarchies: readonly string[];
  /** Creates the container's cgroup (a path relative to the agent's own cgroup) and applies resources. */
  create(relPath: string, resources: LinuxResources | undefined): Cgroup;
}

export interface Cgroup {
  readonly relPath: string;
  /** Moves a process in (all v1 hierarchies / the v2 group). */
  addProcess(pid: number): void;
  /** Applies (or re-applies, for UpdateContainer) the given resources. */
  update(resources: LinuxResources): void;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** "FROZEN" / "THAWED", as kata reports it. */
  state(): 'FROZEN' | 'THAWED';
  /** Every pid in the group, for signal-all and ListProcesses. */
  pids(): number[];
  stats(): CgroupStats;
  /** Calls back on every OOM kill in the group until the returned function is called. */
  watchOom(onOom: () => void): () => void;
  /**
   * After a vCPU hot-add: v1 cpuset levels keep the CPUs they were created with, so each level below
   * the agent's own group gets `guestCpus` (all online CPUs), and the group `own` (its spec's
   * Cpus) or `guestCpus`. v2 groups inherit their parent's CPUs: only an `own` set is written again.
   */
  refreshCpuset(guestCpus: string, own: string | undefined): void;
  /** Removes the group; kills nothing (callers kill and wait first). */
  destroy(): Promise<void>;
}
