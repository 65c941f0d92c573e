import { F_DUPFD_CLOEXEC, type Libc } from '../linux/libc.js';
import { InvalidArgument, NotFound, Unavailable } from '../errors.js';
import { socketFromFd } from '../linux/uv-handle.js';
import { OutputStream } from './output-stream.js';
import { openPipe, type Pipe } from './pipes.js';
import { ptyDrain } from './pty-drain.js';
import { StdinStream } from './stdin-stream.js';

export type OutputName = 'stdout' | 'stderr';

/** The stdio of one container process, as the stdio RPCs see it. */
export interface ProcessIO {
  /**
   * fds the child gets as 0,1,2 (pipe ends); pass them to the spawned helper. null for a terminal:
   * the helper opens the pty itself, inside the container, and hands the master over (attachPty).
   */
  readonly childFds: [number, number, number] | null;
  readonly terminal: boolean;
  /** Close the agent's copies of the child ends once the child is spawned. */
  closeChildEnds(): void;
  /**
   * A terminal only: takes `master` (a pty master the agent received, close-on-exec) as the process's
   * stdio. The fd is owned from then on, and closed here if this fails.
   */
  attachPty(master: number): void;
  /** Up to `len` bytes, waiting while none are available; `null` = end of stream (every writer closed). */
  read(stream: OutputName, len: number, signal: AbortSignal): Promise<Uint8Array | null>;
  /**
   * Puts bytes a read returned back at the front of their stream, for the next read: the answer
   * that carried them never reached the host. Ignored once the stdio is released.
   */
  unread(stream: OutputName, data: Uint8Array): void;
  write(data: Uint8Array, signal: AbortSignal): Promise<number>;
  closeStdin(): void;
  resize(rows: number, cols: number): void; // throws Unavailable "no tty" when !terminal
  /** Releases every fd (after WaitProcess). */
  dispose(): void;
}

export interface ProcessIOOptions {
  terminal: boolean;
  /** F_SETPIPE_SZ for the output pipes (agent.container_pipe_size); 0 keeps the kernel default. */
  pipeSize: number;
  libc: Libc;
  /** Bytes queued per output stream before the agent stops reading it (default 256 KiB). */
  highWater?: number;
}

/** How the container domain gets a process's stdio (a seam: its tests pass a double). */
export type CreateProcessIO = (opts: ProcessIOOptions) => ProcessIO;

// Small on purpose: it is per stream and the guest's memory is the pod's. 1 MiB read no faster
// than 256 KiB for 100 MB at 32 KiB per read (bench/stdio-throughput.bench.ts, within noise).
const DEFAULT_HIGH_WATER = 256 * 1024;

export function createProcessIO(opts: ProcessIOOptions): ProcessIO {
  return opts.terminal ? createPtyIO(opts) : createPipeIO(opts);
}

/** Closes each fd once, so a failed setup and a later dispose never close a reused number. */
function closeAll(libc: Libc, fds: number[]): void {
  for (const fd of fds) {
    try {
      libc.close(fd);
    } catch {
      // Already closed by its owner; nothing left to release.
    }
  }
}

function released(): NotFound {
  return new NotFound('process stdio already released');
}

abstract class BaseIO implements ProcessIO {
  abstract readonly childFds: [number, number, number] | null;
  abstract readonly terminal: boolean;
  protected disposed = false;
  private childEndsOpen = true;

  constructor(
    protected readonly libc: Libc,
    protected stdin: StdinStream | undefined,
    protected outputs: Record<OutputName, OutputStream | undefined>,
  ) {}

  protected abstract childEnds(): number[];

  abstract attachPty(master: number): void;

  /** The stdin stream; a terminal has none until its master is attached. */
  private input(): StdinStream {
    if (!this.stdin) throw new Unavailable('the terminal of the process is not open yet');
    return this.stdin;
  }

  closeChildEnds(): void {
    if (!this.childEndsOpen) return;
    this.childEndsOpen = false;
    closeAll(this.libc, this.childEnds());
  }

  async read(stream: OutputName, len: number, signal: AbortSignal): Promise<Uint8Array | null> {
    if (this.disposed) throw released();
    const out = this.outputs[stream];
    return out ? out.read(len, signal) : null;
  }

  unread(stream: OutputName, data: Uint8Array): void {
    if (this.disposed) return;
    this.outputs[stream]?.unread(data);
  }

