// A small in-memory rtnetlink for unit tests: a RecordingLibc whose sendNetlink/recv/poll answer as
// the kernel does for the requests the agent makes (dumps, ACKs, errnos), keeping links, addresses,
// routes and neighbours. It enforces the kernel rules the agent has to respect: a link is renamed
// only while down (EBUSY), names are unique (EEXIST), a gateway must be reachable through a route
// already on that link (ENETUNREACH) unless the route is onlink, NLM_F_EXCL refuses a duplicate.
import { RecordingLibc } from '../support/recording-libc.js';
import * as c from '../../agent/src/network/rtnl-codec.js';
import type { Address, Link, Neighbour, RouteEntry } from '../../agent/src/network/rtnl-objects.js';

const EEXIST = 17;
const EBUSY = 16;
const ENODEV = 19;
const ESRCH = 3;
const EADDRNOTAVAIL = 99;
const ENETUNREACH = 101;
const RTNH_F_ONLINK = 4;

export class FakeKernel {
  links: Link[] = [];
  addrs: Address[] = [];
  routes: RouteEntry[] = [];
  neighs: Neighbour[] = [];
  /** Every request decoded, in order: "RTM_SETLINK", ... */
  readonly requests: { type: string; msg: c.NlMessage }[] = [];
  private queue: Buffer[] = [];
  readonly libc: RecordingLibc;

  constructor() {
    this.libc = new RecordingLibc({
      sendNetlink: (_fd, data) => {
        for (const m of c.decodeMessages(Buffer.from(data))) this.handle(m);
        return data.length;
      },
      poll: () => (this.queue.length > 0 ? 1 : 0),
      recv: (_fd, buf) => {
        const d = this.queue.shift();
        if (!d) return 0;
        Buffer.from(buf.buffer, buf.byteOffset, buf.length).set(d);
        return d.length;
      },
    });
  }

  addLink(l: Partial<Link> & { name: string }): Link {
    const link: Link = { index: this.links.length + 1, flags: 0x1002, mtu: 1500, mac: Buffer.alloc(6), kind: '', ...l };
    this.links.push(link);
    return link;
  }

  /** The request types sent, in order, without the dumps. */
  changes(): string[] {
    return this.requests.filter((r) => !isGet(r.msg.type)).map((r) => r.type);
  }

  private reply(req: c.NlMessage, type: number, body: Buffer, attrs: c.Attr[], multi: boolean): void {
    this.queue.push(c.encodeMessage({ type, flags: multi ? c.NLM_F_MULTI : 0, seq: req.seq, pid: 4242 }, body, attrs));
  }

  private done(req: c.NlMessage): void {
    this.queue.push(c.encodeMessage({ type: c.NLMSG_DONE, flags: c.NLM_F_MULTI, seq: req.seq, pid: 4242 }, Buffer.alloc(4)));
  }

  private ack(req: c.NlMessage, errno = 0, message?: string): void {
    this.queue.push(c.encodeError(errno, req, message));
  }

  private handle(m: c.NlMessage): void {
    this.requests.push({ type: c.msgTypeName(m.type), msg: m });
    const errno = this.apply(m);
    if (isGet(m.type)) return;
    if (errno !== 0 || m.flags & c.NLM_F_ACK) this.ack(m, errno);
  }

