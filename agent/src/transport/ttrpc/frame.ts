import { ByteQueue } from '../byte-queue.js';
// ttrpc framing (containerd's protocol, used by kata 2.x/3.x hosts): every message is a 10-byte
// header — data length u32 BE, stream id u32 BE, type u8, flags u8 — followed by the data.
//
// Hand-written: the npm registry has no ttrpc implementation (`npm view ttrpc`, `@containerd/ttrpc`,
// `ttrpc-js`, `node-ttrpc` all 404 as of 2026-11), and the framing is small enough that a
// dependency would not pay for itself.

export const HEADER_LENGTH = 10;
/** Largest data a frame may carry, in both directions (the protocol's 4 MiB). */
export const MAX_DATA_LENGTH = 4 << 20;

export const enum FrameType {
  Request = 1,
  Response = 2,
  Data = 3,
}

/** Request flags: the client will send Data frames (a client stream). */
export const FLAG_REMOTE_OPEN = 0x2;
/** Request/Data flags: the sender has nothing more to send on this stream. */
export const FLAG_REMOTE_CLOSED = 0x1;

export interface FrameHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export function encodeFrame(streamId: number, type: FrameType, flags: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LENGTH + data.length);
  out.writeUInt32BE(data.length, 0);
  out.writeUInt32BE(streamId >>> 0, 4);
  out.writeUInt8(type, 8);
  out.writeUInt8(flags, 9);
  out.set(data, HEADER_LENGTH);
  return out;
}

export type ReadEvent =
  | { kind: 'frame'; header: FrameHeader; data: Buffer }
  /** A frame whose declared length exceeds MAX_DATA_LENGTH; its data has been skipped, not buffered. */
  | { kind: 'oversized'; header: FrameHeader };

/**
 * Incremental frame parser: push whatever chunks the socket delivers (split anywhere) and get whole
 * frames back. An oversized frame is reported as soon as its header arrives and its data is then
 * discarded as it streams past, so a 4 GiB length never costs memory.
 */
export class FrameReader {
  private readonly bytes = new ByteQueue();
  private pending?: FrameHeader;
  private skip = 0;

  /** Adds bytes and returns every frame they complete. */
  push(chunk: Buffer): ReadEvent[] {
    this.feed(chunk);
    const events: ReadEvent[] = [];
    for (let ev = this.next(); ev; ev = this.next()) events.push(ev);
    return events;
  }

  /**
   * Adds bytes without parsing them; take frames out with next(). A reader that stops calling
   * next() (the connection is backed up) keeps only the bytes it was fed, never parsed frames.
   */
  feed(chunk: Buffer): void {
    if (this.skip > 0) {
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      chunk = chunk.subarray(n);
    }
    if (chunk.length > 0) this.bytes.push(chunk);
  }

  /** The next whole frame (or oversized header) among the bytes fed so far, or undefined. */
  next(): ReadEvent | undefined {
    for (;;) {
      if (!this.pending) {
        if (this.bytes.length < HEADER_LENGTH) return undefined;
        const h = this.bytes.take(HEADER_LENGTH);
        const header: FrameHeader = { length: h.readUInt32BE(0), streamId: h.readUInt32BE(4), type: h[8], flags: h[9] };
        if (header.length > MAX_DATA_LENGTH) {
          const n = Math.min(header.length, this.bytes.length);
          this.bytes.take(n);
          this.skip = header.length - n;
          return { kind: 'oversized', header };
        }
        this.pending = header;
      }
      if (this.bytes.length < this.pending.length) return undefined;
      const ev: ReadEvent = { kind: 'frame', header: this.pending, data: this.bytes.take(this.pending.length) };
      this.pending = undefined;
      return ev;
    }
  }

  /** True while part of a frame has arrived but not all of it. */
  get midFrame(): boolean {
    return this.bytes.length > 0 || this.pending !== undefined || this.skip > 0;
  }
}
