// Path-level operations composed from Libc calls, for domain code that would otherwise reach for
// node:fs: everything here goes through the Libc it is given, so a test drives it on RecordingLibc
// and a failure is a SyscallError naming the call, the path and the errno.
import path from 'node:path';
import { EEXIST, ENOENT, SyscallError } from './errno.js';
import type { Libc } from './libc.js';
import { AT_FDCWD, F_OK, O_CLOEXEC, O_CREAT, O_WRONLY } from './libc.js';

/**
 * mkdir -p with `mode` (before the umask), parents made only when the path's own mkdir finds none,
 * as fs.mkdirSync(recursive) does. Something other than a directory already there is left for the
 * caller's next step to refuse.
 */
export function mkdirAll(libc: Libc, p: string, mode = 0o777): void {
  try {
    libc.mkdirat(AT_FDCWD, p, mode);
  } catch (err) {
    const errno = err instanceof SyscallError ? err.errno : undefined;
    if (errno === EEXIST) return;
    const parent = path.dirname(p);
    if (errno !== ENOENT || parent === p) throw err;
    mkdirAll(libc, parent, mode);
    mkdirAll(libc, p, mode);
  }
}

/** access(F_OK) as fs.existsSync does it: any refusal counts as absent. */
export function exists(libc: Libc, p: string): boolean {
  try {
    libc.faccessat(AT_FDCWD, p, F_OK, 0);
    return true;
  } catch {
    return false;
  }
}

/** open() of an absolute path, close-on-exec always (no fd of ours may leak into a container). */
export function openPath(libc: Libc, p: string, flags: number, mode = 0): number {
  return libc.openat(AT_FDCWD, p, flags | O_CLOEXEC, mode);
}

/** Creates an empty file if none is there (a bind-mount target), keeping one that is. */
export function touch(libc: Libc, p: string, mode = 0o644): void {
  libc.close(openPath(libc, p, O_WRONLY | O_CREAT, mode));
}

/** unlink() that treats an already-absent file as done. */
export function removeFile(libc: Libc, p: string): void {
  try {
    libc.unlinkat(AT_FDCWD, p, 0);
  } catch (err) {
    if (!(err instanceof SyscallError && err.errno === ENOENT)) throw err;
  }
}

/**
 * One write() of `value` to a kernel setting file (/proc, sysfs): the kernel parses each write on
 * its own. A refusal names the file and the value, which the bare fd of write() would not.
 */
export function writeValue(libc: Libc, p: string, value: string): void {
  const fd = openPath(libc, p, O_WRONLY);
  try {
    libc.write(fd, Buffer.from(value));
  } catch (err) {
    throw err instanceof SyscallError ? new SyscallError('write', err.errno, `${p} = "${value}"`) : err;
  } finally {
    libc.close(fd);
  }
}
