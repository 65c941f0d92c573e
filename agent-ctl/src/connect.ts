import net from 'node:net';
import type { Duplex } from 'node:stream';
import { libc } from '../../agent/src/linux/index.js';
import { AF_VSOCK, SOCK_CLOEXEC, SOCK_STREAM } from '../../agent/src/linux/libc.js';
import { parseAddress } from '../../agent/src/transport/address.js';
import { socketFromFd } from '../../agent/src/transport/uv-handle.js';
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

/** Opens a byte stream to the agent at a kata server address. */
export function connect(address: string, timeoutMs: number): Promise<Duplex> {
  if (address.startsWith('yamux://')) return connectYamux(address, timeoutMs);
  const a = parseAddress(address);
  if (a.kind === 'serial') {
    return Promise.reject(new Error(`${address} is the guest's end of the channel; from the host use yamux:///path/to/the/chardev/socket`));
  }
  if (a.kind === 'vsock') {
    const fd = libc().socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    try {
      libc().connectVsock(fd, a.cid, a.port);
    } catch (err) {
      libc().close(fd);
      return Promise.reject(err);
    }
    return Promise.resolve(socketFromFd(fd));
  }
  return new Promise((resolve, reject) => {
    const sock = net.connect(a.abstract ? `\0${a.path}` : a.path);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connect ${address}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`connect ${address}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
  });
}
