import util from 'node:util';

/** ENOENT for 2, and so on; `E<n>` for numbers the platform does not name. */
export function errnoName(errno: number): string {
  try {
    return util.getSystemErrorName(-Math.abs(errno));
  } catch {
    return `E${errno}`;
  }
}

function errnoText(errno: number): string {
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
