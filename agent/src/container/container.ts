import type { Spec } from '../../../protos/gen/oci_pb.js';
import type { Cgroup } from '../cgroups/cgroup.js';
import type { SeccompPlan } from '../seccomp/profile.js';
import type { MountedStorage } from '../storage/storages.js';
import type { ContainerProcess } from './process.js';

export type ContainerState = 'created' | 'running' | 'stopped';

export class Container {
  state: ContainerState = 'created';
  readonly execs = new Map<string, ContainerProcess>();
  /** Exec ids of ExecProcess calls still starting their process. */
  readonly startingExecs = new Set<string>();
  stopOomWatch: (() => void) | undefined;
  /** True when the init is PID 1 of a pid namespace of its own (SIGTERM rule, kill-all semantics). */
  ownPidns = false;
  /** Set when RemoveContainer begins: nothing new (a warm exec helper) may start for it after. */
  removing = false;
  /** The filter of the spec's seccomp profile, checked at CreateContainer; every exec loads it too (as runc does). */
  seccomp: SeccompPlan | undefined;

  constructor(
    readonly id: string,
    readonly bundle: string,
    /** Host path of the container's root. */
    readonly rootfs: string,
    readonly spec: Spec,
    readonly cgroup: Cgroup,
    readonly init: ContainerProcess,
    readonly storages: MountedStorage[],
  ) {}

  /**
   * The init is found by the exec id CreateContainer gave it (every kata host sends the container id
   * there and then addresses the init by it) and by "" (3.x's own name for it); a process is
   * forgotten once WaitProcess returned for it.
   */
  process(execId: string): ContainerProcess | undefined {
    const p = this.isInit(execId) ? this.init : this.execs.get(execId);
    return p && !p.waited ? p : undefined;
  }

  isInit(execId: string): boolean {
    return execId === '' || execId === this.init.execId;
  }

  allProcesses(): ContainerProcess[] {
    return [this.init, ...this.execs.values()];
  }
}
