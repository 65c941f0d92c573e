// The rtnetlink wire format: nlmsghdr, the four family headers the pod network needs (ifinfomsg,
// ifaddrmsg, rtmsg, ndmsg), nlmsgerr and rtattr TLVs, all in host byte order.
//
// Our own codec rather than a package: the one netlink package on npm (`netlink`, 0.3.0) is a
// node-gyp addon (node-addon-api + node-gyp-build), so it needs a native build or a prebuilt binary
// for each Node ABI, and it would be a second FFI next to koffi; every other package found is for
// another language. The formats here are small, fixed and documented in linux/netlink.h and
// linux/rtnetlink.h, and the socket itself goes through the libc seam like every other syscall.
import os from 'node:os';

const LE = os.endianness() === 'LE';

export const NLMSG_HDRLEN = 16;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** In an NLMSG_ERROR: the request was not echoed back whole / extended-ack TLVs follow. */
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;
export const NLMSGERR_ATTR_MSG = 1;

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

const typeNames: Record<number, string> = {
  [NLMSG_NOOP]: 'NLMSG_NOOP',
  [NLMSG_ERROR]: 'NLMSG_ERROR',
  [NLMSG_DONE]: 'NLMSG_DONE',
  [NLMSG_OVERRUN]: 'NLMSG_OVERRUN',
  [RTM_NEWLINK]: 'RTM_NEWLINK',
  [RTM_DELLINK]: 'RTM_DELLINK',
  [RTM_GETLINK]: 'RTM_GETLINK',
  [RTM_SETLINK]: 'RTM_SETLINK',
  [RTM_NEWADDR]: 'RTM_NEWADDR',
  [RTM_DELADDR]: 'RTM_DELADDR',
  [RTM_GETADDR]: 'RTM_GETADDR',
  [RTM_NEWROUTE]: 'RTM_NEWROUTE',
  [RTM_DELROUTE]: 'RTM_DELROUTE',
  [RTM_GETROUTE]: 'RTM_GETROUTE',
  [RTM_NEWNEIGH]: 'RTM_NEWNEIGH',
  [RTM_DELNEIGH]: 'RTM_DELNEIGH',
  [RTM_GETNEIGH]: 'RTM_GETNEIGH',
};
export const msgTypeName = (type: number) => typeNames[type] ?? `type ${type}`;

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINKINFO = 18;
export const IFLA_INFO_KIND = 1;
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_FLAGS = 8;
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_METRICS = 8;
export const RTA_TABLE = 15;
export const RTAX_MTU = 2;
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NLA_F_NESTED = 0x8000;

export interface NlHeader {
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

export interface Attr {
  type: number;
  data: Buffer;
}

export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}
export interface IfAddrMsg {
  family: number;
  prefixLen: number;
  flags: number;
  scope: number;
  index: number;
}
export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}
export interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
  type: number;
}

/** One message as read off the socket: its header and the payload after it (family header + attributes). */
export interface NlMessage extends NlHeader {
  payload: Buffer;
}

const align4 = (n: number) => (n + 3) & ~3;

function u16(b: Buffer, off: number): number {
  return LE ? b.readUInt16LE(off) : b.readUInt16BE(off);
}
function u32(b: Buffer, off: number): number {
  return LE ? b.readUInt32LE(off) : b.readUInt32BE(off);
}
function i32(b: Buffer, off: number): number {
  return LE ? b.readInt32LE(off) : b.readInt32BE(off);
}
function put16(b: Buffer, v: number, off: number): void {
  if (LE) b.writeUInt16LE(v, off);
  else b.writeUInt16BE(v, off);
}
function put32(b: Buffer, v: number, off: number): void {
  if (LE) b.writeUInt32LE(v >>> 0, off);
  else b.writeUInt32BE(v >>> 0, off);
}

/** A u32 attribute value in host order (IFLA_MTU, RTA_OIF, RTA_TABLE...). */
export function u32Attr(type: number, v: number): Attr {
  const data = Buffer.alloc(4);
  put32(data, v, 0);
  return { type, data };
}
export const strAttr = (type: number, s: string): Attr => ({ type, data: Buffer.from(`${s}\0`) });
export const nestedAttr = (type: number, inner: Attr[]): Attr => ({ type: type | NLA_F_NESTED, data: encodeAttrs(inner) });

export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const out = Buffer.alloc(attrs.reduce((n, a) => n + align4(4 + a.data.length), 0));
  let off = 0;
  for (const a of attrs) {
    put16(out, 4 + a.data.length, off);
    put16(out, a.type, off + 2);
    a.data.copy(out, off + 4);
    off += align4(4 + a.data.length);
  }
  return out;
}

/** The attributes in `b` from `off`; a length that runs past the buffer is a malformed message. */
export function decodeAttrs(b: Buffer, off = 0): Attr[] {
  const attrs: Attr[] = [];
  while (off + 4 <= b.length) {
    const len = u16(b, off);
    if (len < 4 || off + len > b.length) throw new Error(`malformed rtattr at ${off}: length ${len} of ${b.length - off} bytes left`);
    attrs.push({ type: u16(b, off + 2) & ~NLA_F_NESTED, data: b.subarray(off + 4, off + len) });
    off += align4(len);
  }
  return attrs;
}

export const findAttr = (attrs: readonly Attr[], type: number): Buffer | undefined => attrs.find((a) => a.type === type)?.data;
export const attrU32 = (attrs: readonly Attr[], type: number): number | undefined => {
  const d = findAttr(attrs, type);
  return d && d.length >= 4 ? u32(d, 0) : undefined;
};
/** A NUL-terminated string attribute (IFLA_IFNAME, IFLA_INFO_KIND). */
export const attrStr = (attrs: readonly Attr[], type: number): string | undefined => {
  const d = findAttr(attrs, type);
  if (!d) return undefined;
  const nul = d.indexOf(0);
  return d.toString('utf8', 0, nul < 0 ? d.length : nul);
};

