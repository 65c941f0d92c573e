import net from 'node:net';
import type { Duplex } from 'node:stream';
import { libc } from '../../agent/src/linux/index.js';
import { AF_VSOCK, SOCK_CLOEXEC, SOCK_STREAM } from '../../agent/src/linux/libc.js';
import { parseAddress } from '../../agent/src/transport/address.js';
import { socketFromFd } from '../../agent/src/linux/uv-handle.js';
import { connectYamuxUnix } from '../../agent/src/transport/yamux/client.js';

/**
 * `yamux:///path`: the host end of a kata 1.x virtio-serial channel (QEMU's `-chardev socket`
 * behind the guest's agent.channel.0), where each connection is a yamux stream. The session lives
 * as long as the one stream we open.
 */
async function connectYamux(address: string, timeoutMs: number): Promise<Duplex> {
  const p = address.slice('yamux://'.length);
  if (!p.startsWith('/')) throw new Error(`server address "${address}" is not yamux:///absolute/path/to/chardev.sock`);
  const client = await connectYamuxUnix(p, timeoutMs);
  const stream = client.open();
  stream.once('close', () => client.close());
  return stream;
}

export interface ConnectOptions {
  timeoutMs: number;
  /**
   * Hybrid vsock (Firecracker, Cloud Hypervisor): the address is the VMM's unix socket, and the
   * guest port is asked for with a `CONNECT <port>\n` line before the stream becomes the agent's.
   */
  hybridVsockPort?: number;
}

/** Longest reply line a VMM may send to CONNECT ("OK <host port>\n" in practice). */
const MAX_HANDSHAKE_LINE = 512;

/** Opens a byte stream to the agent at a kata server address (a number is the timeout in ms). */
export async function connect(address: string, options: ConnectOptions | number): Promise<Duplex> {
  const opts = typeof options === 'number' ? { timeoutMs: options } : options;
  if (address.startsWith('yamux://')) return connectYamux(address, opts.timeoutMs);
  const a = parseAddress(address);
  if (a.kind === 'serial') {
    return Promise.reject(new Error(`${address} is the guest's end of the channel; from the host use yamux:///path/to/the/chardev/socket`));
  }
  if (a.kind === 'vsock') {
    if (opts.hybridVsockPort !== undefined) throw new Error(`--hybrid-vsock needs a unix:// address (the VMM's socket), not ${address}`);
    const fd = libc().socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    try {
      libc().connectVsock(fd, a.cid, a.port);
    } catch (err) {
      libc().close(fd);
      throw err;
    }
    return socketFromFd(fd);
  }
  const sock = await connectUnix(address, a.abstract ? `\0${a.path}` : a.path, opts.timeoutMs);
  if (opts.hybridVsockPort === undefined) return sock;
  try {
    await hybridHandshake(sock, opts.hybridVsockPort, opts.timeoutMs);
  } catch (err) {
    sock.destroy();
    throw new Error(`hybrid vsock ${address} port ${opts.hybridVsockPort}: ${(err as Error).message}`, { cause: err });
  }
  return sock;
}

function connectUnix(address: string, path: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connect ${address}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`connect ${address}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
  });
}

/**
 * Writes `CONNECT <port>\n` and waits for one reply line containing "OK", as kata hosts do with
 * Firecracker and Cloud Hypervisor. Bytes after the line already belong to the agent and are put back.
 */
export function hybridHandshake(sock: net.Socket, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got: Buffer = Buffer.alloc(0);
    const done = (err?: Error) => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      if (err) return reject(err);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      const nl = got.indexOf(0x0a);
      if (nl < 0) {
        if (got.length > MAX_HANDSHAKE_LINE) done(new Error(`no end of line in the first ${got.length} bytes of the VMM's reply`));
        return;
      }
      const line = got.subarray(0, nl).toString('latin1');
      if (!line.includes('OK')) return done(new Error(`VMM refused: "${line.trim()}"`));
      sock.pause();
      if (got.length > nl + 1) sock.unshift(got.subarray(nl + 1));
      done();
    };
    const onEnd = () => done(new Error('VMM closed the connection before answering CONNECT (is the guest listening on that port?)'));
    const onError = (err: Error) => done(new Error(`connection error during CONNECT: ${err.message}`));
    const timer = setTimeout(() => done(new Error(`no answer to CONNECT within ${timeoutMs} ms`)), timeoutMs);
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', onError);
    sock.write(`CONNECT ${port}\n`);
  });
}
