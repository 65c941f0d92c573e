import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { ConfigError } from '../config/errors.js';
import type { Listener } from './listener.js';

/** Is something accepting on this socket path? A refused connect means a stale file from a dead agent. */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export class UnixListener implements Listener {
  private server?: net.Server;
  /** Accepted connections still open: close() ends them instead of waiting for the host to. */
  private readonly open = new Set<net.Socket>();
  readonly address: string;

  constructor(
    private readonly path: string,
    private readonly abstract: boolean,
  ) {
    this.address = `unix://${abstract ? '@' : ''}${path}`;
  }

  private get bindName(): string {
    // Linux abstract sockets: a leading NUL, no file on disk.
    return this.abstract ? `\0${this.path}` : this.path;
  }

  async listen(onConnection: (conn: Duplex) => void): Promise<void> {
    if (!this.abstract) {
      // libuv reports a missing directory as EACCES; say what is really wrong.
      const dir = path.dirname(path.resolve(this.path));
      if (!fs.existsSync(dir)) throw new ConfigError(`cannot listen on ${this.address}: directory ${dir} does not exist`);
      await this.removeStale();
    }
    const server = net.createServer((sock) => {
      this.open.add(sock);
      sock.once('close', () => this.open.delete(sock));
      onConnection(sock);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const why: Record<string, string> = {
          EADDRINUSE: 'address already in use',
          EACCES: 'permission denied (directory not writable?)',
          EROFS: 'read-only file system',
        };
        reject(new ConfigError(`cannot listen on ${this.address}: ${err.code ?? ''} ${why[err.code ?? ''] ?? err.message}`.trim()));
      });
      server.listen(this.bindName, () => resolve());
    });
    server.on('error', () => undefined);
    this.server = server;
  }

  private async removeStale(): Promise<void> {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(this.path);
    } catch {
      return;
    }
    if (!st.isSocket()) throw new ConfigError(`cannot listen on ${this.address}: ${this.path} exists and is not a socket`);
    if (await socketInUse(this.path)) throw new ConfigError(`cannot listen on ${this.address}: socket path in use by another process`);
    fs.unlinkSync(this.path);
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    // net.Server.close waits for every connection to end, and a host (or a helper process that holds
    // a copy of a connection) may keep one open indefinitely: end them so shutdown cannot hang.
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    for (const sock of this.open) sock.destroy();
    await closed;
    // net.Server unlinks its own path on close; nothing else to clean.
  }
}
