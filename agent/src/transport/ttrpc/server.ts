import type { Duplex } from 'node:stream';
import { TtrpcConnection, type ConnectionOptions, type TtrpcHandler } from './connection.js';

export type { TtrpcCall, TtrpcHandler, TtrpcLog } from './connection.js';

/** A ttrpc server: hand it connected byte streams; it knows nothing of what the calls mean. */
export class TtrpcServer {
  private readonly connections = new Set<TtrpcConnection>();

  constructor(
    private readonly handler: TtrpcHandler,
    private readonly opts: ConnectionOptions,
  ) {}

  serve(conn: Duplex): TtrpcConnection {
    const c = new TtrpcConnection(conn, this.handler, this.opts);
    this.connections.add(c);
    conn.once('close', () => this.connections.delete(c));
    return c;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  close(): void {
    for (const c of this.connections) c.close();
    this.connections.clear();
  }
}
