// Node's net module refuses fds it did not create when they are AF_VSOCK sockets or character
// devices (ERR_INVALID_FD_TYPE), but libuv's pipe handle accepts any stream fd and is as fast as
// Node's own sockets (docs/facts/platform.md). process.binding is deprecated, so its use is kept
// to this one module.
import type * as Net from 'node:net';
import { errnoName } from './errno.js';

interface PipeHandle {
  open(fd: number): number;
  listen(backlog: number): number;
  close(cb?: () => void): void;
  onconnection: ((status: number, client?: unknown) => void) | null;
}

export interface PipeWrap {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number };
}

/**
 * The parts of the binding this module relies on, checked once: a Node that drops or reshapes
 * pipe_wrap then fails at load with a message that says so, not with a TypeError at the first vsock
 * connection or container start.
 */
export function checkPipeWrap(binding: unknown): PipeWrap {
  const b = binding as Partial<PipeWrap> | undefined;
  const problems: string[] = [];
  if (typeof b?.Pipe !== 'function') problems.push('no Pipe constructor');
  else
    for (const m of ['open', 'listen', 'close', 'readStart'] as const)
      if (typeof (b.Pipe.prototype as Record<string, unknown>)[m] !== 'function') problems.push(`no Pipe.prototype.${m}()`);
  if (typeof b?.constants?.SOCKET !== 'number') problems.push('no constants.SOCKET');
  if (problems.length > 0)
    throw new Error(
      `process.binding('pipe_wrap') of Node ${process.version} is not what linux/uv-handle.ts needs (${problems.join(', ')}): fds can no longer be wrapped as sockets`,
    );
  return b as PipeWrap;
}

function loadPipeWrap(): PipeWrap {
  let binding: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- process.binding is not in @types/node's Process type
    binding = (process as any).binding('pipe_wrap');
  } catch (err) {
    throw new Error(`process.binding('pipe_wrap') is gone in Node ${process.version} (${(err as Error).message}): fds can no longer be wrapped as sockets`, {
      cause: err,
    });
  }
  return checkPipeWrap(binding);
}

const pipeWrap = loadPipeWrap();

// node:net, with the ~20 stream modules it loads, is needed once there is a connection, not to
// listen: an agent that listens on vsock loads it after it listens (~35 ms of a boot under TCG).
let netModule: typeof Net | undefined;
export function net(): typeof Net {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- node:net loads only when a socket is first wrapped
  return (netModule ??= require('node:net') as typeof Net);
}

export interface FdSocketOptions {
  /** false for a write-only fd (a pipe's write end): nothing is read from it. Default true. */
  readable?: boolean;
  /** false for a read-only fd. Default true. */
  writable?: boolean;
  /** Keep the writable side open after the readable side ended. Default false. */
  allowHalfOpen?: boolean;
}

/**
 * Wraps a connected stream fd (socket, pipe end or char device such as a pty master) as a
 * net.Socket. The socket owns the fd and makes it non-blocking.
 */
export function socketFromFd(fd: number, opts: FdSocketOptions = {}): Net.Socket {
  const handle = new pipeWrap.Pipe(pipeWrap.constants.SOCKET);
  const r = handle.open(fd);
  if (r < 0) throw new Error(`uv_pipe_open(fd=${fd}): ${errnoName(-r)}`);
  return new (net().Socket)({
    handle,
    readable: opts.readable ?? true,
    writable: opts.writable ?? true,
    allowHalfOpen: opts.allowHalfOpen ?? false,
  } as Net.SocketConstructorOpts);
}

export interface FdServer {
  close(): Promise<void>;
}

/** Accepts connections on an already bound stream-socket fd; each arrives as a net.Socket. */
export function acceptOnFd(fd: number, backlog: number, onConnection: (sock: Net.Socket) => void, onError: (err: Error) => void): FdServer {
  const handle = new pipeWrap.Pipe(pipeWrap.constants.SOCKET);
  let r = handle.open(fd);
  if (r < 0) throw new Error(`uv_pipe_open(fd=${fd}): ${errnoName(-r)}`);
  handle.onconnection = (status, client) => {
    if (status < 0 || !client) {
      onError(new Error(`accept on fd ${fd}: ${errnoName(-status)}`));
      return;
    }
    onConnection(new (net().Socket)({ handle: client, readable: true, writable: true } as Net.SocketConstructorOpts));
  };
  r = handle.listen(backlog);
  if (r < 0) {
    handle.close();
    throw new Error(`listen(fd=${fd}): ${errnoName(-r)}`);
  }
  return { close: () => new Promise<void>((resolve) => handle.close(resolve)) };
}
