// The pod network as kata hosts configure it before CreateSandbox: the NIC found by the MAC the host
// gave its veth/tap, renamed and addressed; the routes replaced; permanent neighbours added. Every
// answer is read back from the kernel, in the shapes kata's types.Interface and types.Route have.
import type { MessageInitShape } from '@bufbuild/protobuf';
import { IPFamily, type ARPNeighbor, type Interface, type InterfaceSchema, type Route, type RouteSchema } from '../../../protos/gen/types_pb.js';
import { invalidArgument } from '../errors.js';
import { AF_INET, AF_INET6, formatIp, formatMac, parseIp, parseMac, parsePrefix, parsePrefixLen, type IpBytes } from './inet.js';
import { NetlinkError } from './rtnl-client.js';
import {
  IFF_NOARP,
  IFF_UP,
  NUD_PERMANENT,
  RT_TABLE_MAIN,
  RTN_UNICAST,
  RTPROT_BOOT,
  RTPROT_KERNEL,
  type Address,
  type Link,
  type RouteEntry,
  type RtnlObjects,
} from './rtnl-objects.js';

export type InterfaceInit = MessageInitShape<typeof InterfaceSchema>;
export type RouteInit = MessageInitShape<typeof RouteSchema>;

const IFF_LOOPBACK = 0x8;
/** IFNAMSIZ less the NUL. */
const IFNAME_MAX = 15;

const familyOf = (f: IPFamily) => (f === IPFamily.v6 ? AF_INET6 : AF_INET);
const protoFamily = (af: number) => (af === AF_INET6 ? IPFamily.v6 : IPFamily.v4);

export class PodNetwork {
  constructor(private readonly net: RtnlObjects) {}

  updateInterface(iface: Interface): InterfaceInit {
    if (!iface.hwAddr) throw invalidArgument('interface.hwAddr is empty: the NIC to configure is found by its MAC address');
    const mac = parseMac(iface.hwAddr, 'interface.hwAddr');
    if (iface.name) checkIfName(iface.name, 'interface.name');
    if (iface.mtu > 0xffffffffn) throw invalidArgument(`interface.mtu: ${iface.mtu} is out of range`);
    const addrs = iface.IPAddresses.map((a, i) => {
      const field = `interface.IPAddresses[${i}]`;
      const ip = parseIp(a.address, `${field}.address`);
      if (a.family === IPFamily.v6 && ip.family !== AF_INET6) throw invalidArgument(`${field}: family v6 but address "${a.address}" is IPv4`);
      return { family: ip.family, address: ip.bytes, prefixLen: parsePrefixLen(a.mask, ip.family, `${field}.mask`) };
    });

    const links = this.net.links();
    const link = links.find((l) => l.mac.equals(mac));
    // kata 3.x hosts retry (20 × 20 ms) only on this wording: a hot-plugged NIC may not be there yet.
    // INTERNAL, as the Rust agent answers any failed update.
    if (!link) throw new Error(`update interface: Link not found (hwAddr ${iface.hwAddr})`);

    // The kernel renames only a link that is down (EBUSY otherwise).
    if (link.flags & IFF_UP) this.net.setLink(link, { flags: 0, change: IFF_UP }, 'down');
    for (const a of this.addressesOf(link)) this.net.deleteAddress(link, a);
    for (const a of addrs) this.net.addAddress(link, a);

    const name = iface.name || link.name;
    // A link already holding the wanted name (eth0 and eth1 swapped, say) gets a temporary name, then ours.
    const holder = name !== link.name ? links.find((l) => l.name === name) : undefined;
    if (holder) {
      if (holder.flags & IFF_UP) this.net.setLink(holder, { flags: 0, change: IFF_UP }, 'down');
      const temp = `kata-tmp${holder.index}`;
      this.net.setLink(holder, { name: temp }, `name ${temp} (frees ${name})`);
      holder.name = temp;
    }
    const arp = iface.rawFlags & IFF_NOARP ? IFF_NOARP : 0;
    const mtu = iface.mtu > 0n ? Number(iface.mtu) : undefined;
    this.net.setLink(
      link,
      { name: name !== link.name ? name : undefined, mtu, flags: IFF_UP | arp, change: IFF_UP | IFF_NOARP },
      `name ${name}${mtu ? ` mtu ${mtu}` : ''} up`,
    );
    if (holder) this.net.setLink(holder, { name: link.name, flags: holder.flags & IFF_UP, change: IFF_UP }, `name ${link.name} (the name ${name} had)`);

    const now = this.net.links().find((l) => l.index === link.index);
    if (!now) throw new Error(`update interface: link ${name} (index ${link.index}) vanished while being configured`);
    // The guest kernel sees a virtio NIC (no link kind); the host's endpoint type then stays as sent.
    return this.shapeInterface(now, this.addressesOf(now), { type: iface.type, devicePath: iface.devicePath });
  }

