import type { Duplex } from 'node:stream';
import { YamuxSession, type SessionOptions } from './session.js';
import type { YamuxStream } from './stream.js';

/**
 * Serves yamux on a connection as the kata 1.x agent does: the host (kata-proxy or the runtime's
 * built-in proxy) is the client and opens one stream per gRPC connection; each arrives at onStream.
 */
export function serveYamux(conn: Duplex, onStream: (stream: YamuxStream) => void, opts: Omit<SessionOptions, 'onStream'> = {}): YamuxSession {
  return new YamuxSession(conn, 'server', { ...opts, onStream });
}
