import { O_CLOEXEC, O_NOCTTY, O_RDWR, TIOCGPTPEER, type Libc } from '../linux/libc.js';

export interface Pty {
  master: number;
  slave: number;
}

/**
 * Opens a pty pair through libc rather than node-pty: node-pty forks the child itself, but here the
 * container's helper process must own the slave (it calls setsid and TIOCSCTTY before execve).
 * The slave comes from TIOCGPTPEER, so it works where /dev/pts of the agent is not the
 * container's. Both fds are close-on-exec: only the child they are handed to keeps them.
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
