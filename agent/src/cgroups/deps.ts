// What both drivers are given by detect.ts (and tests).
import type { Libc } from '../linux/libc.js';
import type { CgroupFiles } from './files.js';
import { createLogger, type Logger } from '../log/logger.js';

export interface DriverDeps {
  files: CgroupFiles;
  libc: () => Libc;
  log: CgroupLog;
  /** How long freeze/thaw may take before the call fails (tasks in uninterruptible sleep delay it). */
  freezeTimeoutMs: number;
  /** How long destroy waits for processes still exiting before it refuses a group that is in use. */
  destroyGraceMs: number;
}

/** The drivers only warn (settings they cannot apply, failed OOM watches). */
export type CgroupLog = Pick<Logger, 'warn'>;

let fallback: CgroupLog | undefined;
export const defaultCgroupLog = (): CgroupLog => (fallback ??= createLogger('warn', 'cgroups'));
