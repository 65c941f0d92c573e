import net from 'node:net';
import type { Duplex } from 'node:stream';
import { libc } from '../../agent/src/linux/index.js';
import { AF_VSOCK, SOCK_CLOEXEC, SOCK_STREAM } from '../../agent/src/linux/libc.js';
import { parseAddress } from '../../agent/src/transport/address.js';
import { socketFromFd } from '../../agent/src/transport/uv-handle.js';

/** Opens a byte stream to the agent at a kata server address. */
export function connect(address: string, timeoutMs: number): Promise<Duplex> {
  const a = parseAddress(address);
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
