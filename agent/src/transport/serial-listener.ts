import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { ConfigError } from '../config/errors.js';
import type { Listener } from './listener.js';
import { AGENT_PORT_NAME, findVirtioPort } from './virtio-ports.js';
import { VportDevice } from './vport-device.js';
import { libc as realLibc } from '../linux/index.js';
import type { Libc } from '../linux/libc.js';
import { serveYamux } from './yamux/server.js';
import type { YamuxSession } from './yamux/session.js';

export interface SerialListenerOptions {
  portName?: string;
  sysfsRoot?: string;
  devDir?: string;
  /**
   * Opens the port device as a stream per session (tests). Without it the listener holds the
   * device open through a VportDevice and waits for a host before each session.
   */
  openPort?: (devicePath: string) => Duplex | Promise<Duplex>;
  /** For the default device: the libc that polls it. */
  libc?: Libc;
  /** Waits between attempts; injectable so tests can see the back-off without waiting it out. */
  sleep?: (ms: number) => Promise<void>;
  /** How often to look for the port before giving up (kata 1.x: 200 × 50 ms at boot). */
  discoverTries?: number;
  discoverIntervalMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  acceptBacklog?: number;
  /** Open failures and sessions that ended on an error; the listener carries on after each. */
  onError?: (err: Error) => void;
  /** Session starts, ends and host takeovers, for the log (what the guest saw of the host). */
  onInfo?: (msg: string, fields: Record<string, unknown>) => void;
}

export interface SessionEnd {
  /** The host spoke at least one valid frame in this session. */
  live: boolean;
  /** Why it ended: undefined for EOF (host gone), else a protocol or I/O error. */
  reason?: Error;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The kata 1.x channel: a virtio-serial port carrying one yamux session at a time, the agent being
 * the yamux server and every stream a host connection. The device stays open and each session
 * starts once a host is attached (VportDevice). A session that ends without a valid frame (the
 * host left at once, or a test's port that reads EOF) doubles the wait before the next one
 * (minBackoffMs up to maxBackoffMs); a session the host really used resets it. Events: 'session'
 * (YamuxSession), 'session-end' (SessionEnd).
 */
export class SerialListener extends EventEmitter implements Listener {
  readonly address: string;
  private readonly o: Required<Omit<SerialListenerOptions, 'onError' | 'onInfo' | 'acceptBacklog' | 'openPort' | 'libc'>> &
    Pick<SerialListenerOptions, 'onError' | 'onInfo' | 'acceptBacklog' | 'openPort' | 'libc'>;
  private device?: VportDevice;
  private closing = false;
  private current?: { session?: YamuxSession; conn: Duplex };
  private loop?: Promise<void>;
  private wake?: () => void;

  constructor(opts: SerialListenerOptions = {}) {
    super();
    this.o = {
      portName: AGENT_PORT_NAME,
      sysfsRoot: '/sys',
      devDir: '/dev',
      sleep: defaultSleep,
      discoverTries: 200,
      discoverIntervalMs: 50,
      minBackoffMs: 50,
      maxBackoffMs: 1000,
      ...opts,
    };
    this.address = `serial://${this.o.portName}`;
  }

  async listen(onConnection: (conn: Duplex) => void): Promise<void> {
    let dev: string | undefined;
    for (let i = 0; i < this.o.discoverTries && !dev; i++) {
      if (i > 0) await this.o.sleep(this.o.discoverIntervalMs);
      dev = findVirtioPort(this.o.sysfsRoot, this.o.portName);
    }
    if (!dev) {
      throw new ConfigError(
        `cannot listen on ${this.address}: no virtio-serial port named "${this.o.portName}" under ${path.join(this.o.sysfsRoot, 'class', 'virtio-ports')} ` +
          `after ${this.o.discoverTries} looks (is virtio_console loaded and the VM started with a virtserialport of that name?)`,
      );
    }
    const devicePath = path.join(this.o.devDir, dev);
    // The first open must work, so a wrong device or EBUSY stops start-up with its reason.
    let first: Duplex | undefined;
    try {
      if (this.o.openPort) first = await this.o.openPort(devicePath);
      else {
        this.device = new VportDevice(devicePath, this.o.libc ?? realLibc());
        this.device.open();
      }
    } catch (err) {
      throw new ConfigError(`cannot listen on ${this.address}: ${(err as Error).message}`);
    }
    this.loop = this.run(devicePath, first, onConnection).finally(() => this.device?.release());
  }

  private async run(devicePath: string, first: Duplex | undefined, onConnection: (conn: Duplex) => void): Promise<void> {
    let conn: Duplex | undefined = first;
    let backoff = this.o.minBackoffMs;
    while (!this.closing) {
      if (!conn) {
        try {
          if (this.device) {
            conn = await this.device.nextSession(() => this.closing);
            if (!conn) break;
          } else conn = await this.o.openPort!(devicePath);
        } catch (err) {
          this.o.onError?.(err as Error);
          await this.pause(backoff);
          backoff = Math.min(backoff * 2, this.o.maxBackoffMs);
          continue;
        }
        if (this.closing) {
          conn.destroy();
          break;
        }
      }
      const end = await this.serve(conn, onConnection);
      conn = undefined;
      this.emit('session-end', end);
      if (end.reason) this.o.onError?.(new Error(`${this.address}: session dropped: ${end.reason.message}`));
      if (end.live) {
        backoff = this.o.minBackoffMs; // a host was there: it may be back at once
      } else {
        await this.pause(backoff);
        backoff = Math.min(backoff * 2, this.o.maxBackoffMs);
      }
    }
  }

  /** One yamux session on an open port, until EOF, error or close(); the port is closed after. */
  private async serve(conn: Duplex, onConnection: (conn: Duplex) => void): Promise<SessionEnd> {
    conn.on('error', () => undefined); // the session reports it
    // The port cannot tell us reliably that the host went away (see restartForNewPeer), so a host
    // starting over at stream 1 takes over this session instead of failing it.
    const session = serveYamux(conn, onConnection, { acceptBacklog: this.o.acceptBacklog, newPeerOnReusedId: true });
    const started = Date.now();
    session.on('peer-restart', (e: { streamId: number; reset: number }) =>
      this.o.onInfo?.('serial: new host took over the yamux session', { address: this.address, streamId: e.streamId, oldStreamsReset: e.reset }),
    );
    this.current = { session, conn };
    this.emit('session', session);
    const reason = await session.closed;
    conn.destroy();
    // A second open of a virtio port fails with EBUSY: wait until the fd is really closed.
    if (!conn.closed) await new Promise((resolve) => conn.once('close', resolve));
    // Unread bytes after a protocol error are the rest of the garbage: closing the device as well
    // (the port's last fd) makes the kernel drop them. That happens before the error is reported, so a
    // host that reconnects once the guest has said so is not thrown away with the garbage.
    if (reason) this.device?.release();
    // A session without a single frame (a host that left at once) is not worth a line.
    if (session.stats.framesIn > 0)
      this.o.onInfo?.('serial: yamux session ended', {
        address: this.address,
        reason: reason?.message ?? 'EOF (host not connected)',
        framesIn: session.stats.framesIn,
        hostTakeovers: session.stats.peerRestarts,
        ms: Date.now() - started,
      });
    this.current = undefined;
    return { live: session.stats.framesIn > 0, reason };
  }

  private async pause(ms: number): Promise<void> {
    if (this.closing) return;
    await Promise.race([this.o.sleep(ms), new Promise<void>((resolve) => (this.wake = resolve))]);
    this.wake = undefined;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.wake?.();
    this.current?.session?.close();
    await this.loop;
  }
}
