import { createLogger, type Logger } from '../log/logger.js';

/** The drivers only warn (settings they cannot apply, failed OOM watches). */
export type CgroupLog = Pick<Logger, 'warn'>;

let fallback: CgroupLog | undefined;
export const defaultCgroupLog = (): CgroupLog => (fallback ??= createLogger('warn', 'cgroups'));
