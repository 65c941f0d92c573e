import net from 'node:net';
import type { Duplex } from 'node:stream';
import { YamuxSession, type SessionOptions } from './session.js';
import type { YamuxStream } from './stream.js';

export interface ClientOptions extends Omit<SessionOptions, 'onStream'> {
  /** kata's proxy pings once a second; 0 turns keep-alive off. */
  pingIntervalMs?: number;
  /** A ping unanswered this long ends the session. */
  pingTimeoutMs?: number;
  /** Each keep-alive round trip, e.g. for a harness that logs guest responsiveness. */
  onPing?: (rttMs: number) => void;
}

/**
 * The host side of a kata 1.x channel: opens yamux streams to the agent (each one a connection for
 * a gRPC client) and pings it every second like kata's proxy, so a dead guest is noticed.
 */
export class YamuxClient {
  readonly session: YamuxSession;
  private readonly keepAlive?: NodeJS.Timeout;
  /** The last ping round trip in ms (undefined before the first answer). */
  lastRttMs?: number;

  constructor(conn: Duplex, opts: ClientOptions = {}) {
    this.session = new YamuxSession(conn, 'client', opts);
    const interval = opts.pingIntervalMs ?? 1000;
    const timeout = opts.pingTimeoutMs ?? 30_000;
    if (interval > 0) {
      let inFlight = false;
      this.keepAlive = setInterval(() => {
        if (inFlight) return;
        inFlight = true;
        this.session.ping(timeout).then(
          (rtt) => {
            inFlight = false;
            this.lastRttMs = rtt;
            opts.onPing?.(rtt);
          },
          (err: Error) => {
            inFlight = false;
            if (!this.session.isClosed) this.session.destroy(new Error(`yamux keep-alive failed: ${err.message}`));
          },
        );
      }, interval);
      // Keep-alive alone must not keep a test or CLI process running.
      this.keepAlive.unref();
    }
    void this.session.closed.then(() => clearInterval(this.keepAlive));
  }

  /** A new stream to the agent, ready for an HTTP/2 (gRPC) or ttrpc client. */
  open(): YamuxStream {
    return this.session.open();
  }

  ping(timeoutMs?: number): Promise<number> {
    return this.session.ping(timeoutMs);
  }

  get closed(): Promise<Error | undefined> {
    return this.session.closed;
  }

  close(): void {
    clearInterval(this.keepAlive);
    this.session.close();
  }
}

/**
 * Connects to a unix socket that carries yamux, e.g. QEMU's `-chardev socket,server=on` behind the
 * guest's `agent.channel.0` virtio-serial port.
 */
export function connectYamuxUnix(path: string, timeoutMs: number, opts: ClientOptions = {}): Promise<YamuxClient> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connect ${path}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(new YamuxClient(sock, opts));
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(`connect ${path}: ${err.code ?? err.message}`));
    });
  });
}