  write(data: Uint8Array, signal: AbortSignal): Promise<number> {
    if (this.disposed) return Promise.reject(released());
    try {
      return this.input().write(data, signal);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  closeStdin(): void {
    if (this.disposed) throw released();
    this.input().close();
  }

  abstract resize(rows: number, cols: number): void;

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.closeChildEnds();
    this.stdin?.dispose();
    this.outputs.stdout?.dispose();
    this.outputs.stderr?.dispose();
  }
}

class PipeIO extends BaseIO {
  readonly terminal = false;
  readonly childFds: [number, number, number];

  constructor(libc: Libc, highWater: number, pipes: [Pipe, Pipe, Pipe]) {
    const [inp, out, err] = pipes;
    const output = (fd: number) => new OutputStream(socketFromFd(fd, { writable: false }), { highWater, eioIsEnd: false });
    super(libc, new StdinStream(socketFromFd(inp.write, { readable: false })), { stdout: output(out.read), stderr: output(err.read) });
    this.childFds = [inp.read, out.write, err.write];
  }

  protected childEnds(): number[] {
    return [...this.childFds];
  }

  attachPty(master: number): void {
    closeAll(this.libc, [master]);
    throw new Error('a pty master was handed to a process without a terminal');
  }

  resize(): void {
    if (this.disposed) throw released();
    throw new Unavailable('no tty');
  }
}

function createPipeIO(opts: ProcessIOOptions): ProcessIO {
  const { libc } = opts;
  const opened: Pipe[] = [];
  try {
    // Only output pipes are resized, as kata does: a larger stdin pipe would just hide a process
    // that does not read.
    opened.push(openPipe(libc, 0));
    opened.push(openPipe(libc, opts.pipeSize));
    opened.push(openPipe(libc, opts.pipeSize));
    return new PipeIO(libc, opts.highWater ?? DEFAULT_HIGH_WATER, opened as [Pipe, Pipe, Pipe]);
  } catch (err) {
    closeAll(
      libc,
      opened.flatMap((p) => [p.read, p.write]),
    );
    throw err;
  }
}

class PtyIO extends BaseIO {
  readonly terminal = true;
  readonly childFds = null;
  private master = -1;

  constructor(
    libc: Libc,
    private readonly highWater: number,
  ) {
    super(libc, undefined, { stdout: undefined, stderr: undefined });
  }

  protected childEnds(): number[] {
    return [];
  }

  /**
   * One master, three fds: reading and writing are separate libuv streams so a failed write (or
   * CloseStdin) never tears down the output side, and `master` itself stays with us for
   * TIOCSWINSZ and the final drain, since a stream closes its fd at end of stream and the number
   * may then be reused.
   * A pty has no separate stderr.
   */
  attachPty(master: number): void {
    if (this.disposed || this.master >= 0) {
      closeAll(this.libc, [master]);
      throw this.disposed ? released() : new Error('the process already has its terminal');
    }
    const dups: number[] = [];
    try {
      dups.push(this.libc.fcntl(master, F_DUPFD_CLOEXEC, 0));
      dups.push(this.libc.fcntl(master, F_DUPFD_CLOEXEC, 0));
    } catch (err) {
      closeAll(this.libc, [master, ...dups]);
      throw err;
    }
    const libc = this.libc;
    this.master = master;
    this.stdin = new StdinStream(socketFromFd(dups[1], { readable: false }));
    this.outputs = {
      stdout: new OutputStream(socketFromFd(dups[0], { writable: false }), {
        highWater: this.highWater,
        eioIsEnd: true,
        drainAtEnd: () => ptyDrain(libc, master),
      }),
      stderr: undefined,
    };
  }

  override async read(stream: OutputName, len: number, signal: AbortSignal): Promise<Uint8Array | null> {
    if (!this.disposed && this.master < 0) throw new Unavailable('the terminal of the process is not open yet');
    return super.read(stream, len, signal);
  }

  resize(rows: number, cols: number): void {
    if (this.disposed) throw released();
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0 || rows > 0xffff || cols > 0xffff) {
      throw new InvalidArgument(`window size ${rows}x${cols} does not fit a terminal (0..65535)`);
    }
    if (this.master < 0) throw new Unavailable('the terminal of the process is not open yet');
    this.libc.setWinsize(this.master, { rows, cols });
  }

  override dispose(): void {
    if (this.disposed) return;
    super.dispose();
    if (this.master >= 0) closeAll(this.libc, [this.master]);
  }
}

/**
 * A terminal's IO starts without a pty: the container-init helper opens it from the container's own
 * devpts (so ttyname() works inside) and the agent attaches the master it receives.
 */
function createPtyIO(opts: ProcessIOOptions): ProcessIO {
  return new PtyIO(opts.libc, opts.highWater ?? DEFAULT_HIGH_WATER);
}
