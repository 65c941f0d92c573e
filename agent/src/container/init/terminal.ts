// The terminal of a container process, set up by the container-init helper once it is inside the
// container's root (after the mounts and pivot_root of a create, after the chroot of an exec).
import { openPty, type Pty } from '../../io/pty.js';
import type { Libc } from '../../linux/libc.js';

/**
 * Opens a pty of the container's own devpts, makes its slave fds 0-2 and sends the master to the
 * agent on `channelFd`; afterwards the helper holds no copy of the master, so none reaches the
 * container's program. The slave becomes the controlling terminal in applyAndExec (setsid, then
 * TIOCSCTTY on fd 0).
 *
 * Why SCM_RIGHTS and not the agent opening /proc/<helper>/fd/N, as it does the other way round for
 * pipes: opening a pty master's /proc fd link opens ptmx again, which makes a new pty rather than
 * another handle on this one (checked: TIOCGPTN 0, then 1). pidfd_getfd() would copy the fd, but it
 * needs Linux 5.6 and ptrace rights over a helper that is not dumpable. A socketpair made at spawn
 * works the same for a helper spawned now and one waiting in a pool.
 */
export function takeContainerTerminal(libc: Libc, channelFd: number): void {
  let pty: Pty;
  try {
    pty = openPty(libc);
  } catch (err) {
    throw new Error(`terminal: cannot open a pty from the container's /dev/ptmx (a devpts at /dev/pts): ${(err as Error).message}`, { cause: err });
  }
  try {
    for (const fd of [0, 1, 2]) libc.dup3(pty.slave, fd, 0);
    // One byte: a message needs data to carry the fd.
    libc.sendFd(channelFd, pty.master, Uint8Array.of(1));
  } finally {
    libc.close(pty.slave);
    libc.close(pty.master);
  }
}
