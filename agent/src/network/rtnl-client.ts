// One NETLINK_ROUTE socket and the request/reply exchange on it: sequence numbers, ACKs, multipart
// dumps and NLMSG_ERROR turned into an error that names the errno and what was asked.
//
// Calls are synchronous. rtnetlink handles a request in the sender's own sendto() (under the rtnl
// lock), so the reply is queued before sendto returns; only a dump's later parts are made on recv().
// A poll() with a bound before each recv keeps a kernel that never answers from hanging the agent.
import { errnoName, errnoText } from '../linux/errno.js';
import { AF_NETLINK, NETLINK_EXT_ACK, NETLINK_ROUTE, POLLIN, SOCK_CLOEXEC, SOCK_RAW, SOL_NETLINK, type Libc } from '../linux/libc.js';
import {
  decodeError,
  decodeMessages,
  encodeMessage,
  msgTypeName,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  type Attr,
  type NlMessage,
} from './rtnl-codec.js';

const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
/** The kernel sizes dump datagrams to at most 32 KiB (or a page, when larger). */
const RECV_BUF = 64 * 1024;
/** How long one recv may wait for the kernel; it normally has answered before sendto returned. */
const REPLY_WAIT_MS = 2000;
/** A dump the kernel interrupted because the table changed meanwhile is asked again this many times. */
const DUMP_RETRIES = 3;

/**
 * An NLMSG_ERROR answer. `code` is the errno name (as SyscallError's), so toRpcError maps EEXIST,
 * ENOENT, EINVAL... the same way; the message says what was asked: "RTM_NEWADDR 192.0.2.10/24 on
 * eth0: EEXIST (File exists)".
 */
export class NetlinkError extends Error {
  readonly code: string;
  constructor(
    readonly what: string,
    readonly errno: number,
    readonly kernelMessage?: string,
  ) {
    super(`${what}: ${errnoName(errno)} (${errnoText(errno)})${kernelMessage ? `: ${kernelMessage}` : ''}`);
    this.name = 'NetlinkError';
    this.code = errnoName(errno);
  }
}

export class RtnlClient {
  private fd: number | undefined;
  private seq = Math.floor(Date.now() / 1000) >>> 0;
  private readonly buf = Buffer.alloc(RECV_BUF);

  constructor(private readonly libc: Libc) {}

  /** The socket, opened on first use (an agent that never configures the network never opens one). */
  private socket(): number {
    if (this.fd !== undefined) return this.fd;
    const fd = this.libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    try {
      this.libc.bindNetlink(fd, 0, 0);
      try {
        this.libc.setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      } catch {
        // Older kernels have no extended ACKs: errors then carry the errno alone.
      }
    } catch (err) {
      this.libc.close(fd);
      throw err;
    }
    this.fd = fd;
    return fd;
  }

  close(): void {
    if (this.fd !== undefined) this.libc.close(this.fd);
    this.fd = undefined;
  }

  /** A change (RTM_NEW*, RTM_DEL*, RTM_SETLINK) acknowledged by the kernel; throws NetlinkError on refusal. */
  change(type: number, flags: number, body: Buffer, attrs: readonly Attr[], what: string): void {
    this.exchange(type, NLM_F_REQUEST | NLM_F_ACK | flags, body, attrs, what, false);
  }

  /** Every object of a dump (RTM_GET* with NLM_F_DUMP), across all its datagrams. */
  dump(type: number, body: Buffer, what = `${msgTypeName(type)} dump`): NlMessage[] {
    for (let attempt = 0; ; attempt++) {
      try {
        return this.exchange(type, NLM_F_REQUEST | NLM_F_DUMP, body, [], what, true);
      } catch (err) {
        if (!(err instanceof DumpInterrupted) || attempt + 1 >= DUMP_RETRIES)
          throw err instanceof DumpInterrupted ? new Error(`${what}: interrupted ${DUMP_RETRIES} times by concurrent changes`) : err;
      }
    }
  }

  private exchange(type: number, flags: number, body: Buffer, attrs: readonly Attr[], what: string, multi: boolean): NlMessage[] {
    const fd = this.socket();
    const seq = (this.seq = (this.seq + 1) >>> 0);
    this.libc.sendNetlink(fd, encodeMessage({ type, flags, seq, pid: 0 }, body, attrs), 0);
    const out: NlMessage[] = [];
    let interrupted = false;
    for (;;) {
      for (const m of this.receive(fd, what)) {
        // Replies to an earlier request that gave up (its error was already reported) are skipped.
        if (m.seq !== seq) continue;
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          if (e.errno === 0 && !multi) return out;
          if (e.errno !== 0) throw new NetlinkError(what, e.errno, e.message);
          continue;
        }
        if (m.type === NLMSG_DONE) {
          if (interrupted) throw new DumpInterrupted();
          return out;
        }
        if (m.type === NLMSG_NOOP) continue;
        if (m.type === NLMSG_OVERRUN) throw new Error(`${what}: netlink overrun (NLMSG_OVERRUN)`);
        out.push({ ...m, payload: Buffer.from(m.payload) });
        // A reply that is not part of a dump is complete in itself (an ACK may still follow).
        if (!multi && !(flags & NLM_F_ACK)) return out;
      }
    }
  }

  private receive(fd: number, what: string): NlMessage[] {
    const ready = this.libc.poll(fd, POLLIN, REPLY_WAIT_MS);
    if (!(ready & POLLIN)) throw new Error(`${what}: no netlink reply within ${REPLY_WAIT_MS} ms`);
    const n = this.libc.recv(fd, this.buf, MSG_DONTWAIT | MSG_TRUNC);
    if (n > this.buf.length) throw new Error(`${what}: netlink datagram of ${n} bytes truncated to ${this.buf.length}`);
    return decodeMessages(this.buf.subarray(0, n));
  }
}

class DumpInterrupted extends Error {}