  listInterfaces(): InterfaceInit[] {
    const addrs = this.net.addresses();
    return this.net.links().map((l) =>
      this.shapeInterface(
        l,
        addrs.filter((a) => a.index === l.index),
      ),
    );
  }

  updateRoutes(routes: Route[]): RouteInit[] {
    const links = this.net.links();
    const plans = routes.map((r, i) => planRoute(r, `routes[${i}]`, links));
    for (const af of [AF_INET, AF_INET6]) {
      for (const r of this.net.routes(af)) {
        // The kernel's own routes (link routes of the addresses, fe80::/64) stay; so does loopback's.
        if (r.table !== RT_TABLE_MAIN || r.protocol === RTPROT_KERNEL || r.oif === undefined) continue;
        const l = links.find((x) => x.index === r.oif);
        if (!l || l.flags & IFF_LOOPBACK) continue;
        try {
          this.net.deleteRoute(r, l.name);
        } catch (err) {
          // Gone already: removing an earlier route took it along.
          if (!(err instanceof NetlinkError && err.code === 'ESRCH')) throw err;
        }
      }
    }
    // Routes on the link first: the kernel refuses a gateway it cannot reach through an existing route.
    const ordered = [...plans.filter((p) => !p.entry.gateway), ...plans.filter((p) => p.entry.gateway)];
    for (const p of ordered) this.net.addRoute(p.entry, p.device);
    return this.listRoutes();
  }

  listRoutes(): RouteInit[] {
    const names = new Map(this.net.links().map((l) => [l.index, l.name]));
    return [AF_INET, AF_INET6].flatMap((af) =>
      this.net
        .routes(af)
        .filter((r) => r.table === RT_TABLE_MAIN)
        .map((r) => ({
          // The default route as hosts send it: an empty dest.
          dest: r.dst && r.dstLen > 0 ? `${formatIp(r.dst)}/${r.dstLen}` : '',
          gateway: r.gateway ? formatIp(r.gateway) : '',
          device: r.oif !== undefined ? (names.get(r.oif) ?? '') : '',
          source: r.prefSrc ? formatIp(r.prefSrc) : '',
          scope: r.scope,
          family: protoFamily(r.family),
          flags: r.flags,
          mtu: r.mtu ?? 0,
        })),
    );
  }

  addArpNeighbors(neighbors: ARPNeighbor[]): void {
    const links = this.net.links();
    const plans = neighbors.map((n, i) => {
      const field = `neighbors[${i}]`;
      if (!n.toIPAddress?.address) throw invalidArgument(`${field}.toIPAddress is empty`);
      const ip = parseIp(n.toIPAddress.address, `${field}.toIPAddress.address`);
      const link = findDevice(links, n.device, `${field}.device`);
      const lladdr = n.lladdr ? parseMac(n.lladdr, `${field}.lladdr`) : undefined;
      if (n.state < 0 || n.state > 0xffff) throw invalidArgument(`${field}.state: ${n.state} is out of range`);
      if (n.flags < 0 || n.flags > 0xff) throw invalidArgument(`${field}.flags: ${n.flags} is out of range`);
      // Hosts send permanent entries only; a state of 0 means the same (NUD_PERMANENT).
      return { link, n: { family: ip.family, dst: ip.bytes, lladdr, state: n.state || NUD_PERMANENT, flags: n.flags } };
    });
    for (const p of plans) this.net.setNeighbour(p.link, p.n);
  }

