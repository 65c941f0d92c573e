// HTTP/2 (RFC 9113) frames as bytes: the header, and a parser that cuts a byte stream into frames.
// Only what a gRPC server needs; what a frame means is for the connection (grpc-h2-server.ts).

export const FRAME_HEADER = 9;
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const enum FrameType {
  DATA = 0x0,
  HEADERS = 0x1,
  PRIORITY = 0x2,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  PUSH_PROMISE = 0x5,
  PING = 0x6,
  GOAWAY = 0x7,
  WINDOW_UPDATE = 0x8,
  CONTINUATION = 0x9,
}

export const END_STREAM = 0x1;
export const ACK = 0x1;
export const END_HEADERS = 0x4;
export const PADDED = 0x8;
export const PRIORITY_FLAG = 0x20;

export const enum ErrorCode {
  NO_ERROR = 0x0,
  PROTOCOL_ERROR = 0x1,
  INTERNAL_ERROR = 0x2,
  FLOW_CONTROL_ERROR = 0x3,
  STREAM_CLOSED = 0x5,
  FRAME_SIZE_ERROR = 0x6,
  REFUSED_STREAM = 0x7,
  CANCEL = 0x8,
  COMPRESSION_ERROR = 0x9,
}

export const enum Setting {
  HEADER_TABLE_SIZE = 0x1,
  ENABLE_PUSH = 0x2,
  MAX_CONCURRENT_STREAMS = 0x3,
  INITIAL_WINDOW_SIZE = 0x4,
  MAX_FRAME_SIZE = 0x5,
  MAX_HEADER_LIST_SIZE = 0x6,
}

/** The smallest SETTINGS_MAX_FRAME_SIZE there is: every peer takes frames this large. */
export const DEFAULT_MAX_FRAME = 16384;
export const DEFAULT_WINDOW = 65535;
export const MAX_WINDOW = 0x7fffffff;

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export class FrameError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function encodeFrame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(streamId & MAX_WINDOW, 5);
  payload.copy(out, FRAME_HEADER);
  return out;
}

export function settingsPayload(settings: [Setting, number][]): Buffer {
  const b = Buffer.allocUnsafe(6 * settings.length);
  settings.forEach(([id, value], i) => {
    b.writeUInt16BE(id, 6 * i);
    b.writeUInt32BE(value, 6 * i + 2);
  });
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/**
 * Cuts the client's bytes into frames, after checking the connection preface. A frame larger than
 * `maxFrame` (what we announced) is a connection error: nothing is buffered beyond one frame.
 */
export class FrameParser {
  private buf: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;

  constructor(private readonly maxFrame = DEFAULT_MAX_FRAME) {}

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.prefaceSeen) {
      const n = Math.min(this.buf.length, PREFACE.length);
      if (!this.buf.subarray(0, n).equals(PREFACE.subarray(0, n))) throw new FrameError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 connection preface');
      if (this.buf.length < PREFACE.length) return [];
      this.buf = this.buf.subarray(PREFACE.length);
      this.prefaceSeen = true;
    }
    const frames: Frame[] = [];
    while (this.buf.length >= FRAME_HEADER) {
      const len = this.buf.readUIntBE(0, 3);
      if (len > this.maxFrame) throw new FrameError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${len} bytes is above SETTINGS_MAX_FRAME_SIZE ${this.maxFrame}`);
      if (this.buf.length < FRAME_HEADER + len) break;
      frames.push({
        type: this.buf[3],
        flags: this.buf[4],
        streamId: this.buf.readUInt32BE(5) & MAX_WINDOW,
        // A copy: the parser's buffer is reused for what comes next.
        payload: Buffer.from(this.buf.subarray(FRAME_HEADER, FRAME_HEADER + len)),
      });
      this.buf = this.buf.subarray(FRAME_HEADER + len);
    }
    return frames;
  }
}

/** The payload without its padding (PADDED) and priority fields (HEADERS with PRIORITY). */
export function unpad(f: Frame): Buffer {
  let p = f.payload;
  let start = 0;
  let end = p.length;
  if (f.flags & PADDED) {
    if (p.length < 1 || p[0] >= p.length) throw new FrameError(ErrorCode.PROTOCOL_ERROR, `stream ${f.streamId}: padding longer than the frame`);
    end -= p[0];
    start = 1;
  }
  if (f.type === FrameType.HEADERS && f.flags & PRIORITY_FLAG) start += 5;
  if (start > end) throw new FrameError(ErrorCode.PROTOCOL_ERROR, `stream ${f.streamId}: frame too short for its flags`);
  p = p.subarray(start, end);
  return p;
}
