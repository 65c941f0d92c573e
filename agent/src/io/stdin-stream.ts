import type net from 'node:net';
import { Cancelled, FailedPrecondition } from '../errors.js';

/**
 * The agent's side of a process's stdin (a pipe's write end, or a dup of the pty master). A write
 * resolves once the kernel took every byte, so a process that does not read blocks WriteStdin as
 * it blocks a kata agent's write(); the host's cancel frees the call.
 */
export class StdinStream {
  private closed = false;
  private failure: NodeJS.ErrnoException | undefined;

  constructor(private readonly sink: net.Socket) {
    sink.on('error', (err: NodeJS.ErrnoException) => {
      this.failure = err;
    });
  }

  write(data: Uint8Array, signal: AbortSignal): Promise<number> {
    if (this.failure) return Promise.reject(writeError(this.failure));
    if (this.closed) return Promise.reject(new FailedPrecondition('stdin is closed'));
    if (data.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(new Cancelled('write cancelled: the caller went away'));
        return;
      }
      // Bytes already handed to the socket cannot be taken back: on cancel they are still delivered
      // in order; only the answer is dropped.
      const onAbort = () => reject(new Cancelled('write cancelled: the caller went away'));
      signal.addEventListener('abort', onAbort, { once: true });
      this.sink.write(data, (err) => {
        signal.removeEventListener('abort', onAbort);
        if (!err) resolve(data.length);
        else if (this.closed && !this.failure) reject(new FailedPrecondition('stdin is closed'));
        else reject(writeError(this.failure ?? err));
      });
    });
  }

  /** Flushes what is queued, then closes the fd so a pipe reader sees end of file. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // end() flushes pending writes first; the socket is write-only, so it then destroys itself and
    // closes the fd. destroy() after 'finish' covers handles whose shutdown() fails (pipes, ttys).
    this.sink.end(() => this.sink.destroy());
  }

  /** Closes the fd now, dropping anything not yet written (the process is gone). */
  dispose(): void {
    this.closed = true;
    this.sink.destroy();
  }
}

function writeError(err: NodeJS.ErrnoException): Error {
  const code = err.code;
  if (code === 'EPIPE' || code === 'EIO') return new FailedPrecondition(`stdin is closed by the process (${code})`);
  return new Error(`writing stdin: ${err.message}`, { cause: err });
}