  private apply(m: c.NlMessage): number {
    switch (m.type) {
      case c.RTM_GETLINK:
        for (const l of this.links) {
          const attrs = [c.strAttr(c.IFLA_IFNAME, l.name), c.u32Attr(c.IFLA_MTU, l.mtu), { type: c.IFLA_ADDRESS, data: l.mac }];
          if (l.kind) attrs.push(c.nestedAttr(c.IFLA_LINKINFO, [c.strAttr(c.IFLA_INFO_KIND, l.kind)]));
          this.reply(m, c.RTM_NEWLINK, c.encodeIfInfo({ family: 0, type: 1, index: l.index, flags: l.flags, change: 0 }), attrs, true);
        }
        this.done(m);
        return 0;
      case c.RTM_SETLINK: {
        const h = c.decodeIfInfo(m.payload);
        const attrs = c.decodeAttrs(m.payload, c.headerLen.link);
        const l = this.links.find((x) => x.index === h.index);
        if (!l) return ENODEV;
        const name = c.attrStr(attrs, c.IFLA_IFNAME);
        if (name !== undefined && name !== l.name) {
          if (this.links.some((x) => x.name === name)) return EEXIST;
          if (l.flags & 1) return EBUSY;
          l.name = name;
        }
        l.mtu = c.attrU32(attrs, c.IFLA_MTU) ?? l.mtu;
        l.flags = (l.flags & ~h.change) | (h.flags & h.change);
        return 0;
      }
      case c.RTM_GETADDR:
        for (const a of this.addrs) {
          const body = c.encodeIfAddr({ family: a.family, prefixLen: a.prefixLen, flags: 0, scope: 0, index: a.index });
          this.reply(
            m,
            c.RTM_NEWADDR,
            body,
            [
              { type: c.IFA_ADDRESS, data: a.address },
              { type: c.IFA_LOCAL, data: a.address },
            ],
            true,
          );
        }
        this.done(m);
        return 0;
      case c.RTM_NEWADDR: {
        const h = c.decodeIfAddr(m.payload);
        const address = Buffer.from(c.findAttr(c.decodeAttrs(m.payload, c.headerLen.addr), c.IFA_LOCAL)!);
        if (this.addrs.some((a) => a.index === h.index && a.address.equals(address))) return m.flags & c.NLM_F_EXCL ? EEXIST : 0;
        this.addrs.push({ index: h.index, family: h.family, prefixLen: h.prefixLen, address });
        // The kernel's own route to the address's subnet (IPv4 with the address as source).
        const dst = Buffer.from(address);
        for (let bit = h.prefixLen; bit < dst.length * 8; bit++) dst[bit >> 3] &= ~(0x80 >> (bit & 7));
        const src = h.family === 2 ? address : undefined;
        this.routes.push({
          family: h.family,
          dstLen: h.prefixLen,
          dst,
          prefSrc: src,
          oif: h.index,
          table: 254,
          protocol: 2,
          scope: h.family === 2 ? 253 : 0,
          type: 1,
          flags: 0,
        });
        return 0;
      }
      case c.RTM_DELADDR: {
        const h = c.decodeIfAddr(m.payload);
        const address = c.findAttr(c.decodeAttrs(m.payload, c.headerLen.addr), c.IFA_LOCAL)!;
        const i = this.addrs.findIndex((a) => a.index === h.index && a.address.equals(address));
        if (i < 0) return EADDRNOTAVAIL;
        this.addrs.splice(i, 1);
        this.routes = this.routes.filter((r) => !(r.protocol === 2 && r.oif === h.index && covers(r, address)));
        return 0;
      }
      case c.RTM_GETROUTE: {
        const family = c.decodeRt(m.payload).family;
        for (const r of this.routes.filter((x) => x.family === family)) this.reply(m, c.RTM_NEWROUTE, ...routeMessage(r), true);
        this.done(m);
        return 0;
      }
      case c.RTM_NEWROUTE: {
        const r = parseRoute(m.payload);
        if (r.gateway && !(r.flags & RTNH_F_ONLINK) && !this.routes.some((x) => x.oif === r.oif && !x.gateway && covers(x, r.gateway!))) return ENETUNREACH;
        const i = this.routes.findIndex((x) => sameKey(x, r));
        if (i >= 0 && !(m.flags & c.NLM_F_REPLACE)) return EEXIST;
        if (i >= 0) this.routes[i] = r;
        else this.routes.push(r);
        return 0;
      }
      case c.RTM_DELROUTE: {
        const r = parseRoute(m.payload);
        const i = this.routes.findIndex((x) => sameKey(x, r) && x.oif === r.oif);
        if (i < 0) return ESRCH;
        this.routes.splice(i, 1);
        return 0;
      }
      case c.RTM_NEWNEIGH: {
        const h = c.decodeNd(m.payload);
        const attrs = c.decodeAttrs(m.payload, c.headerLen.neigh);
        const n = {
          index: h.index,
          family: h.family,
          dst: Buffer.from(c.findAttr(attrs, c.NDA_DST)!),
          lladdr: attrs.some((a) => a.type === c.NDA_LLADDR) ? Buffer.from(c.findAttr(attrs, c.NDA_LLADDR)!) : undefined,
          state: h.state,
          flags: h.flags,
        };
        this.neighs = [...this.neighs.filter((x) => !(x.index === n.index && x.dst.equals(n.dst))), n];
        return 0;
      }
      default:
        return 95; // EOPNOTSUPP
    }
  }
}

