import type { Duplex } from 'node:stream';
import { PREFACE } from './http2-frames.js';

export type Wire = 'grpc' | 'ttrpc' | 'yamux';

/** Where each wire goes. A channel offers gRPC plus at most one of ttrpc and yamux (see routeConnection). */
export type WireRoutes = { grpc?: (conn: Duplex) => void } & (
  { ttrpc?: (conn: Duplex) => void; yamux?: undefined } | { yamux?: (conn: Duplex) => void; ttrpc?: undefined }
);

export interface RouteOptions {
  /** Told why a connection was closed without being routed. */
  onReject?: (reason: string) => void;
  /** Told which wire a connection was handed to. */
  onRoute?: (wire: Wire) => void;
}

/** What every HTTP/2 client, and so every gRPC client, sends first (RFC 9113 §3.4). */
export const HTTP2_PREFACE = PREFACE;

type Verdict = { wire: Wire } | { reject: string } | undefined;

/**
 * The decision rule, applied to the bytes received so far (undefined = need more bytes):
 *
 * 1. First byte 'P' (0x50): an HTTP/2 client preface, so gRPC (kata 1.x). The bytes are compared
 *    with the 24-byte preface as they arrive; the first byte that differs rejects the connection,
 *    and only the whole preface routes it.
 * 2. First byte 0x00: binary framing. A ttrpc frame starts with its data length as u32 BE and that
 *    length is at most 4 MiB, so its first byte is always 0; a yamux frame starts with version 0.
 *    Nothing in the next few bytes reliably tells the two apart, but kata never mixes them on one
 *    channel: ttrpc is the 2.x/3.x wire on vsock and unix sockets, yamux the 1.x multiplexer on
 *    virtio-serial. So the channel says which one it carries (WireRoutes holds at most one):
 *    - ttrpc is routed on the first byte alone, so that even a malformed first frame (oversized,
 *      even stream id) reaches the ttrpc server and gets a status back;
 *    - yamux also needs byte 1, the frame type, to be 0–3 (data, window update, ping, go away).
 * 3. Anything else, or a first byte whose wire this channel does not carry: not a kata host. The
 *    connection is closed, as nothing could parse an answer.
 * A peer that closes before the rule decides is closed too. The bytes read to decide are put back
 * (unshift), so the chosen server sees the stream from its first byte. There is no time limit on
 * the first bytes: every kata host speaks first, and a silent peer holds only its own socket.
 */
function decide(prefix: Buffer, routes: WireRoutes): Verdict {
  const b0 = prefix[0];
  if (b0 === HTTP2_PREFACE[0] && routes.grpc) {
    const n = Math.min(prefix.length, HTTP2_PREFACE.length);
    for (let i = 0; i < n; i++) {
      if (prefix[i] !== HTTP2_PREFACE[i]) return { reject: `not an HTTP/2 client preface (byte ${i} is 0x${prefix[i].toString(16)})` };
    }
    return n === HTTP2_PREFACE.length ? { wire: 'grpc' } : undefined;
  }
  if (b0 === 0x00 && routes.ttrpc) return { wire: 'ttrpc' };
  if (b0 === 0x00 && routes.yamux) {
    if (prefix.length < 2) return undefined;
    return prefix[1] <= 3 ? { wire: 'yamux' } : { reject: `not a yamux header (type ${prefix[1]})` };
  }
  const offered = Object.keys(routes).filter((k) => routes[k as Wire]);
  return { reject: `first byte 0x${b0.toString(16).padStart(2, '0')} starts none of the wires on this channel (${offered.join(', ')})` };
}

/**
 * Reads the first bytes of an accepted connection and hands it to the server of the wire they
 * show (rule above). Takes any Duplex: a unix or vsock socket, a serial port, a yamux stream.
 */
export function routeConnection(conn: Duplex, routes: WireRoutes, opts: RouteOptions = {}): void {
  if (routes.ttrpc && routes.yamux) throw new Error('a channel carries ttrpc or yamux, not both: their first bytes look alike');
  let prefix: Buffer = Buffer.alloc(0);
  let done = false;
  const finish = () => {
    done = true;
    conn.off('data', onData);
    conn.off('end', onEnd);
    conn.off('error', onError);
  };
  const reject = (reason: string) => {
    finish();
    opts.onReject?.(reason);
    conn.destroy();
  };
  const onData = (chunk: Buffer) => {
    if (done) return;
    prefix = prefix.length ? Buffer.concat([prefix, chunk]) : chunk;
    const v = decide(prefix, routes);
    if (!v) return;
    if ('reject' in v) return reject(v.reject);
    finish();
    conn.pause();
    conn.unshift(prefix);
    opts.onRoute?.(v.wire);
    routes[v.wire]!(conn);
  };
  const onEnd = () => reject(prefix.length ? `peer closed after ${prefix.length} bytes, before the wire was known` : 'peer closed without sending');
  const onError = (err: Error) => reject(`connection error before the wire was known: ${err.message}`);
  conn.on('data', onData);
  conn.on('end', onEnd);
  conn.on('error', onError);
}
