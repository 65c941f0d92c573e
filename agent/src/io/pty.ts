import { O_CLOEXEC, O_NOCTTY, O_RDWR, TIOCGPTPEER, type Libc } from '../linux/libc.js';

export interface Pty {
  master: number;
  slave: number;
}

/**
 * Opens a pty pair from the devpts instance that /dev/ptmx of the caller's root leads to. The
 * container-init helper calls it after it entered the container's root, so the pair belongs to the
 * container's own devpts (mounted `newinstance` at its /dev/pts) and ttyname() finds /dev/pts/N in
 * there; a pty of the agent's devpts is "not a tty" to every program in the container.
 * posix_openpt() opens "/dev/ptmx", unlockpt() is TIOCSPTLCK 0, and the slave comes from TIOCGPTPEER
 * on the master rather than a path lookup of /dev/pts/N, so no other file can be swapped in for it.
 * Both fds are close-on-exec; O_NOCTTY because the helper makes the slave its controlling terminal
 * itself, after setsid().
 */
export function openPty(libc: Libc): Pty {
  const master = libc.posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  try {
    libc.unlockpt(master);
    const slave = libc.ioctlInt(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    return { master, slave };
  } catch (err) {
    libc.close(master);
    throw err;
  }
}
