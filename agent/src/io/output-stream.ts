import type net from 'node:net';
import { Cancelled } from '../errors.js';

/** Most bytes one read hands out, whatever `len` the host asked for: keeps every reply far below frame limits. */
export const MAX_READ = 1 << 20;

export interface OutputStreamOptions {
  /**
   * Bytes kept in the agent before it stops reading the fd. Past this the pipe (or pty) fills and
   * the writer blocks: a chatty process is throttled to the host's pace and nothing is dropped.
   */
  highWater: number;
  /** A pty master reports EIO once every slave fd is closed: for it that is end of stream, not a failure. */
  eioIsEnd: boolean;
  /**
   * Called once when the source reports its end, to collect bytes the source itself missed (see
   * ptyDrain). Returned chunks are delivered before end of stream.
   */
  drainAtEnd?: () => Buffer[];
}

/**
 * The agent's side of one output stream (a pipe's read end or a pty master). Bytes are queued as
 * they arrive so ReadStdout/ReadStderr can answer "what is there, up to len" at once, and block
 * only while nothing is. End of stream is reported only once the writers are gone *and* the queue
 * is drained, so output of a process that already exited is delivered in full.
 */
export class OutputStream {
  private readonly chunks: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private disposed = false;
  private failure: Error | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly source: net.Socket,
    private readonly opts: OutputStreamOptions,
  ) {
    source.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.queued += chunk.length;
      if (this.queued >= opts.highWater) source.pause();
      this.wake();
    });
    source.on('end', () => this.finish());
    source.on('close', () => this.finish());
    source.on('error', (err: NodeJS.ErrnoException) => {
      if (!(opts.eioIsEnd && err.code === 'EIO')) this.failure = err;
      this.finish();
    });
  }

  /** Bytes waiting to be read by the host. */
  get pending(): number {
    return this.queued;
  }

  /**
   * Up to `len` bytes, waiting while none are queued; null once every writer closed and all was
   * read. An aborted wait takes nothing from the queue, so the next read loses no byte.
   */
  async read(len: number, signal: AbortSignal): Promise<Uint8Array | null> {
    for (;;) {
      if (this.queued > 0) return this.take(Math.min(len, MAX_READ));
      if (this.failure) throw new Error(`reading process output: ${this.failure.message}`, { cause: this.failure });
      if (this.ended) return null;
      await this.changed(signal);
    }
  }

  /**
   * Puts bytes a read handed out back at the front of the queue: the answer that carried them was
   * not delivered (the host disconnected or cancelled before it was written). The host reads a
   * stream one call at a time, so what comes back is always the oldest output and goes first. It
   * may push the queue past the high-water mark for a moment; the source stays paused until the
   * host has read it back down.
   */
  unread(data: Uint8Array): void {
    if (this.disposed || data.length === 0) return;
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.chunks.unshift(buf);
    this.queued += buf.length;
    if (this.queued >= this.opts.highWater && !this.ended) this.source.pause();
    this.wake();
  }

  /** Stops reading, closes the fd and ends every waiting read with end of stream. */
  dispose(): void {
    this.disposed = true;
    this.chunks.length = 0;
    this.queued = 0;
    this.source.destroy();
    this.finish();
  }

  private take(len: number): Uint8Array {
    // Whole chunks while they fit, then the head of the next one; one chunk is handed out uncopied.
    const parts: Buffer[] = [];
    let size = 0;
    while (this.chunks.length > 0 && size < len) {
      const c = this.chunks[0];
      if (size + c.length <= len) {
        parts.push(c);
        size += c.length;
        this.chunks.shift();
      } else {
        parts.push(c.subarray(0, len - size));
        this.chunks[0] = c.subarray(len - size);
        size = len;
      }
    }
    this.queued -= size;
    // Resume only at half the mark: resuming on every read below it would stop and restart the fd
    // watch for each chunk while the host keeps up (a third of the throughput, measured).
    if (this.queued <= this.opts.highWater / 2 && this.source.isPaused() && !this.ended) this.source.resume();
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.opts.drainAtEnd && !this.disposed) {
      try {
        for (const c of this.opts.drainAtEnd()) {
          this.chunks.push(c);
          this.queued += c.length;
        }
      } catch (err) {
        this.failure ??= err as Error;
      }
    }
    this.wake();
  }

  private wake(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  private changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(cancelled());
        return;
      }
      const onAbort = () => {
        this.waiters.delete(done);
        reject(cancelled());
      };
      const done = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function cancelled(): Cancelled {
  return new Cancelled('read cancelled: the caller went away');
}
