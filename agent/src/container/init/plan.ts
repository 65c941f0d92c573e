// What the agent tells a container-init helper to do, sent as JSON on the helper's fd 3. The agent
// does every check that can fail with a user-facing status (ids, paths, options) before it spawns;
// the helper only performs the plan and reports syscall failures back on fd 4.
import type { ErrorKind } from '../../errors.js';
import type { SeccompPlan } from '../../seccomp/profile.js';

export interface MountStep {
  source: string;
  /** Absolute path inside the container (already checked not to escape the rootfs). */
  destination: string;
  type: string;
  flags: number;
  /** Flags applied by a second, remount pass (bind mounts ignore them on the first). */
  remountFlags: number;
  /** MS_SHARED/MS_SLAVE/MS_PRIVATE (| MS_REC) to apply after mounting; 0 = none. */
  propagation: number;
  data: string;
  /** Whether the destination is created as a file (bind of a non-directory) rather than a directory. */
  isFile: boolean;
}

export interface DeviceStep {
  path: string;
  /** S_IFCHR / S_IFBLK / S_IFIFO | permission bits. */
  mode: number;
  major: number;
  minor: number;
  uid: number;
  gid: number;
}

export interface Rlimit {
  resource: number;
  soft: string;
  hard: string;
}

export interface ProcessPlan {
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  terminal: boolean;
  /** Capability masks as decimal strings (JSON has no bigint); absent = leave root's full sets. */
  caps?: { bounding: string; effective: string; permitted: string; inheritable: string; ambient: number[] };
  rlimits: Rlimit[];
  noNewPrivileges: boolean;
  /** undefined = leave unchanged. */
  oomScoreAdj?: number;
  /** The container's seccomp filter (an exec gets its container's), loaded just before execve. */
  seccomp?: SeccompPlan;
}

export interface NamespaceJoin {
  /** CLONE_NEW* flag. */
  type: number;
  path: string;
}

export interface CreatePlan {
  kind: 'create';
  /** Host path of the container root. */
  rootfs: string;
  /** Bundle-owned mount point the rootfs is bound to before pivot_root. */
  rootfsMount: string;
  readonlyRoot: boolean;
  /** MS_* propagation for "/" in the new mount namespace. */
  rootPropagation: number;
  unshare: number;
  join: NamespaceJoin[];
  hostname?: string;
  mounts: MountStep[];
  devices: DeviceStep[];
  maskedPaths: string[];
  readonlyPaths: string[];
  sysctl: Record<string, string>;
  /** cgroup v1 hierarchies (mount option lists) for "cgroup" mounts; empty on v2. */
  cgroupV1Hierarchies: string[];
  process: ProcessPlan;
}

export interface ExecPlan {
  kind: 'exec';
  /** /proc/<init pid>, whose root and namespaces the helper joins. */
  initProc: string;
  join: NamespaceJoin[];
  process: ProcessPlan;
}

/**
 * For a helper started ahead of need (with /dev/null as stdio): the process's real stdio, as fds of
 * the agent that the helper reopens through /proc/<pid>/fd (the same pipes). null for a terminal,
 * which the helper opens itself (see TERMINAL_FD).
 */
export interface StdioSource {
  pid: number;
  fds: [number, number, number] | null;
  terminal: boolean;
}

export type InitPlan = (CreatePlan | ExecPlan) & { stdio?: StdioSource };

/** One JSON line on the status fd: "booted" before the plan is read, "ready" before the start byte; EOF after that means execve succeeded. */
export type HelperStatus =
  | { state: 'booted' }
  | { state: 'ready' }
  | {
      state: 'error';
      /** The domain kind of the failure; absent for an internal one. */
      kind?: ErrorKind;
      message: string;
      /** Directories and files the failed setup made under the rootfs (relative to it), oldest first. */
      created?: { path: string; kind: 'dir' | 'file' }[];
    };

/** fds the helper finds its plan, status and start pipes on. */
export const PLAN_FD = 3;
export const STATUS_FD = 4;
export const START_FD = 5;
/**
 * A unix socket (SOCK_SEQPACKET) to the agent: a process with a terminal gets a pty the helper opens
 * inside the container, and its master goes to the agent over this socket (SCM_RIGHTS) before "ready".
 */
export const TERMINAL_FD = 6;
