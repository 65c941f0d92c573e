import { Duplex } from 'node:stream';
import { HpackDecoder, HpackError, encodeLiteralBlock, type HeaderField } from './hpack.js';

// HTTP/2 (RFC 9113) frame types, flags and error codes used here.
const PREFACE_LENGTH = 24; // 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
const HEADER_LENGTH = 9;
const HEADERS = 0x1;
const GOAWAY = 0x7;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
export const PROTOCOL_ERROR = 0x1;
export const INTERNAL_ERROR = 0x2;
export const COMPRESSION_ERROR = 0x9;
export const ENHANCE_YOUR_CALM = 0xb;
/** Every HTTP/2 peer accepts frames of this size (the smallest SETTINGS_MAX_FRAME_SIZE allowed). */
const SAFE_FRAME = 16384;
/** A header block (all its fragments) larger than this ends the connection: kata sends a few hundred bytes. */
const MAX_BLOCK = 256 << 10;
/** How long a closing connection may take to flush its last bytes before its fd is closed anyway. */
const FLUSH_GRACE_MS = 1000;

/**
 * nghttp2 (under Node's http2) refuses an `:authority` holding any byte outside RFC 3986's
 * authority characters; `%` is among those it takes, so percent-encoding keeps the text readable.
 */
function authorityByteOk(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || "-._~!$&'()*+,;=:@[]%".includes(String.fromCharCode(c));
}

export function normaliseAuthority(value: Buffer): Buffer {
  if (value.every(authorityByteOk)) return value;
  let s = '';
  for (const c of value) s += authorityByteOk(c) ? String.fromCharCode(c) : '%' + c.toString(16).toUpperCase().padStart(2, '0');
  return Buffer.from(s, 'latin1');
}

export interface HostConnEvents {
  /** Told why the connection is being closed by this layer (bad framing/HPACK, or the server's error GOAWAY). */
  onClose?: (reason: string) => void;
}

interface OpenBlock {
  streamId: number;
  endStream: boolean;
  priority?: Buffer;
  parts: Buffer[];
  size: number;
}

/**
 * Sits between a host connection (unix/vsock socket, yamux stream) and Node's HTTP/2 server, and
 * does two things Node's http2 cannot be configured to do:
 *
 * 1. `:authority` holding `/`. kata 1.x's grpc-go 1.11 sends its whole dial target, e.g.
 *    `unix:////run/vc/sbs/ID/kata.sock`; nghttp2 validates the pseudo-header and resets every such
 *    stream with PROTOCOL_ERROR, and Node 20 exposes no option that relaxes it (its http2 options
 *    map to nghttp2 options none of which is NO_HTTP_MESSAGING; strictFieldWhitespaceValidation is
 *    about whitespace only). So the header is fixed before nghttp2 sees it: every header block the
 *    host sends is HPACK-decoded here, with our own mirror of the host encoder's dynamic table, and
 *    re-encoded as literals that do not index (hpack.ts). That keeps nghttp2's decoder table empty
 *    and so always consistent, whatever we change; a rewrite that kept the host's indexing would
 *    have to keep every entry's size too, or the two tables would evict differently. Only
 *    HEADERS/CONTINUATION are rebuilt; every other frame passes through as it came.
 * 2. Closing after a connection error. When nghttp2 ends a session on a protocol error it sends
 *    GOAWAY with that error and stops reading, and Node then never sees the socket's EOF and never
 *    destroys session or socket: one fd leaked per bad connection. RFC 9113 §5.4.1 says to close the
 *    connection after such a GOAWAY, so this layer watches the frames the server writes and, after
 *    a GOAWAY whose code is not NO_ERROR, flushes it and closes the host connection (a yamux stream
 *    is reset), which makes Node destroy the session. Malformed framing or HPACK that this layer
 *    itself cannot parse ends the connection the same way, with our own GOAWAY.
 */
export class Http2HostConn extends Duplex {
  // The server (Node's http2 under grpc-js) keeps SETTINGS_HEADER_TABLE_SIZE at its default, 4096,
  // so that is the most a host's encoder table may hold.
  private readonly hpack = new HpackDecoder(4096);
  private inBuf: Buffer = Buffer.alloc(0);
  private prefaceLeft = PREFACE_LENGTH;
  /** Payload bytes of the current pass-through frame not yet forwarded. */
  private passLeft = 0;
  private block?: OpenBlock;
  private lastStreamId = 0;
  // Frame boundaries of what the server writes to the host.
  private outHeader: number[] = [];
  private outLeft = 0;
  private outGoaway?: number[];
  private closing = false;

