import type { Duplex } from 'node:stream';
import { libc } from '../linux/index.js';
import { parseAddress } from './address.js';
import type { SerialListener } from './serial-listener.js';
import type { UnixListener } from './unix-listener.js';
import { VsockListener } from './vsock-listener.js';

/** A source of host connections. Knows sockets, not protocols: each accepted stream goes to onConnection. */
export interface Listener {
  readonly address: string;
  listen(onConnection: (conn: Duplex) => void): Promise<void>;
  close(): Promise<void>;
}

/** The listener for an agent address (vsock://, unix://, serial://...). */
export function createListener(address: string, onError?: (err: Error) => void, onInfo?: (msg: string, fields: Record<string, unknown>) => void): Listener {
  const a = parseAddress(address);
  // Required here, not imported: each pulls in node:net and node:stream (yamux), which a guest that
  // listens on vsock loads only once a host connects.
  if (a.kind === 'unix') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- only the listener kind in use is loaded
    const { UnixListener: Unix } = require('./unix-listener.js') as { UnixListener: typeof UnixListener };
    return new Unix(a.path, a.abstract);
  }
  if (a.kind === 'serial') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- only the listener kind in use is loaded
    const { SerialListener: Serial } = require('./serial-listener.js') as { SerialListener: typeof SerialListener };
    return new Serial({ portName: a.name, onError, onInfo });
  }
  return new VsockListener(libc(), a.cid, a.port, onError);
}
