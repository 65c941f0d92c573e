// Brings up the loopback interface with SIOCGIFFLAGS/SIOCSIFFLAGS, the two ioctls `ip link set lo up`
// ends up as; no netlink library is needed for one flag.
import { AF_INET, IFF_UP, SIOCGIFFLAGS, SIOCSIFFLAGS, SOCK_CLOEXEC, SOCK_DGRAM, type Libc } from '../../agent/src/linux/libc.js';

const IFNAMSIZ = 16;
/** struct ifreq: name[16] then a 24-byte union whose first member here is short ifr_flags. */
const IFREQ_SIZE = 40;

export function setInterfaceUp(libc: Pick<Libc, 'socket' | 'ioctlBuf' | 'close'>, name: string): void {
  if (Buffer.byteLength(name) >= IFNAMSIZ) throw new Error(`interface name "${name}" is longer than ${IFNAMSIZ - 1} bytes`);
  const fd = libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    const req = Buffer.alloc(IFREQ_SIZE);
    req.write(name, 0, 'utf8');
    libc.ioctlBuf(fd, SIOCGIFFLAGS, req);
    req.writeUInt16LE(req.readUInt16LE(IFNAMSIZ) | IFF_UP, IFNAMSIZ);
    libc.ioctlBuf(fd, SIOCSIFFLAGS, req);
  } finally {
    libc.close(fd);
  }
}