  constructor(
    private readonly inner: Duplex,
    private readonly events: HostConnEvents = {},
  ) {
    super({ allowHalfOpen: true });
    inner.on('data', (chunk: Buffer) => this.fromHost(chunk));
    let hostEnded = false;
    let hostError: Error | undefined;
    inner.on('end', () => {
      hostEnded = true;
      this.push(null);
    });
    inner.on('error', (err) => {
      hostError = err;
    });
    inner.on('close', () => {
      // A host may send a whole request and close at once, even with a reset (closing with our
      // SETTINGS unread makes its kernel send RST). What it sent is queued in this stream for the
      // server, and destroying now would drop it unread, where a plain socket hands nghttp2 every
      // byte as it arrives. So the queue is ended and read to its end first, bounded in case the
      // server never reads; the answer then fails to write, which is how its handler learns the
      // host is gone (and gets the output back into the stream).
      if (this.readableEnded || this.destroyed || this.readableLength === 0) return void this.destroy(hostError);
      if (!hostEnded) this.push(null);
      const timer = setTimeout(() => this.destroy(hostError), FLUSH_GRACE_MS);
      timer.unref();
      this.once('end', () => {
        clearTimeout(timer);
        setImmediate(() => this.destroy(hostError));
      });
    });
  }

  // ---- host → server ----

  private fromHost(chunk: Buffer): void {
    if (this.closing || this.destroyed) return;
    let buf = this.inBuf.length ? Buffer.concat([this.inBuf, chunk]) : chunk;
    const out: Buffer[] = [];
    try {
      for (;;) {
        if (this.prefaceLeft > 0 || this.passLeft > 0) {
          const n = Math.min(buf.length, this.prefaceLeft || this.passLeft);
          if (n === 0) break;
          out.push(buf.subarray(0, n));
          buf = buf.subarray(n);
          if (this.prefaceLeft > 0) this.prefaceLeft -= n;
          else this.passLeft -= n;
          continue;
        }
        if (buf.length < HEADER_LENGTH) break;
        const length = buf.readUIntBE(0, 3);
        const type = buf[3];
        if (type !== HEADERS && type !== CONTINUATION) {
          if (this.block) throw new FrameError(PROTOCOL_ERROR, `frame type ${type} inside the header block of stream ${this.block.streamId}`);
          out.push(buf.subarray(0, HEADER_LENGTH));
          buf = buf.subarray(HEADER_LENGTH);
          this.passLeft = length;
          continue;
        }
        if ((this.block?.size ?? 0) + length > MAX_BLOCK) throw new FrameError(ENHANCE_YOUR_CALM, `header block larger than ${MAX_BLOCK} bytes`);
        if (buf.length < HEADER_LENGTH + length) break;
        const flags = buf[4];
        const streamId = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(HEADER_LENGTH, HEADER_LENGTH + length);
        buf = buf.subarray(HEADER_LENGTH + length);
        const frames = type === HEADERS ? this.headers(flags, streamId, payload) : this.continuation(flags, streamId, payload);
        if (frames) out.push(frames);
      }
    } catch (err) {
      // Anything else thrown here is our bug, but it came from host bytes: it must cost the host this
      // connection, not the agent its life (it would be an uncaught exception in a 'data' handler).
      const e = err instanceof FrameError ? err : new FrameError(INTERNAL_ERROR, `HTTP/2 filter: ${(err as Error).message}`);
      for (const piece of coalesce(out)) this.push(piece);
      this.fail(e.code, e.message);
      return;
    }
    // Keep only the unparsed tail, copied, so that a large chunk is not held for a few bytes.
    this.inBuf = buf.length ? Buffer.from(buf) : Buffer.alloc(0);
    let more = true;
    for (const piece of coalesce(out)) more = this.push(piece);
    if (!more) this.inner.pause();
  }

  private headers(flags: number, streamId: number, payload: Buffer): Buffer | undefined {
    if (this.block) throw new FrameError(PROTOCOL_ERROR, `HEADERS for stream ${streamId} inside the header block of stream ${this.block.streamId}`);
    let start = 0;
    let pad = 0;
    if (flags & PADDED) {
      if (payload.length < 1) throw new FrameError(PROTOCOL_ERROR, `HEADERS on stream ${streamId}: PADDED without a pad length`);
      pad = payload[0];
      start = 1;
    }
    let priority: Buffer | undefined;
    if (flags & PRIORITY) {
      priority = Buffer.from(payload.subarray(start, start + 5));
      start += 5;
    }
    if (start + pad > payload.length)
      throw new FrameError(PROTOCOL_ERROR, `HEADERS on stream ${streamId}: ${pad} bytes of padding in a ${payload.length}-byte frame`);
    const fragment = Buffer.from(payload.subarray(start, payload.length - pad));
    this.block = { streamId, endStream: (flags & END_STREAM) !== 0, priority, parts: [fragment], size: fragment.length };
    return flags & END_HEADERS ? this.finishBlock() : undefined;
  }

  private continuation(flags: number, streamId: number, payload: Buffer): Buffer | undefined {
    if (!this.block || this.block.streamId !== streamId) {
      throw new FrameError(PROTOCOL_ERROR, `CONTINUATION on stream ${streamId} without a HEADERS before it`);
    }
    this.block.parts.push(Buffer.from(payload));
    this.block.size += payload.length;
    return flags & END_HEADERS ? this.finishBlock() : undefined;
  }

