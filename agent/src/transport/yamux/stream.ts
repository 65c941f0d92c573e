import { Duplex } from 'node:stream';
import { FrameType, INITIAL_WINDOW, FIN, RST } from './frame.js';

/** What a stream needs from its session: a way to put frames on the wire and to leave the table. */
export interface StreamHost {
  /** Queues one frame on the connection (never blocks; `congested` tells when to hold data back). */
  writeFrame(type: FrameType, flags: number, streamId: number, length: number, payload?: Buffer): void;
  readonly congested: boolean;
  whenDrained(fn: () => void): void;
  forget(stream: YamuxStream): void;
  readonly maxFrame: number;
}

interface PendingWrite {
  chunk: Buffer;
  offset: number;
  cb: (err?: Error | null) => void;
}

function resetError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ECONNRESET' });
}

/**
 * One yamux stream as a Node Duplex. Flow control both ways: we never send more than the peer's
 * window (writes wait for its window updates, so `write()` back-pressure reaches the producer), and
 * we grant the peer more window only as our consumer reads, so a paused reader stops the sender
 * after one window (256 KiB) instead of buffering without bound.
 */
export class YamuxStream extends Duplex {
  private sendWindow = INITIAL_WINDOW;
  private recvWindow = INITIAL_WINDOW;
  private localFin = false;
  private remoteFin = false;
  private wasReset = false;
  private pendingWrite?: PendingWrite;
  private awaitingDrain = false;

  constructor(
    private readonly host: StreamHost,
    readonly id: number,
  ) {
    super({ allowHalfOpen: true });
  }

  /** Bytes we may still send before the peer grants more (for tests and diagnostics). */
  get peerWindow(): number {
    return this.sendWindow;
  }

  /** Bytes the peer may still send before we grant more. */
  get ourWindow(): number {
    return this.recvWindow;
  }

  // ---- from the session ----

  /** @internal A data frame for this stream; returns an error message if the peer broke the window. */
  receiveData(payload: Buffer, flags: number): string | undefined {
    if (payload.length > this.recvWindow) {
      return `stream ${this.id}: ${payload.length} bytes received with only ${this.recvWindow} bytes of window left`;
    }
    this.recvWindow -= payload.length;
    // Data after the peer's FIN or after we gave up on the stream has no reader: drop it.
    if (payload.length > 0 && !this.remoteFin && !this.destroyed) {
      this.push(payload);
      // A flowing reader may have taken it straight away, without it touching the buffer.
      this.grantWindow();
    }
    this.receiveFlags(flags);
    return undefined;
  }

  /** @internal A window update (possibly carrying FIN/RST) for this stream. */
  receiveWindowUpdate(delta: number, flags: number): void {
    this.sendWindow += delta;
    this.receiveFlags(flags);
    if (delta > 0) this.pump();
  }

  /** @internal The session is gone: nothing more will arrive or leave. */
  abort(err: Error | undefined): void {
    this.wasReset = true;
    this.destroy(err);
  }

  private receiveFlags(flags: number): void {
    if (flags & RST) {
      this.wasReset = true;
      this.destroy(resetError(`yamux stream ${this.id} reset by peer`));
      return;
    }
    if (flags & FIN && !this.remoteFin) {
      this.remoteFin = true;
      this.push(null);
    }
  }

  // ---- Duplex ----

  override _read(): void {
    this.grantWindow();
  }

  // Every way of consuming a Readable (flowing mode, pipe, async iteration, read()) goes through
  // read(). _read() alone is not enough: Node latches it off until the next push, so a reader
  // that drains a full buffer after the peer has used up its window would never grant more.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Readable.read's own return type: NodeJS.ReadableStream users need it
  override read(size?: number): any {
    const chunk = super.read(size);
    if (chunk !== null) this.grantWindow();
    return chunk;
  }

  /** Gives back the window our consumer has used up, in steps of at least half a window. */
  private grantWindow(): void {
    if (this.remoteFin || this.destroyed) return;
    const consumed = INITIAL_WINDOW - this.readableLength - this.recvWindow;
    if (consumed < INITIAL_WINDOW / 2) return;
    this.recvWindow += consumed;
    this.host.writeFrame(FrameType.WindowUpdate, 0, this.id, consumed);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pendingWrite = { chunk, offset: 0, cb };
    this.pump();
  }

  /** Sends as much of the pending write as the peer's window and the connection allow. */
  private pump(): void {
    const p = this.pendingWrite;
    if (!p) return;
    while (p.offset < p.chunk.length) {
      if (this.sendWindow === 0) {
        this.emit('window-exhausted');
        return; // the peer's next window update calls pump()
      }
      if (this.host.congested) {
        // One wake-up is enough however many window updates arrive meanwhile.
        if (!this.awaitingDrain) {
          this.awaitingDrain = true;
          this.host.whenDrained(() => {
            this.awaitingDrain = false;
            this.pump();
          });
        }
        return;
      }
      const n = Math.min(this.sendWindow, this.host.maxFrame, p.chunk.length - p.offset);
      this.host.writeFrame(FrameType.Data, 0, this.id, n, p.chunk.subarray(p.offset, p.offset + n));
      this.sendWindow -= n;
      p.offset += n;
    }
    this.pendingWrite = undefined;
    p.cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.localFin = true;
    this.host.writeFrame(FrameType.WindowUpdate, FIN, this.id, 0);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const p = this.pendingWrite;
    this.pendingWrite = undefined;
    if (!this.wasReset) {
      // Closing before both directions finished: tell the peer to stop, as TCP does with unread data.
      if (!this.remoteFin) this.host.writeFrame(FrameType.WindowUpdate, RST, this.id, 0);
      else if (!this.localFin) this.host.writeFrame(FrameType.WindowUpdate, FIN, this.id, 0);
    }
    this.host.forget(this);
    p?.cb(err ?? resetError(`yamux stream ${this.id} closed with a write pending`));
    cb(err);
  }
}
