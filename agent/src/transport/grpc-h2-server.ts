// gRPC (kata 1.x) on our own HTTP/2, instead of grpc-js on Node's http2: opt-in for now
// (KATA_AGENT_GRPC_SERVER=own). Measured (issue 15): after 2,000 calls a bare server settles at
// 7.9 MB RssAnon; on node:http2 11.9 MB, with grpc-js on top 13.9 MB, and on this framing about
// 9.6 MB. The agent's calls are unary, so this serves unary calls only: one request message, one
// answer, status in trailers. Flow control is kept both ways (our answers wait for the client's
// windows; the client gets a window for a whole 4 MiB message per call and the connection's back as
// calls are read), HPACK is decoded with our own decoder and answered in literals (hpack.ts), and
// `:authority` is not looked at, so kata 1.x's slashes need no fixing here.
import type { Duplex } from 'node:stream';
import { Delivery } from '../rpc/delivery.js';
import { dialect1x } from '../rpc/dialect.js';
import { Code, type RpcError } from '../rpc/status.js';
import type { AgentRpcService } from '../rpc/service.js';
import type { Logger } from '../log/logger.js';
import { HpackDecoder, HpackError, encodeLiteralBlock, type HeaderField } from './hpack.js';
import {
  ACK,
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  END_HEADERS,
  END_STREAM,
  ErrorCode,
  FrameError,
  FrameParser,
  FrameType,
  MAX_WINDOW,
  Setting,
  encodeFrame,
  settingsPayload,
  u32,
  unpad,
  type Frame,
} from './http2-frames.js';
import { MAX_CONCURRENT_CALLS, MAX_MESSAGE } from './grpc-limits.js';
/** A whole message plus its 5-byte prefix fits in one stream's window. */
const STREAM_WINDOW = MAX_MESSAGE + 5;
/** A header block (all its fragments) larger than this ends the connection: kata sends a few hundred bytes. */
const MAX_BLOCK = 256 << 10;
const FLUSH_GRACE_MS = 1000;

interface Stream {
  id: number;
  headers?: HeaderField[];
  body: Buffer[];
  size: number;
  /** Bytes we may still send on it (the client's window for it). */
  window: number;
  /** Frames of the answer waiting for a window: DATA payloads, then the trailers. */
  out: Buffer[];
  trailers?: Buffer;
  abort: AbortController;
  delivery?: Delivery;
  refused: boolean;
  timer?: NodeJS.Timeout;
}

const text = (b: Buffer) => b.toString('latin1');

/** grpc-timeout ("5S", "100m", …) in ms; undefined when absent or malformed. */
export function grpcTimeoutMs(v: string | undefined): number | undefined {
  const m = v === undefined ? null : /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  const unit: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
  return Number(m[1]) * unit[m[2]];
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec): bytes outside 0x20–0x7e, and '%'. */
export function percentEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8'))
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  return out;
}

const headerBlock = (pairs: [string, string][]) =>
  encodeLiteralBlock(pairs.map(([n, v]) => ({ name: Buffer.from(n, 'latin1'), value: Buffer.from(v, 'latin1'), sensitive: false })));
const RESPONSE_HEADERS = headerBlock([
  [':status', '200'],
  ['content-type', 'application/grpc'],
]);

class GrpcConnection {
  private readonly parser = new FrameParser(DEFAULT_MAX_FRAME);
  private readonly hpack = new HpackDecoder(4096, MAX_BLOCK);
  private readonly streams = new Map<number, Stream>();
  private lastStreamId = 0;
  private block?: { streamId: number; endStream: boolean; parts: Buffer[]; size: number };
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private connWindow = DEFAULT_WINDOW;
  /** Request bytes read since the connection's receive window was last topped up. */
  private unacked = 0;
  private closing = false;
  private peerEnded = false;