  /** Decodes the finished block, fixes `:authority`, and frames the re-encoded block again. */
  private finishBlock(): Buffer {
    const b = this.block!;
    this.block = undefined;
    let fields: HeaderField[];
    try {
      fields = this.hpack.decode(b.parts.length === 1 ? b.parts[0] : Buffer.concat(b.parts));
    } catch (err) {
      if (err instanceof HpackError) throw new FrameError(COMPRESSION_ERROR, `stream ${b.streamId}: ${err.message}`);
      throw err;
    }
    for (const f of fields) if (f.name.toString('latin1') === ':authority') f.value = normaliseAuthority(f.value);
    if (b.streamId > this.lastStreamId) this.lastStreamId = b.streamId;
    const block = encodeLiteralBlock(fields);
    const frames: Buffer[] = [];
    let at = 0;
    do {
      const first = at === 0;
      const room = SAFE_FRAME - (first && b.priority ? 5 : 0);
      const piece = block.subarray(at, at + room);
      at += piece.length;
      let flags = at >= block.length ? END_HEADERS : 0;
      if (first) flags |= (b.endStream ? END_STREAM : 0) | (b.priority ? PRIORITY : 0);
      const body = first && b.priority ? Buffer.concat([b.priority, piece]) : piece;
      frames.push(frameHeader(body.length, first ? HEADERS : CONTINUATION, flags, b.streamId), body);
    } while (at < block.length);
    return Buffer.concat(frames);
  }

  override _read(): void {
    if (!this.closing) this.inner.resume();
  }

  // ---- server → host ----

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.closing || this.inner.destroyed) return cb();
    const errorGoaway = this.scanOut(chunk);
    if (errorGoaway !== undefined) {
      this.inner.write(chunk);
      this.closeHost(`the server sent GOAWAY with error ${errorGoaway}`);
      return cb();
    }
    if (this.inner.write(chunk)) return cb();
    // A host that went away never drains. Until this write completes Node's http2 reads no more of
    // what the host had already sent, so its close must complete the write too (the bytes are lost
    // with the host either way).
    const done = () => {
      this.inner.off('drain', done);
      this.inner.off('close', done);
      cb();
    };
    this.inner.once('drain', done);
    this.inner.once('close', done);
  }

  /** Follows frame boundaries in what the server writes; returns the code of an error GOAWAY that ends in this chunk. */
  private scanOut(chunk: Buffer): number | undefined {
    let found: number | undefined;
    let i = 0;
    while (i < chunk.length) {
      if (this.outLeft > 0) {
        const n = Math.min(this.outLeft, chunk.length - i);
        if (this.outGoaway) for (let k = 0; k < n && this.outGoaway.length < 8; k++) this.outGoaway.push(chunk[i + k]);
        this.outLeft -= n;
        i += n;
        if (this.outGoaway && this.outGoaway.length === 8) {
          const code = Buffer.from(this.outGoaway).readUInt32BE(4);
          this.outGoaway = undefined;
          if (code !== 0) found = code;
        }
        continue;
      }
      this.outHeader.push(chunk[i++]);
      if (this.outHeader.length < HEADER_LENGTH) continue;
      const h = Buffer.from(this.outHeader);
      this.outHeader = [];
      this.outLeft = h.readUIntBE(0, 3);
      this.outGoaway = h[3] === GOAWAY && this.outLeft >= 8 ? [] : undefined;
    }
    return found;
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.closing) this.inner.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.closing) this.inner.destroy();
    cb(err);
  }

  /** This layer's own connection error: GOAWAY to the host (when it fits between the server's frames), then close. */
  private fail(code: number, reason: string): void {
    if (this.outHeader.length === 0 && this.outLeft === 0) {
      const debug = Buffer.from(reason.slice(0, 200), 'utf8');
      const payload = Buffer.alloc(8);
      payload.writeUInt32BE(this.lastStreamId, 0);
      payload.writeUInt32BE(code, 4);
      this.inner.write(Buffer.concat([frameHeader(8 + debug.length, GOAWAY, 0, 0), payload, debug]));
    }
    this.closeHost(reason);
  }

  /**
   * Ends the host connection after what was written so far, closes it (its fd, or a yamux RST)
   * once flushed or after FLUSH_GRACE_MS, and destroys this side so that Node destroys the session.
   */
  private closeHost(reason: string): void {
    if (this.closing) return;
    this.closing = true;
    this.events.onClose?.(reason);
    const inner = this.inner;
    const timer = setTimeout(() => inner.destroy(), FLUSH_GRACE_MS);
    timer.unref();
    inner.once('close', () => clearTimeout(timer));
    inner.once('finish', () => inner.destroy());
    inner.end();
    this.destroy();
  }
}

class FrameError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Joins neighbouring slices of one buffer back into a single view, without copying: frames that
 * pass through unchanged stay one chunk, as they came from the socket.
 */
function coalesce(parts: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const p of parts) {
    const last = out[out.length - 1];
    if (last && last.buffer === p.buffer && last.byteOffset + last.length === p.byteOffset) {
      out[out.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + p.length);
    } else if (p.length) out.push(p);
  }
  return out;
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return h;
}
