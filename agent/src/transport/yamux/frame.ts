import { ByteQueue } from '../byte-queue.js';
// The yamux frame header as hashicorp/yamux puts it on the wire (kata 1.x agent and proxy both use
// that library): 12 bytes, big-endian, version u8 | type u8 | flags u16 | stream id u32 | length u32.
// For data frames `length` is the payload size; for window updates it is the window delta; for
// pings the opaque ping value; for go-away the reason code. Only data frames carry a payload.

export const VERSION = 0;
export const HEADER_SIZE = 12;

export enum FrameType {
  Data = 0,
  WindowUpdate = 1,
  Ping = 2,
  GoAway = 3,
}

export const SYN = 1;
export const ACK = 2;
export const FIN = 4;
export const RST = 8;

export enum GoAwayCode {
  Normal = 0,
  ProtocolError = 1,
  InternalError = 2,
}

/** hashicorp's default (and fixed, in kata's configuration) per-stream receive window. */
export const INITIAL_WINDOW = 256 * 1024;

export interface Header {
  type: FrameType;
  flags: number;
  streamId: number;
  length: number;
}

export function encodeHeader(h: Header): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE);
  b.writeUInt8(VERSION, 0);
  b.writeUInt8(h.type, 1);
  b.writeUInt16BE(h.flags, 2);
  b.writeUInt32BE(h.streamId >>> 0, 4);
  b.writeUInt32BE(h.length >>> 0, 8);
  return b;
}

export class ProtocolError extends Error {
  readonly code = 'EYAMUXPROTO';
  constructor(message: string) {
    super(`yamux protocol error: ${message}`);
    this.name = 'ProtocolError';
  }
}

/**
 * Validates a header at buf[0..12). Anything a well-behaved hashicorp peer never sends is refused,
 * so bytes that are not yamux (a console banner, a stray HTTP/2 preface) end the session at once
 * instead of being read as a huge frame.
 */
export function decodeHeader(buf: Buffer, maxDataLength: number): Header {
  const version = buf.readUInt8(0);
  if (version !== VERSION) throw new ProtocolError(`version ${version} (want ${VERSION}); header bytes ${buf.subarray(0, HEADER_SIZE).toString('hex')}`);
  const type = buf.readUInt8(1);
  if (type > FrameType.GoAway) throw new ProtocolError(`unknown frame type ${type}`);
  const flags = buf.readUInt16BE(2);
  if (flags & ~(SYN | ACK | FIN | RST)) throw new ProtocolError(`unknown flags 0x${flags.toString(16)}`);
  const streamId = buf.readUInt32BE(4);
  const length = buf.readUInt32BE(8);
  if (type === FrameType.Data || type === FrameType.WindowUpdate) {
    if (streamId === 0) throw new ProtocolError(`${FrameType[type]} frame on stream 0`);
  } else if (streamId !== 0) {
    throw new ProtocolError(`${FrameType[type]} frame on stream ${streamId} (must be 0)`);
  }
  // No data frame may exceed our receive window, so a larger length is garbage, not a frame to buffer.
  if (type === FrameType.Data && length > maxDataLength) throw new ProtocolError(`data frame of ${length} bytes exceeds the ${maxDataLength}-byte window`);
  return { type, flags, streamId, length };
}

/** Splits a byte stream into frames; feed it chunks as they arrive. */
export class FrameReader {
  private readonly bytes = new ByteQueue();
  private header?: Header;

  constructor(
    private readonly maxDataLength: number,
    private readonly onFrame: (h: Header, payload: Buffer | undefined) => void,
  ) {}

  /** Throws ProtocolError on a bad header; frames before it have already been delivered. */
  push(chunk: Buffer): void {
    this.bytes.push(chunk);
    for (;;) {
      if (!this.header) {
        // Refuse a wrong version byte at once: a short burst of noise must not sit waiting for 12 bytes.
        const first = this.bytes.length > 0 ? this.bytes.peek(HEADER_SIZE) : undefined;
        if (first && first[0] !== VERSION) {
          throw new ProtocolError(`version ${first[0]} (want ${VERSION}); first bytes ${first.toString('hex')}`);
        }
        if (this.bytes.length < HEADER_SIZE) return;
        this.header = decodeHeader(this.bytes.take(HEADER_SIZE), this.maxDataLength);
      }
      const h = this.header;
      if (h.type !== FrameType.Data) {
        this.header = undefined;
        this.onFrame(h, undefined);
        continue;
      }
      if (this.bytes.length < h.length) return;
      this.header = undefined;
      this.onFrame(h, this.bytes.take(h.length));
    }
  }

  /** Bytes received but not yet part of a whole frame. */
  get pending(): number {
    return this.bytes.length + (this.header ? HEADER_SIZE : 0);
  }
}
