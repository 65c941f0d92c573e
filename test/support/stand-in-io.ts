// Pipe-only stdio and its RPCs, used by the container tests only until the io branch (the real
// agent/src/io/, with ptys) is merged.
import fs from 'node:fs';
import type net from 'node:net';
import type { AgentHandlers } from '../../agent/src/rpc/service.js';
import { Code, RpcError } from '../../agent/src/rpc/status.js';
import { O_CLOEXEC, type Libc } from '../../agent/src/linux/libc.js';
import { socketFromFd } from '../../agent/src/transport/uv-handle.js';
import type { ProcessIO } from '../../agent/src/process/io-contract.js';

class Reader {
  private chunks: Buffer[] = [];
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(private readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.wake?.();
    });
    sock.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    sock.on('error', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  async read(len: number): Promise<Uint8Array | null> {
    while (this.chunks.length === 0 && !this.ended) await new Promise<void>((r) => (this.wake = r));
    if (this.chunks.length === 0) return null;
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > len ? [all.subarray(len)] : [];
    return all.subarray(0, len);
  }

  destroy(): void {
    this.sock.destroy();
  }
}

export function createStandInIO(opts: { terminal: boolean; pipeSize: number; libc: Libc }): ProcessIO {
  if (opts.terminal) throw new RpcError(Code.UNIMPLEMENTED, 'terminal stdio needs the io module');
  const { libc } = opts;
  const [inR, inW] = libc.pipe2(O_CLOEXEC);
  const [outR, outW] = libc.pipe2(O_CLOEXEC);
  const [errR, errW] = libc.pipe2(O_CLOEXEC);
  // A write-only pipe end cannot be a (reading) net.Socket; plain fs writes do for a stand-in.
  let stdinFd: number | undefined = inW;
  const closeStdinFd = () => {
    if (stdinFd !== undefined) libc.close(stdinFd);
    stdinFd = undefined;
  };
  const readers = { stdout: new Reader(socketFromFd(outR)), stderr: new Reader(socketFromFd(errR)) };
  let childOpen = true;
  return {
    childFds: [inR, outW, errW],
    terminal: false,
    closeChildEnds() {
      if (!childOpen) return;
      childOpen = false;
      for (const fd of [inR, outW, errW]) libc.close(fd);
    },
    read: (stream, len) => readers[stream].read(len),
    write: (data) =>
      new Promise((resolve, reject) => {
        if (stdinFd === undefined) return reject(new RpcError(Code.FAILED_PRECONDITION, 'stdin is closed'));
        fs.write(stdinFd, data, (err, n) => (err ? reject(err) : resolve(n)));
      }),
    closeStdin: closeStdinFd,
    resize() {
      throw new RpcError(Code.UNAVAILABLE, 'no tty');
    },
    dispose() {
      this.closeChildEnds();
      closeStdinFd();
      readers.stdout.destroy();
      readers.stderr.destroy();
    },
  };
}

export function standInIoHandlers(lookup: (c: string, e: string) => ProcessIO): AgentHandlers {
  return {
    async readStdout(req, ctx) {
      const d = await lookup(req.containerId, req.execId).read('stdout', req.len, ctx.signal);
      return d === null ? ctx.dialect.endOfStream() : { data: d };
    },
    async readStderr(req, ctx) {
      const d = await lookup(req.containerId, req.execId).read('stderr', req.len, ctx.signal);
      return d === null ? ctx.dialect.endOfStream() : { data: d };
    },
    async writeStdin(req, ctx) {
      const io = lookup(req.containerId, req.execId);
      if (req.data.length === 0) {
        io.closeStdin();
        return { len: 0 };
      }
      return { len: await io.write(req.data, ctx.signal) };
    },
    closeStdin(req) {
      lookup(req.containerId, req.execId).closeStdin();
      return {};
    },
    ttyWinResize(req) {
      lookup(req.containerId, req.execId).resize(req.row, req.column);
      return {};
    },
  };
}