/** RTM_GET* (a dump here). NLM_F_DUMP's bits mean REPLACE/EXCL on a change, so the type tells. */
const isGet = (type: number) => type >= 16 && type % 4 === 2;

function parseRoute(p: Buffer): RouteEntry {
  const h = c.decodeRt(p);
  const attrs = c.decodeAttrs(p, c.headerLen.route);
  const b = (t: number) => (c.findAttr(attrs, t) ? Buffer.from(c.findAttr(attrs, t)!) : undefined);
  const metrics = c.findAttr(attrs, c.RTA_METRICS);
  return {
    family: h.family,
    dstLen: h.dstLen,
    dst: b(c.RTA_DST),
    gateway: b(c.RTA_GATEWAY),
    prefSrc: b(c.RTA_PREFSRC),
    oif: c.attrU32(attrs, c.RTA_OIF),
    table: c.attrU32(attrs, c.RTA_TABLE) ?? h.table,
    protocol: h.protocol,
    scope: h.scope,
    type: h.type,
    flags: h.flags,
    mtu: metrics ? c.attrU32(c.decodeAttrs(metrics), c.RTAX_MTU) : undefined,
  };
}

function routeMessage(r: RouteEntry): [Buffer, c.Attr[]] {
  const body = c.encodeRt({
    family: r.family,
    dstLen: r.dstLen,
    srcLen: 0,
    tos: 0,
    table: r.table,
    protocol: r.protocol,
    scope: r.scope,
    type: r.type,
    flags: r.flags,
  });
  const attrs: c.Attr[] = [c.u32Attr(c.RTA_TABLE, r.table)];
  if (r.dst) attrs.push({ type: c.RTA_DST, data: r.dst });
  if (r.gateway) attrs.push({ type: c.RTA_GATEWAY, data: r.gateway });
  if (r.prefSrc) attrs.push({ type: c.RTA_PREFSRC, data: r.prefSrc });
  if (r.oif !== undefined) attrs.push(c.u32Attr(c.RTA_OIF, r.oif));
  if (r.mtu) attrs.push(c.nestedAttr(c.RTA_METRICS, [c.u32Attr(c.RTAX_MTU, r.mtu)]));
  return [body, attrs];
}

const sameKey = (a: RouteEntry, b: RouteEntry) =>
  a.family === b.family && a.table === b.table && a.dstLen === b.dstLen && Buffer.compare(a.dst ?? Buffer.alloc(0), b.dst ?? Buffer.alloc(0)) === 0;

function covers(r: RouteEntry, ip: Buffer): boolean {
  if (!r.dst || r.dst.length !== ip.length) return r.dstLen === 0;
  for (let bit = 0; bit < r.dstLen; bit++) if ((r.dst[bit >> 3] ^ ip[bit >> 3]) & (0x80 >> (bit & 7))) return false;
  return true;
}
