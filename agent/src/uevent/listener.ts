// The agent's ear for device hot-plug. kata's runtime hot-plugs a disk (or a VFIO device) and then
// sends CreateContainer naming it by PCI path or SCSI address; the agent must find which /dev node
// the kernel made for it, and wait for it if the kernel has not got there yet. Guests have no udev,
// so this listener is also what loads a new device's driver (by its MODALIAS), as udev would.
//
// Nothing is missed: a wait registers before it looks, then looks at the events seen so far and
// at sysfs (a device that was there before the listener opened sends no event), and re-looks on
// every event and on a slow tick (a full socket buffer drops events: ENOBUFS).
import type { Socket } from 'node:net';
import { Cancelled, DeadlineExceeded } from '../errors.js';
import { AF_NETLINK, NETLINK_KOBJECT_UEVENT, SOCK_CLOEXEC, type Libc } from '../linux/libc.js';
import { SOL_SOCKET } from '../linux/kernel-abi.js';
import { socketFromFd } from '../linux/uv-handle.js';
import type { Logger } from '../log/logger.js';
import { parseUevents, type Uevent } from './uevent.js';

const SOCK_DGRAM = 2;
const SO_RCVBUFFORCE = 33;
/** The kernel's multicast group (udev's re-broadcast is group 2, which no udev here sends). */
const KERNEL_GROUP = 1;
/** Big enough for the burst of a disk with partitions or a SCSI scan; the default (~200 KiB) is too. */
const RECEIVE_BUFFER = 4 << 20;
/** Devices remembered by devpath: a pod has a handful; this only bounds a storm. */
const MAX_SEEN = 4096;
const RESCAN_MS = 250;

/** What a wait is for: a device described by its events, and how to find it if it is there already. */
export interface DeviceMatcher<T> {
  /** Names it in errors and logs: "virtio-blk PCI path 02/01". */
  readonly what: string;
  /** The result, if this event is the device (an add or change event). */
  fromEvent(ev: Uevent): T | undefined;
  /** The result, if sysfs shows the device already. */
  present(): T | undefined;
}

export interface UeventListenerDeps {
  libc: Libc;
  log: Logger;
  /** Called for every add event that carries a MODALIAS: loads its driver (uevent/autoload.ts). */
  onModalias?: (modalias: string, ev: Uevent) => void;
}

interface Waiter {
  check: (ev?: Uevent) => boolean;
}

export class UeventListener {
  private sock: Socket | undefined;
  private readonly seen = new Map<string, Uevent>();
  private readonly waiters = new Set<Waiter>();
  private closed = false;
  /** Events received (for logs and tests). */
  received = 0;

  constructor(private readonly deps: UeventListenerDeps) {}

  /** Opens the socket. A guest without it still works, by sysfs alone (slower: the tick). */
  open(): this {
    const { libc, log } = this.deps;
    let fd = -1;
    try {
      fd = libc.socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
      try {
        libc.setsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER);
      } catch {
        // Needs CAP_NET_ADMIN; the default buffer, with the rescans, still works.
      }
      libc.bindNetlink(fd, 0, KERNEL_GROUP);
      const sock = socketFromFd(fd, { writable: false });
      fd = -1;
      sock.on('data', (chunk: Buffer) => this.onData(chunk));
      sock.on('error', (err: NodeJS.ErrnoException) => {
        log.warn({ err: err.message }, 'uevent socket failed: reopening (events lost meanwhile are found by rescans)');
        sock.destroy();
        if (this.sock === sock) this.sock = undefined;
        if (!this.closed) this.open();
      });
      this.sock = sock;
    } catch (err) {
      if (fd >= 0) libc.close(fd);
      log.warn({ err: (err as Error).message }, 'no uevent socket: device waits rely on sysfs rescans');
    }
    return this;
  }

  get listening(): boolean {
    return this.sock !== undefined;
  }

  /** Feeds received bytes (the socket's data; tests call it with made-up events). */
  onData(chunk: Uint8Array): void {
    for (const ev of parseUevents(chunk)) {
      this.received++;
      this.deps.log.debug({ action: ev.action, devpath: ev.devpath, subsystem: ev.subsystem, devname: ev.devname || undefined }, 'uevent');
      if (ev.action === 'remove') this.seen.delete(ev.devpath);
      else {
        this.seen.delete(ev.devpath);
        this.seen.set(ev.devpath, ev);
        if (this.seen.size > MAX_SEEN) this.seen.delete(this.seen.keys().next().value!);
      }
      if (ev.action === 'add' && ev.modalias && this.deps.onModalias) {
        try {
          this.deps.onModalias(ev.modalias, ev);
        } catch (err) {
          this.deps.log.warn({ modalias: ev.modalias, err: (err as Error).message }, 'loading the driver of a new device');
        }
      }
      for (const w of [...this.waiters]) w.check(ev);
    }
  }

  /**
   * The device `m` describes, waiting up to `timeoutMs` for it; DeadlineExceeded naming it after that,
   * Cancelled if `signal` aborts (the host gave up on the call).
   */
  waitFor<T>(m: DeviceMatcher<T>, timeoutMs: number, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timers: { deadline?: NodeJS.Timeout; tick?: NodeJS.Timeout } = {};
      const done = () => {
        this.waiters.delete(waiter);
        clearTimeout(timers.deadline);
        clearInterval(timers.tick);
        signal?.removeEventListener('abort', onAbort);
      };
      const settle = (r: T) => {
        done();
        resolve(r);
      };
      const waiter: Waiter = {
        check: (ev) => {
          let r: T | undefined;
          try {
            r = ev ? m.fromEvent(ev) : this.fromSeen(m);
            r ??= m.present();
          } catch (err) {
            done();
            reject(err);
            return true;
          }
          if (r === undefined) return false;
          settle(r);
          return true;
        },
      };
      const onAbort = () => {
        done();
        reject(new Cancelled(`${m.what}: wait cancelled: the caller went away`));
      };
      if (signal?.aborted) return onAbort();
      this.waiters.add(waiter);
      if (waiter.check()) return;
      signal?.addEventListener('abort', onAbort, { once: true });
      timers.tick = setInterval(() => waiter.check(), RESCAN_MS);
      timers.deadline = setTimeout(() => {
        done();
        reject(new DeadlineExceeded(`${m.what}: not found within ${timeoutMs} ms (agent.hotplug_timeout)`));
      }, timeoutMs);
    });
  }

  private fromSeen<T>(m: DeviceMatcher<T>): T | undefined {
    for (const ev of this.seen.values()) {
      const r = m.fromEvent(ev);
      if (r !== undefined) return r;
    }
    return undefined;
  }

  close(): void {
    this.closed = true;
    this.sock?.destroy();
    this.sock = undefined;
  }
}