export function encodeIfInfo(m: IfInfoMsg): Buffer {
  const b = Buffer.alloc(16);
  b[0] = m.family;
  put16(b, m.type, 2);
  put32(b, m.index, 4);
  put32(b, m.flags, 8);
  put32(b, m.change, 12);
  return b;
}
export function decodeIfInfo(p: Buffer): IfInfoMsg {
  need(p, 16, 'ifinfomsg');
  return { family: p[0], type: u16(p, 2), index: i32(p, 4), flags: u32(p, 8), change: u32(p, 12) };
}

export function encodeIfAddr(m: IfAddrMsg): Buffer {
  const b = Buffer.alloc(8);
  b[0] = m.family;
  b[1] = m.prefixLen;
  b[2] = m.flags;
  b[3] = m.scope;
  put32(b, m.index, 4);
  return b;
}
export function decodeIfAddr(p: Buffer): IfAddrMsg {
  need(p, 8, 'ifaddrmsg');
  return { family: p[0], prefixLen: p[1], flags: p[2], scope: p[3], index: u32(p, 4) };
}

export function encodeRt(m: RtMsg): Buffer {
  const b = Buffer.alloc(12);
  [m.family, m.dstLen, m.srcLen, m.tos, m.table, m.protocol, m.scope, m.type].forEach((v, i) => (b[i] = v));
  put32(b, m.flags, 8);
  return b;
}
export function decodeRt(p: Buffer): RtMsg {
  need(p, 12, 'rtmsg');
  return { family: p[0], dstLen: p[1], srcLen: p[2], tos: p[3], table: p[4], protocol: p[5], scope: p[6], type: p[7], flags: u32(p, 8) };
}

export function encodeNd(m: NdMsg): Buffer {
  const b = Buffer.alloc(12);
  b[0] = m.family;
  put32(b, m.index, 4);
  put16(b, m.state, 8);
  b[10] = m.flags;
  b[11] = m.type;
  return b;
}
export function decodeNd(p: Buffer): NdMsg {
  need(p, 12, 'ndmsg');
  return { family: p[0], index: i32(p, 4), state: u16(p, 8), flags: p[10], type: p[11] };
}

/** Size of each family header, where its attributes start. */
export const headerLen = { link: 16, addr: 8, route: 12, neigh: 12 } as const;

function need(p: Buffer, n: number, what: string): void {
  if (p.length < n) throw new Error(`malformed ${what}: ${p.length} bytes, need ${n}`);
}

/** One netlink message: header, family header, attributes. */
export function encodeMessage(h: NlHeader, body: Buffer, attrs: readonly Attr[] = []): Buffer {
  const a = encodeAttrs(attrs);
  const out = Buffer.alloc(NLMSG_HDRLEN + align4(body.length) + a.length);
  put32(out, out.length, 0);
  put16(out, h.type, 4);
  put16(out, h.flags, 6);
  put32(out, h.seq, 8);
  put32(out, h.pid, 12);
  body.copy(out, NLMSG_HDRLEN);
  a.copy(out, NLMSG_HDRLEN + align4(body.length));
  return out;
}

/** Every message of one datagram (a dump packs several). */
export function decodeMessages(b: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= b.length) {
    const len = u32(b, off);
    if (len < NLMSG_HDRLEN || off + len > b.length) throw new Error(`malformed nlmsghdr at ${off}: length ${len} of ${b.length - off} bytes left`);
    out.push({
      type: u16(b, off + 4),
      flags: u16(b, off + 6),
      seq: u32(b, off + 8),
      pid: u32(b, off + 12),
      payload: b.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

export interface NlError {
  /** 0 for an ACK, else the positive errno. */
  errno: number;
  /** The request it answers (its header). */
  request: NlHeader;
  /** The kernel's extended-ack text, when it gave one. */
  message?: string;
}

/** struct nlmsgerr: int error, the request's nlmsghdr (and its payload unless capped), then ext-ack TLVs. */
export function decodeError(m: NlMessage): NlError {
  const p = m.payload;
  need(p, 4 + NLMSG_HDRLEN, 'nlmsgerr');
  const error = i32(p, 0);
  const request = { type: u16(p, 8), flags: u16(p, 10), seq: u32(p, 12), pid: u32(p, 16) };
  let message: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS) {
    const echoed = m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : u32(p, 4);
    const tlvStart = 4 + align4(echoed);
    if (tlvStart <= p.length) message = attrStr(decodeAttrs(p, tlvStart), NLMSGERR_ATTR_MSG);
  }
  return { errno: -error, request, message };
}

/** An NLMSG_ERROR as the kernel writes it (tests build replies with it). */
export function encodeError(errno: number, request: NlHeader, message?: string): Buffer {
  const body = Buffer.alloc(4 + NLMSG_HDRLEN);
  if (LE) body.writeInt32LE(-errno, 0);
  else body.writeInt32BE(-errno, 0);
  put32(body, NLMSG_HDRLEN, 4);
  put16(body, request.type, 8);
  put16(body, request.flags, 10);
  put32(body, request.seq, 12);
  put32(body, request.pid, 16);
  const attrs = message ? [strAttr(NLMSGERR_ATTR_MSG, message)] : [];
  const flags = NLM_F_CAPPED | (message ? NLM_F_ACK_TLVS : 0);
  return encodeMessage({ type: NLMSG_ERROR, flags, seq: request.seq, pid: request.pid }, body, attrs);
}
