// What both drivers are given by detect.ts (and tests).
import type { Libc } from '../linux/libc.js';
import type { CgroupFiles } from './files.js';
import type { CgroupLog } from './log.js';

export interface DriverDeps {
  files: CgroupFiles;
  libc: () => Libc;
  log: CgroupLog;
  /** How long freeze/thaw may take before the call fails (tasks in uninterruptible sleep delay it). */
  freezeTimeoutMs: number;
  /** How long destroy waits for processes still exiting before it refuses a group that is in use. */
  destroyGraceMs: number;
}
