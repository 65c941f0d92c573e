// Links, addresses, routes and neighbours as plain objects, read and changed through one RtnlClient.
// Each change names its object in the error: "RTM_NEWADDR 192.0.2.10/24 on eth0: EEXIST (File exists)".
import { AF_INET, AF_INET6, formatIp, formatMac } from './inet.js';
import type { RtnlClient } from './rtnl-client.js';
import {
  attrStr,
  attrU32,
  decodeAttrs,
  decodeIfAddr,
  decodeIfInfo,
  decodeRt,
  encodeIfAddr,
  encodeIfInfo,
  encodeNd,
  encodeRt,
  findAttr,
  headerLen,
  IFA_ADDRESS,
  IFA_FLAGS,
  IFA_LOCAL,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  nestedAttr,
  NDA_DST,
  NDA_LLADDR,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTA_DST,
  RTA_GATEWAY,
  RTA_METRICS,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTAX_MTU,
  RTM_DELADDR,
  RTM_DELROUTE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTM_SETLINK,
  strAttr,
  u32Attr,
  type Attr,
} from './rtnl-codec.js';

export const IFF_UP = 0x1;
export const IFF_NOARP = 0x80;
export const RT_TABLE_MAIN = 254;
export const RTPROT_KERNEL = 2;
export const RTPROT_BOOT = 3;
export const RTN_UNICAST = 1;
export const RT_SCOPE_UNIVERSE = 0;
export const NUD_PERMANENT = 0x80;
/** ifa_flags: no duplicate address detection (see addAddress). */
export const IFA_F_NODAD = 0x02;

export interface Link {
  index: number;
  name: string;
  flags: number;
  mtu: number;
  /** Hardware address bytes (empty for links without one). */
  mac: Buffer;
  /** IFLA_INFO_KIND: "veth", "bridge"... ("" for a physical NIC such as virtio-net). */
  kind: string;
}

export interface Address {
  index: number;
  family: number;
  prefixLen: number;
  address: Buffer;
}

export interface RouteEntry {
  family: number;
  dstLen: number;
  dst?: Buffer;
  gateway?: Buffer;
  prefSrc?: Buffer;
  oif?: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  priority?: number;
  mtu?: number;
}

export interface Neighbour {
  index: number;
  family: number;
  dst: Buffer;
  lladdr?: Buffer;
  state: number;
  flags: number;
}

export const addrText = (a: { family: number; address: Buffer; prefixLen: number }) => `${formatIp(a.address)}/${a.prefixLen}`;

export function routeText(r: RouteEntry, linkName?: string): string {
  const dst = r.dst && r.dstLen > 0 ? `${formatIp(r.dst)}/${r.dstLen}` : 'default';
  return [dst, r.gateway && `via ${formatIp(r.gateway)}`, linkName && `dev ${linkName}`, r.prefSrc && `src ${formatIp(r.prefSrc)}`, `scope ${r.scope}`]
    .filter(Boolean)
    .join(' ');
}

export class RtnlObjects {
  constructor(readonly rtnl: RtnlClient) {}

  links(): Link[] {
    return this.rtnl.dump(RTM_GETLINK, encodeIfInfo({ family: 0, type: 0, index: 0, flags: 0, change: 0 })).map((m) => {
      const h = decodeIfInfo(m.payload);
      const attrs = decodeAttrs(m.payload, headerLen.link);
      const info = findAttr(attrs, IFLA_LINKINFO);
      return {
        index: h.index,
        name: attrStr(attrs, IFLA_IFNAME) ?? '',
        flags: h.flags,
        mtu: attrU32(attrs, IFLA_MTU) ?? 0,
        mac: Buffer.from(findAttr(attrs, IFLA_ADDRESS) ?? []),
        kind: (info && attrStr(decodeAttrs(info), IFLA_INFO_KIND)) ?? '',
      };
    });
  }

  /** RTM_SETLINK of one link: any of name, MTU, and the flags in `change` set to those in `flags`. */
  setLink(link: Link, set: { name?: string; mtu?: number; flags?: number; change?: number }, what: string): void {
    const attrs: Attr[] = [];
    if (set.name !== undefined) attrs.push(strAttr(IFLA_IFNAME, set.name));
    if (set.mtu !== undefined) attrs.push(u32Attr(IFLA_MTU, set.mtu));
    const body = encodeIfInfo({ family: 0, type: 0, index: link.index, flags: set.flags ?? 0, change: set.change ?? 0 });
    this.rtnl.change(RTM_SETLINK, 0, body, attrs, `RTM_SETLINK ${link.name} (index ${link.index}) ${what}`);
  }

  addresses(): Address[] {
    // The whole table and a filter here: a dump filtered by index needs strict checking (5.x kernels).
    return this.rtnl.dump(RTM_GETADDR, encodeIfAddr({ family: 0, prefixLen: 0, flags: 0, scope: 0, index: 0 })).map((m) => {
      const h = decodeIfAddr(m.payload);
      const attrs = decodeAttrs(m.payload, headerLen.addr);
      // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
      const address = Buffer.from(findAttr(attrs, IFA_LOCAL) ?? findAttr(attrs, IFA_ADDRESS) ?? []);
      return { index: h.index, family: h.family, prefixLen: h.prefixLen, address };
    });
  }

