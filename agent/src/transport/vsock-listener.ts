import type { Duplex } from 'node:stream';
import { ConfigError } from '../config/errors.js';
import { AF_VSOCK, SOCK_CLOEXEC, SOCK_STREAM, type Libc } from '../linux/libc.js';
import { formatAddress } from './address.js';
import type { Listener } from './listener.js';
import { acceptOnFd, net, type FdServer } from '../linux/uv-handle.js';

export class VsockListener implements Listener {
  private server?: FdServer;
  readonly address: string;

  constructor(
    private readonly libc: Libc,
    private readonly cid: number,
    private readonly port: number,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {
    this.address = formatAddress({ kind: 'vsock', cid, port });
  }

  async listen(onConnection: (conn: Duplex) => void): Promise<void> {
    let fd = -1;
    try {
      fd = this.libc.socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
      this.libc.bindVsock(fd, this.cid, this.port);
      this.server = acceptOnFd(fd, 128, onConnection, this.onError);
      // Every connection needs node:net: load it now that connections can queue, not on the first one.
      setImmediate(net);
    } catch (err) {
      if (fd >= 0) this.libc.close(fd);
      const hint = (err as { code?: string }).code === 'EAFNOSUPPORT' ? ' (no vsock in this kernel: load vsock/vmw_vsock_virtio_transport)' : '';
      throw new ConfigError(`cannot listen on ${this.address}: ${(err as Error).message}${hint}`);
    }
  }

  async close(): Promise<void> {
    await this.server?.close();
    this.server = undefined;
  }
}
