import os from 'node:os';
import util from 'node:util';

/** The errno values path code tests for (the same on every Linux architecture). */
export const ENOENT = 2;
export const EEXIST = 17;

/** ENOENT for 2, and so on; `E<n>` for numbers the platform does not name. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  try {
    const name = util.getSystemErrorName(-n);
    if (!name.startsWith('Unknown')) return name;
  } catch {
    // fall through to the platform table
  }
  // libuv only names the errors it uses itself (no ECHILD, ENOEXEC...); os.constants has them all.
  for (const [name, value] of Object.entries(os.constants.errno)) if (value === n) return name;
  return `E${n}`;
}

/** The C library's text for an errno ("File exists"). */
export function errnoText(errno: number): string {
  return util.getSystemErrorMap().get(-Math.abs(errno))?.[1] ?? 'unknown error';
}

/**
 * A failed libc call. `code` is the errno name so it reads like Node's own fs errors and
 * toRpcError maps both the same way; the message names the call and what it was given.
 */
export class SyscallError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
    readonly detail = '',
  ) {
    super(`${syscall}(${detail}): ${errnoName(errno)} (${errnoText(errno)})`);
    this.name = 'SyscallError';
    this.code = errnoName(errno);
  }
}
