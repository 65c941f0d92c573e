import type { Duplex } from 'node:stream';

/** A source of host connections. Knows sockets, not protocols: each accepted stream goes to onConnection. */
export interface Listener {
  readonly address: string;
  listen(onConnection: (conn: Duplex) => void): Promise<void>;
  close(): Promise<void>;
}
