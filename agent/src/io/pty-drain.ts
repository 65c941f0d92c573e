import type { Libc } from '../linux/libc.js';

const CHUNK = 64 * 1024;

/**
 * Reads what is left in a pty master once its slave side has hung up.
 *
 * libuv ends a stream on POLLHUP right after a short read, assuming a hung-up fd has nothing more
 * to give. That holds for pipes, but a pty still moves the slave's last writes through its flip
 * buffer after the hang-up, so that shortcut lost up to a few KB of the tail of a process's output
 * here (about one run in two for 300 KB). The kernel's read on the master flushes that buffer
 * before it answers EIO, so reading the master until EIO (or EAGAIN, should the slave have been
 * reopened) collects the rest. `master` must be an fd the agent keeps open itself, since the libuv
 * stream closes its own at end of stream.
 */
export function ptyDrain(libc: Libc, master: number): Buffer[] {
  const out: Buffer[] = [];
  for (;;) {
    const buf = Buffer.allocUnsafe(CHUNK);
    let n: number;
    try {
      n = libc.read(master, buf);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EIO' || code === 'EAGAIN') return out;
      throw err;
    }
    if (n <= 0) return out;
    out.push(buf.subarray(0, n));
  }
}