  constructor(
    private readonly conn: Duplex,
    private readonly service: AgentRpcService,
    private readonly log: Logger,
  ) {
    this.write(
      encodeFrame(
        FrameType.SETTINGS,
        0,
        0,
        settingsPayload([
          [Setting.MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_CALLS],
          [Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW],
          [Setting.ENABLE_PUSH, 0],
        ]),
      ),
    );
    // The connection window starts at 65,535 whatever SETTINGS say: open it for a whole message.
    this.write(encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, u32(STREAM_WINDOW - DEFAULT_WINDOW)));
    conn.on('data', (chunk: Buffer) => this.onData(chunk));
    // A host may send its requests and half-close: the calls it made are still answered first.
    conn.on('end', () => {
      this.peerEnded = true;
      this.endIfDone();
    });
    conn.on('close', () => this.onClose());
    conn.on('error', (err) => this.log.debug({ err: err.message }, 'grpc connection error'));
    // The wire router paused it to put back the bytes it read.
    conn.resume();
  }

  /** Ends our side once the host has ended its own and every call it made is answered. */
  private endIfDone(): void {
    if (this.peerEnded && this.streams.size === 0 && !this.conn.writableEnded) this.conn.end();
  }

  private write(b: Buffer, cb?: (err?: Error | null) => void): void {
    if (this.conn.destroyed || !this.conn.writable) {
      cb?.(new Error('connection closed'));
      return;
    }
    this.conn.write(b, cb);
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    try {
      for (const f of this.parser.push(chunk)) this.onFrame(f);
    } catch (err) {
      const code = err instanceof FrameError ? err.code : err instanceof HpackError ? ErrorCode.COMPRESSION_ERROR : ErrorCode.INTERNAL_ERROR;
      this.goAway(code, (err as Error).message);
    }
  }

  /** Connection error (RFC 9113 §5.4.1): GOAWAY, then the connection is closed once it is flushed. */
  private goAway(code: ErrorCode, why: string): void {
    if (this.closing) return;
    this.closing = true;
    this.log.debug({ reason: why }, 'grpc connection closed on an HTTP/2 error');
    const payload = Buffer.concat([u32(this.lastStreamId), u32(code), Buffer.from(why.slice(0, 200))]);
    this.write(encodeFrame(FrameType.GOAWAY, 0, 0, payload), () => this.conn.destroy());
    setTimeout(() => this.conn.destroy(), FLUSH_GRACE_MS).unref();
  }

  private onFrame(f: Frame): void {
    if (this.block && f.type !== FrameType.CONTINUATION) throw new FrameError(ErrorCode.PROTOCOL_ERROR, `frame type ${f.type} inside a header block`);
    switch (f.type) {
      case FrameType.SETTINGS:
        return this.onSettings(f);
      case FrameType.PING:
        if (f.streamId !== 0 || f.payload.length !== 8) throw new FrameError(ErrorCode.PROTOCOL_ERROR, 'malformed PING');
        if (!(f.flags & ACK)) this.write(encodeFrame(FrameType.PING, ACK, 0, f.payload));
        return;
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(f);
      case FrameType.HEADERS:
        return this.onHeaders(f);
      case FrameType.CONTINUATION:
        return this.onContinuation(f);
      case FrameType.DATA:
        return this.onDataFrame(f);
      case FrameType.RST_STREAM:
        return this.onReset(f);
      case FrameType.GOAWAY:
        // The host goes: calls already read are answered, then it closes.
        return;
      case FrameType.PUSH_PROMISE:
        throw new FrameError(ErrorCode.PROTOCOL_ERROR, 'a client cannot push');
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).
        return;
    }
  }

  private onSettings(f: Frame): void {
    if (f.streamId !== 0 || f.payload.length % 6 !== 0) throw new FrameError(ErrorCode.PROTOCOL_ERROR, 'malformed SETTINGS');
    if (f.flags & ACK) return;
    for (let i = 0; i < f.payload.length; i += 6) {
      const id = f.payload.readUInt16BE(i);
      const value = f.payload.readUInt32BE(i + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new FrameError(ErrorCode.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE above 2^31-1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.window += delta;
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 0xffffff) throw new FrameError(ErrorCode.PROTOCOL_ERROR, `MAX_FRAME_SIZE ${value} out of range`);
        this.peerMaxFrame = value;
      }
    }
    this.write(encodeFrame(FrameType.SETTINGS, ACK, 0));
    this.flush();
  }

  private onWindowUpdate(f: Frame): void {
    if (f.payload.length !== 4) throw new FrameError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE of the wrong size');
    const inc = f.payload.readUInt32BE(0) & MAX_WINDOW;
    if (f.streamId === 0) {
      if (inc === 0 || this.connWindow + inc > MAX_WINDOW) throw new FrameError(ErrorCode.FLOW_CONTROL_ERROR, 'bad connection WINDOW_UPDATE');
      this.connWindow += inc;
    } else {
      const s = this.streams.get(f.streamId);
      if (s) s.window += inc;
    }
    this.flush();
  }

  private onHeaders(f: Frame): void {
    const id = f.streamId;
    if (id === 0 || id % 2 === 0) throw new FrameError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${id}`);
    if (id <= this.lastStreamId && !this.streams.has(id)) throw new FrameError(ErrorCode.STREAM_CLOSED, `HEADERS on closed stream ${id}`);
    const part = unpad(f);
    this.block = { streamId: id, endStream: (f.flags & END_STREAM) !== 0, parts: [part], size: part.length };
    if (f.flags & END_HEADERS) this.endBlock();
  }

  private onContinuation(f: Frame): void {
    const b = this.block;
    if (!b || f.streamId !== b.streamId) throw new FrameError(ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without its HEADERS');
    b.parts.push(f.payload);
    b.size += f.payload.length;
    if (b.size > MAX_BLOCK) throw new FrameError(ErrorCode.PROTOCOL_ERROR, `header block above ${MAX_BLOCK} bytes`);
    if (f.flags & END_HEADERS) this.endBlock();
  }

  private endBlock(): void {
    const b = this.block!;
    this.block = undefined;
    // Decoded whatever becomes of the stream: the HPACK table must see every block.
    const fields = this.hpack.decode(Buffer.concat(b.parts));
    const existing = this.streams.get(b.streamId);
    if (existing) {
      // Trailers from the client end its request.
      if (b.endStream) this.requestDone(existing);
      return;
    }
    this.lastStreamId = b.streamId;
    const s: Stream = {
      id: b.streamId,
      headers: fields,
      body: [],
      size: 0,
      window: this.peerInitialWindow,
      out: [],
      abort: new AbortController(),
      refused: false,
    };
    if (this.streams.size >= MAX_CONCURRENT_CALLS) {
      this.write(encodeFrame(FrameType.RST_STREAM, 0, s.id, u32(ErrorCode.REFUSED_STREAM)));
      return;
    }
    this.streams.set(s.id, s);
    // Server reflection is a streaming call (the client waits for answers before it ends its side):
    // refused at once, not after a request end that never comes.
    if (/^\/grpc\.reflection\./.test(this.header(s, ':path') ?? ''))
      return this.answerError(s, Code.UNIMPLEMENTED, 'server reflection is served by the grpc-js transport only (unset KATA_AGENT_GRPC_SERVER)');
    if (b.endStream) this.requestDone(s);
  }

  private onDataFrame(f: Frame): void {
    const data = unpad(f);
    // Flow control counts the whole frame, padding included.
    this.unacked += f.payload.length;
    if (this.unacked >= STREAM_WINDOW / 2) {
      this.write(encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, u32(this.unacked)));
      this.unacked = 0;
    }
    const s = this.streams.get(f.streamId);
    if (!s || s.headers === undefined || s.delivery) {
      // On a stream never opened (idle, or 0) a connection error (RFC 9113 §6.1); on one we reset or
      // answered already it is dropped.
      if (f.streamId === 0 || f.streamId > this.lastStreamId) throw new FrameError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${f.streamId}`);
      return;
    }
    if (!s.refused) {
      s.size += data.length;
      if (s.size > MAX_MESSAGE + 5) {
        s.refused = true;
        s.body = [];
        this.answerError(s, Code.RESOURCE_EXHAUSTED, `request message larger than max (${s.size - 5} vs. ${MAX_MESSAGE})`);
      } else s.body.push(data);
    }
    if (f.flags & END_STREAM && !s.refused) this.requestDone(s);
  }

  private onReset(f: Frame): void {
    const s = this.streams.get(f.streamId);
    if (!s) return;
    this.streams.delete(s.id);
    clearTimeout(s.timer);
    s.abort.abort();
    s.delivery?.undelivered();
    this.endIfDone();
  }

  private header(s: Stream, name: string): string | undefined {
    const f = s.headers?.find((h) => text(h.name) === name);
    return f ? text(f.value) : undefined;
  }

  private requestDone(s: Stream): void {
    const path = this.header(s, ':path') ?? '';
    const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
    if (this.header(s, ':method') !== 'POST' || !m) return this.answerError(s, Code.UNIMPLEMENTED, `unknown method ${path}`);
    const body = Buffer.concat(s.body);
    s.body = [];
    if (body.length < 5) return this.answerError(s, Code.INTERNAL, 'request has no gRPC message');
    if (body[0] !== 0) return this.answerError(s, Code.UNIMPLEMENTED, 'compressed requests are not supported');
    const len = body.readUInt32BE(1);
    if (len !== body.length - 5) return this.answerError(s, Code.INTERNAL, 'a unary call takes exactly one request message');
    const timeout = grpcTimeoutMs(this.header(s, 'grpc-timeout'));
    if (timeout !== undefined) {
      s.timer = setTimeout(() => {
        s.abort.abort();
        this.answerError(s, Code.DEADLINE_EXCEEDED, 'Deadline exceeded');
      }, timeout);
      s.timer.unref();
    }
    const delivery = new Delivery();
    s.delivery = delivery;
    this.service.call(m[1], m[2], body.subarray(5), { dialect: dialect1x, signal: s.abort.signal, delivery }).then(
      (answer) => {
        if (this.streams.get(s.id) !== s || s.trailers) return void delivery.undelivered();
        const prefix = Buffer.allocUnsafe(5);
        prefix[0] = 0;
        prefix.writeUInt32BE(answer.byteLength, 1);
        const msg = Buffer.concat([prefix, Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength)]);
        this.write(encodeFrame(FrameType.HEADERS, END_HEADERS, s.id, RESPONSE_HEADERS));
        for (let off = 0; off < msg.length; off += DEFAULT_MAX_FRAME) s.out.push(msg.subarray(off, off + DEFAULT_MAX_FRAME));
        s.trailers = headerBlock([['grpc-status', '0']]);
        this.flush();
      },
      (e: RpcError) => {
        delivery.undelivered();
        this.answerError(s, e.code, e.message);
      },
    );
  }

  /** A trailers-only answer (no message): the status in one HEADERS frame that ends the stream. */
  private answerError(s: Stream, code: Code, message: string): void {
    if (this.streams.get(s.id) !== s || s.trailers) return;
    clearTimeout(s.timer);
    this.streams.delete(s.id);
    const block = headerBlock([
      [':status', '200'],
      ['content-type', 'application/grpc'],
      ['grpc-status', String(code)],
      ['grpc-message', percentEncode(message)],
    ]);
    this.write(encodeFrame(FrameType.HEADERS, END_HEADERS | END_STREAM, s.id, block));
    this.endIfDone();
  }

  /** Sends what the windows allow, stream by stream; an answer's trailers follow its last DATA. */
  private flush(): void {
    for (const s of [...this.streams.values()]) {
      while (s.out.length > 0 && this.connWindow > 0 && s.window > 0) {
        const chunk = s.out[0];
        const n = Math.min(chunk.length, this.connWindow, s.window, this.peerMaxFrame);
        this.write(encodeFrame(FrameType.DATA, 0, s.id, chunk.subarray(0, n)));
        this.connWindow -= n;
        s.window -= n;
        if (n === chunk.length) s.out.shift();
        else s.out[0] = chunk.subarray(n);
      }
      if (s.out.length === 0 && s.trailers) {
        const delivery = s.delivery;
        this.streams.delete(s.id);
        clearTimeout(s.timer);
        // Written means the socket took the last frame; a connection destroyed meanwhile did not deliver it.
        this.write(encodeFrame(FrameType.HEADERS, END_HEADERS | END_STREAM, s.id, s.trailers), (err) => {
          if (err || this.conn.destroyed) delivery?.undelivered();
          else delivery?.delivered();
        });
      }
    }
    this.endIfDone();
  }

  private onClose(): void {
    for (const s of this.streams.values()) {
      clearTimeout(s.timer);
      s.abort.abort();
      s.delivery?.undelivered();
    }
    this.streams.clear();
  }
}

/** Serves the agent service as gRPC on any Duplex handed to it (unix, vsock, a yamux stream). */
export class OwnGrpcTransport {
  private readonly conns = new Set<Duplex>();

  constructor(
    private readonly service: AgentRpcService,
    private readonly log: Logger,
  ) {}

  serve(conn: Duplex): void {
    this.conns.add(conn);
    conn.once('close', () => this.conns.delete(conn));
    new GrpcConnection(conn, this.service, this.log);
  }

  close(): void {
    for (const c of this.conns) c.destroy();
  }
}