  private addressesOf(link: Link): Address[] {
    return this.net.addresses().filter((a) => a.index === link.index);
  }

  private shapeInterface(l: Link, addrs: Address[], sent: { type?: string; devicePath?: string } = {}): InterfaceInit {
    return {
      device: '',
      name: l.name,
      IPAddresses: addrs.map((a) => ({ family: protoFamily(a.family), address: formatIp(a.address), mask: String(a.prefixLen) })),
      mtu: BigInt(l.mtu),
      hwAddr: l.mac.length > 0 ? formatMac(l.mac) : '',
      devicePath: sent.devicePath ?? '',
      type: l.kind || sent.type || '',
      rawFlags: l.flags,
    };
  }
}

function checkIfName(name: string, field: string): void {
  if (Buffer.byteLength(name) > IFNAME_MAX || name === '.' || name === '..' || /[/:\s]/.test(name)) {
    throw invalidArgument(`${field}: "${name}" is not a valid interface name (at most ${IFNAME_MAX} bytes, no "/", ":" or spaces)`);
  }
}

function findDevice(links: Link[], name: string, field: string): Link {
  const l = name ? links.find((x) => x.name === name) : undefined;
  if (!l) throw invalidArgument(`${field}: unknown device "${name}"`);
  return l;
}

/** One requested route, checked, as the kernel entry to add. */
function planRoute(r: Route, field: string, links: Link[]): { entry: RouteEntry; device: string } {
  const link = findDevice(links, r.device, `${field}.device`);
  const dest = parsePrefix(r.dest, `${field}.dest`);
  const gateway = r.gateway ? parseIp(r.gateway, `${field}.gateway`) : undefined;
  // A source may come as "a.b.c.d" or with a prefix; the kernel takes the address (RTA_PREFSRC).
  const source = r.source ? parsePrefix(r.source, `${field}.source`).ip : undefined;
  // 1.x hosts have no family field (reads as v4), so the addresses decide when there are any.
  const given = [dest.ip, gateway, source].filter((x): x is IpBytes => x !== undefined);
  const af = given[0]?.family ?? familyOf(r.family);
  for (const ip of given)
    if (ip.family !== af) throw invalidArgument(`${field}: mixes IPv4 and IPv6 addresses (dest "${r.dest}", gateway "${r.gateway}", source "${r.source}")`);
  if (r.family === IPFamily.v6 && af !== AF_INET6) throw invalidArgument(`${field}: family v6 but its addresses are IPv4`);
  if (dest.ip && hasHostBits(dest.ip.bytes, dest.len)) throw invalidArgument(`${field}.dest: "${r.dest}" has bits set past its /${dest.len} prefix`);
  if (r.scope > 255) throw invalidArgument(`${field}.scope: ${r.scope} is out of range (0-255)`);
  return {
    device: link.name,
    entry: {
      family: af,
      dstLen: dest.len,
      dst: dest.ip?.bytes,
      gateway: gateway?.bytes,
      prefSrc: source?.bytes,
      oif: link.index,
      table: RT_TABLE_MAIN,
      protocol: RTPROT_BOOT,
      scope: r.scope,
      type: RTN_UNICAST,
      flags: r.flags,
      mtu: r.mtu || undefined,
    },
  };
}

function hasHostBits(b: Buffer, len: number): boolean {
  for (let bit = len; bit < b.length * 8; bit++) if (b[bit >> 3] & (0x80 >> (bit & 7))) return true;
  return false;
}