  addAddress(link: Link, a: Omit<Address, 'index'>): void {
    // IPv6 addresses skip duplicate address detection: the host's IPAM already made this one unique,
    // and a tentative address is refused as a route's source until DAD ends (about a second later).
    const flags = a.family === AF_INET6 ? IFA_F_NODAD : 0;
    const body = encodeIfAddr({ family: a.family, prefixLen: a.prefixLen, flags, scope: RT_SCOPE_UNIVERSE, index: link.index });
    const attrs = [{ type: IFA_LOCAL, data: a.address }, { type: IFA_ADDRESS, data: a.address }, u32Attr(IFA_FLAGS, flags)];
    this.rtnl.change(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, attrs, `RTM_NEWADDR ${addrText(a)} on ${link.name}`);
  }

  deleteAddress(link: Link, a: Address): void {
    const body = encodeIfAddr({ family: a.family, prefixLen: a.prefixLen, flags: 0, scope: 0, index: a.index });
    this.rtnl.change(RTM_DELADDR, 0, body, [{ type: IFA_LOCAL, data: a.address }], `RTM_DELADDR ${addrText(a)} on ${link.name}`);
  }

  /** The routes of every table for one family (callers pick the main table). */
  routes(family: number): RouteEntry[] {
    const body = encodeRt({ family, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 });
    return this.rtnl.dump(RTM_GETROUTE, body, `RTM_GETROUTE dump (${family === AF_INET ? 'IPv4' : 'IPv6'})`).map((m) => {
      const h = decodeRt(m.payload);
      const attrs = decodeAttrs(m.payload, headerLen.route);
      const metrics = findAttr(attrs, RTA_METRICS);
      const copy = (t: number) => {
        const d = findAttr(attrs, t);
        return d ? Buffer.from(d) : undefined;
      };
      return {
        family: h.family,
        dstLen: h.dstLen,
        dst: copy(RTA_DST),
        gateway: copy(RTA_GATEWAY),
        prefSrc: copy(RTA_PREFSRC),
        oif: attrU32(attrs, RTA_OIF),
        // A table id above 255 only fits RTA_TABLE; rtm_table then says RT_TABLE_COMPAT.
        table: attrU32(attrs, RTA_TABLE) ?? h.table,
        protocol: h.protocol,
        scope: h.scope,
        type: h.type,
        flags: h.flags,
        priority: attrU32(attrs, RTA_PRIORITY),
        mtu: metrics ? attrU32(decodeAttrs(metrics), RTAX_MTU) : undefined,
      };
    });
  }

  /** Adds a route, replacing one with the same destination (the kernel's own link route, say). */
  addRoute(r: RouteEntry, linkName: string): void {
    const body = routeBody(r, r.flags);
    this.rtnl.change(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body, routeAttrs(r), `RTM_NEWROUTE ${routeText(r, linkName)}`);
  }

  deleteRoute(r: RouteEntry, linkName: string): void {
    const body = routeBody(r, 0);
    this.rtnl.change(RTM_DELROUTE, 0, body, routeAttrs(r), `RTM_DELROUTE ${routeText(r, linkName)}`);
  }

  /** Adds or replaces one neighbour entry. */
  setNeighbour(link: Link, n: Omit<Neighbour, 'index'>): void {
    const body = encodeNd({ family: n.family, index: link.index, state: n.state, flags: n.flags, type: 0 });
    const attrs: Attr[] = [{ type: NDA_DST, data: n.dst }];
    if (n.lladdr) attrs.push({ type: NDA_LLADDR, data: n.lladdr });
    const what = `RTM_NEWNEIGH ${formatIp(n.dst)}${n.lladdr ? ` lladdr ${formatMac(n.lladdr)}` : ''} on ${link.name} state 0x${n.state.toString(16)}`;
    this.rtnl.change(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body, attrs, what);
  }
}

function routeAttrs(r: RouteEntry): Attr[] {
  const attrs: Attr[] = [u32Attr(RTA_TABLE, r.table)];
  if (r.dst && r.dstLen > 0) attrs.push({ type: RTA_DST, data: r.dst });
  if (r.oif !== undefined) attrs.push(u32Attr(RTA_OIF, r.oif));
  if (r.gateway) attrs.push({ type: RTA_GATEWAY, data: r.gateway });
  if (r.prefSrc) attrs.push({ type: RTA_PREFSRC, data: r.prefSrc });
  if (r.priority !== undefined) attrs.push(u32Attr(RTA_PRIORITY, r.priority));
  if (r.mtu) attrs.push(nestedAttr(RTA_METRICS, [u32Attr(RTAX_MTU, r.mtu)]));
  return attrs;
}

export { AF_INET, AF_INET6 };

/** The rtmsg of a route; a table above 255 only fits RTA_TABLE, so rtm_table says RT_TABLE_COMPAT (252). */
function routeBody(r: RouteEntry, flags: number): Buffer {
  return encodeRt({
    family: r.family,
    dstLen: r.dstLen,
    srcLen: 0,
    tos: 0,
    table: r.table < 256 ? r.table : 252,
    protocol: r.protocol,
    scope: r.scope,
    type: r.type,
    flags,
  });
}
