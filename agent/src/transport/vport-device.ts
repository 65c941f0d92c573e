import type { Duplex } from 'node:stream';
import { SyscallError } from '../linux/errno.js';
import { F_DUPFD_CLOEXEC, O_NOCTTY, O_NONBLOCK, O_RDWR, POLLHUP, POLLIN, POLLOUT, type Libc } from '../linux/libc.js';
import { openPath } from '../linux/paths.js';
import { socketFromFd } from '../linux/uv-handle.js';

export interface VportDeviceOptions {
  /** Waits between looks at the port while no host is attached (first, then doubling, capped). */
  minPollMs?: number;
  maxPollMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A virtio-serial port (/dev/vportNpM) held open for the agent's whole life, handing out one
 * stream per host session.
 *
 * Why not open and close the device per session: the guest kernel discards whatever the host sent
 * that nobody read when the last fd of the port closes, and while no host is attached read()
 * returns 0 at once. Reopening after each such EOF left windows in which a host's first frames
 * (its SYN, the HTTP/2 preface and first call) arrived just before the close and were thrown away,
 * so that host waited forever (measured in test/guest/rpc.test.ts). So the device fd stays open,
 * each session reads through a dup of it (closing the dup neither discards data nor tells QEMU the
 * guest left), and a session starts only once poll() shows a host: POLLOUT without POLLHUP (the
 * port refuses writes and reports HUP while the host side is closed). Node cannot wait on an fd
 * for a condition like "HUP cleared", and a blocking poll() would hold a libuv worker thread, so
 * the wait is a short timer loop, which only runs while no host is attached.
 */
export class VportDevice {
  private fd?: number;
  private readonly o: Required<VportDeviceOptions>;

  constructor(
    readonly devicePath: string,
    private readonly libc: Libc,
    opts: VportDeviceOptions = {},
  ) {
    this.o = { minPollMs: 5, maxPollMs: 50, sleep: defaultSleep, ...opts };
  }

  /** Opens the device now, so a missing port or EBUSY (another holder) surfaces at start-up. */
  open(): void {
    if (this.fd !== undefined) return;
    try {
      this.fd = openPath(this.libc, this.devicePath, O_RDWR | O_NONBLOCK | O_NOCTTY);
    } catch (err) {
      if (!(err instanceof SyscallError)) throw err;
      const hint = err.code === 'EBUSY' ? ' (another process holds the port)' : '';
      throw Object.assign(new Error(`open(${this.devicePath}, O_RDWR|O_NONBLOCK): ${err.code}${hint}`), { code: err.code });
    }
  }

  /** True when a host is attached, or it left data we have not read yet. */
  hostPresent(): boolean {
    this.open();
    const revents = this.libc.poll(this.fd!, POLLIN | POLLOUT, 0);
    return (revents & POLLHUP) === 0 && (revents & (POLLIN | POLLOUT)) !== 0;
  }

  /**
   * Waits for a host, then returns a stream over a dup of the port fd. `cancelled` ends the wait
   * early (resolves undefined), for the listener's close().
   */
  async nextSession(cancelled: () => boolean): Promise<Duplex | undefined> {
    let wait = this.o.minPollMs;
    while (!this.hostPresent()) {
      if (cancelled()) return undefined;
      await this.o.sleep(wait);
      wait = Math.min(wait * 2, this.o.maxPollMs);
    }
    if (cancelled()) return undefined;
    const dup = this.libc.fcntl(this.fd!, F_DUPFD_CLOEXEC, 0);
    try {
      return socketFromFd(dup);
    } catch (err) {
      this.libc.close(dup);
      throw err;
    }
  }

  /**
   * Closes the device fd; the kernel then drops any unread bytes (after a protocol error they are
   * the rest of the garbage). The next nextSession() reopens it.
   */
  release(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    this.libc.close(fd);
  }
}
