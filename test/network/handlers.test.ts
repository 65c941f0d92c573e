// The network RPC handlers on the recording libc, against an in-memory rtnetlink (fake-kernel.ts).
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import t from 'tap';
import { networkHandlers } from '../../agent/src/network/handlers.js';
import { parseIp } from '../../agent/src/network/inet.js';
import { toRpcError } from '../../agent/src/rpc/status.js';
import { UpdateInterfaceRequestSchema, UpdateRoutesRequestSchema, AddARPNeighborsRequestSchema } from '../../protos/gen/agent_pb.js';
import { IPFamily, type InterfaceSchema, type RouteSchema } from '../../protos/gen/types_pb.js';

type Interface = MessageInitShape<typeof InterfaceSchema>;
type Route = MessageInitShape<typeof RouteSchema>;
import { FakeKernel } from './fake-kernel.js';

const ctx = {} as never;
const mac = (s: string) => Buffer.from(s.replace(/:/g, ''), 'hex');
const ip = (s: string) => parseIp(s, 'test').bytes;

function pod() {
  const k = new FakeKernel();
  k.addLink({ name: 'lo', flags: 0x49, mtu: 65536 });
  const nic = k.addLink({ name: 'enp0s3', mac: mac('02:42:c0:00:02:0a'), kind: '' });
  const h = networkHandlers(k.libc).handlers;
  const call = {
    updateInterface: (i: Interface) => h.updateInterface!(create(UpdateInterfaceRequestSchema, { interface: i }), ctx),
    updateRoutes: (r: Route[]) => h.updateRoutes!(create(UpdateRoutesRequestSchema, { routes: { Routes: r } }), ctx),
    addArp: (n: object[]) => h.addARPNeighbors!(create(AddARPNeighborsRequestSchema, { neighbors: { ARPNeighbors: n } }), ctx),
  };
  return { k, nic, h, call };
}

/** The status a call fails with, as "CODE_NUMBER: message". */
async function failure(p: () => unknown): Promise<{ code: number; message: string }> {
  try {
    await p();
  } catch (err) {
    const e = toRpcError(err);
    return { code: e.code, message: e.message };
  }
  throw new Error('the call succeeded');
}

const eth0 = {
  name: 'eth0',
  hwAddr: '02:42:C0:00:02:0A',
  mtu: 1450n,
  type: 'veth',
  devicePath: '/devices/pci0000:00/0000:00:03.0',
  IPAddresses: [
    { family: IPFamily.v4, address: '192.0.2.10', mask: '24' },
    { family: IPFamily.v6, address: '2001:db8::10', mask: '64' },
  ],
};

t.test('UpdateInterface: found by MAC (any case), brought down, readdressed, renamed, MTU set, up; the reply is read back', async (t) => {
  const { k, nic, call } = pod();
  nic.flags |= 1;
  k.addrs.push({ index: nic.index, family: 2, prefixLen: 16, address: ip('198.51.100.7') });
  const reply = await call.updateInterface(eth0);
  t.same(
    k.changes(),
    ['RTM_SETLINK', 'RTM_DELADDR', 'RTM_NEWADDR', 'RTM_NEWADDR', 'RTM_SETLINK'],
    'down, old address out, new ones in, then rename + MTU + up in one',
  );
  t.match(nic, { name: 'eth0', mtu: 1450 });
  t.ok(nic.flags & 1, 'up');
  t.same(
    k.addrs.map((a) => a.address),
    [ip('192.0.2.10'), ip('2001:db8::10')],
  );
  t.same(reply, {
    device: '',
    name: 'eth0',
    IPAddresses: [
      { family: IPFamily.v4, address: '192.0.2.10', mask: '24' },
      { family: IPFamily.v6, address: '2001:db8::10', mask: '64' },
    ],
    mtu: 1450n,
    hwAddr: '02:42:c0:00:02:0a',
    devicePath: eth0.devicePath,
    type: 'veth',
    rawFlags: nic.flags,
  });
});

t.test('UpdateInterface: IFF_NOARP in raw_flags is applied; an MTU of 0 leaves the MTU alone', async (t) => {
  const { nic, call } = pod();
  await call.updateInterface({ ...eth0, mtu: 0n, rawFlags: 0x80 });
  t.equal(nic.mtu, 1500);
  t.ok(nic.flags & 0x80, 'NOARP');
});

t.test('UpdateInterface: a link already named eth0 gives its name up and takes the old one', async (t) => {
  const { k, nic, call } = pod();
  const other = k.addLink({ name: 'eth0', mac: mac('02:42:c0:00:02:0b'), flags: 0x1003 });
  await call.updateInterface(eth0);
  t.equal(nic.name, 'eth0');
  t.equal(other.name, 'enp0s3');
  t.ok(other.flags & 1, 'the other link is up again as it was');
});

t.test('UpdateInterface: no NIC with that MAC is INTERNAL "Link not found" (kata 3.x retries on that text)', async (t) => {
  const { k, call } = pod();
  t.same(await failure(() => call.updateInterface({ ...eth0, hwAddr: '02:42:c0:00:02:99' })), {
    code: 13,
    message: 'update interface: Link not found (hwAddr 02:42:c0:00:02:99)',
  });
  t.same(k.changes(), [], 'nothing changed');
});

t.test('UpdateInterface: bad input is INVALID_ARGUMENT naming the field, before any change', async (t) => {
  const { k, call } = pod();
  const cases: [Interface, RegExp][] = [
    [{ ...eth0, hwAddr: '' }, /^interface.hwAddr is empty/],
    [{ ...eth0, hwAddr: '02:42:c0:00:02' }, /^interface.hwAddr: malformed MAC address "02:42:c0:00:02"/],
    [
      { ...eth0, IPAddresses: [{ family: IPFamily.v4, address: '192.0.2.300', mask: '24' }] as never },
      /^interface.IPAddresses\[0\].address: malformed IP address "192.0.2.300"/,
    ],
    [{ ...eth0, IPAddresses: [{ family: IPFamily.v4, address: '192.0.2.10', mask: '33' }] as never }, /^interface.IPAddresses\[0\].mask: malformed mask "33"/],
    [{ ...eth0, IPAddresses: [{ family: IPFamily.v6, address: '192.0.2.10', mask: '24' }] as never }, /family v6 but address "192.0.2.10" is IPv4/],
    [{ ...eth0, name: 'a-name-too-long-for-linux' }, /^interface.name: "a-name-too-long-for-linux" is not a valid interface name/],
  ];
  for (const [iface, message] of cases) t.match(await failure(() => call.updateInterface(iface)), { code: 3, message }, String(message));
  t.same(k.changes(), []);
  t.match(await failure(() => pod().h.updateInterface!(create(UpdateInterfaceRequestSchema, {}), ctx)), {
    code: 3,
    message: 'UpdateInterface: the request has no interface',
  });
});

t.test('UpdateInterface: an address given twice fails with the request named and its errno', async (t) => {
  const { call } = pod();
  const dup = { family: IPFamily.v4, address: '192.0.2.10', mask: '24' };
  t.same(await failure(() => call.updateInterface({ ...eth0, IPAddresses: [dup, dup] as never })), {
    code: 6,
    message: 'RTM_NEWADDR 192.0.2.10/24 on enp0s3: EEXIST (file already exists)',
  });
});

const kataRoutes: Route[] = [
  // Hosts send the default route first; it can only be added after the link route.
  { dest: '', gateway: '192.0.2.1', device: 'eth0', family: IPFamily.v4 },
  { dest: '192.0.2.0/24', source: '192.0.2.10', scope: 253, device: 'eth0', family: IPFamily.v4 },
  { dest: '2001:db8::/64', device: 'eth0', family: IPFamily.v6, mtu: 1400 },
];

t.test("UpdateRoutes: link routes first, gateway routes after; old routes replaced, the kernel's kept; the reply is read back", async (t) => {
  const { k, call } = pod();
  await call.updateInterface(eth0);
  k.routes.push({ family: 2, dstLen: 24, dst: ip('203.0.113.0'), gateway: ip('192.0.2.254'), oif: 2, table: 254, protocol: 3, scope: 0, type: 1, flags: 0 });
  k.routes.push({ family: 2, dstLen: 8, dst: ip('127.0.0.0'), oif: 1, table: 254, protocol: 3, scope: 253, type: 1, flags: 0 });
  k.requests.length = 0;
  const reply = await call.updateRoutes(kataRoutes);
  t.same(k.changes(), ['RTM_DELROUTE', 'RTM_NEWROUTE', 'RTM_NEWROUTE', 'RTM_NEWROUTE']);
  t.notOk(
    k.routes.some((r) => r.gateway?.equals(ip('192.0.2.254'))),
    'the old gateway route is gone',
  );
  t.ok(
    k.routes.some((r) => r.oif === 1),
    'loopback routes are left alone',
  );
  t.same(reply.Routes, [
    { dest: '192.0.2.0/24', gateway: '', device: 'eth0', source: '192.0.2.10', scope: 253, family: IPFamily.v4, flags: 0, mtu: 0 },
    { dest: '127.0.0.0/8', gateway: '', device: 'lo', source: '', scope: 253, family: IPFamily.v4, flags: 0, mtu: 0 },
    { dest: '', gateway: '192.0.2.1', device: 'eth0', source: '', scope: 0, family: IPFamily.v4, flags: 0, mtu: 0 },
    { dest: '2001:db8::/64', gateway: '', device: 'eth0', source: '', scope: 0, family: IPFamily.v6, flags: 0, mtu: 1400 },
  ]);
  const link = k.routes.find((r) => r.dstLen === 24 && r.dst?.equals(ip('192.0.2.0')))!;
  t.match(link, { protocol: 3, scope: 253, table: 254, type: 1 }, 'replaces the kernel link route: proto boot, scope link');
  t.same((await pod().h.listRoutes!({} as never, ctx)).Routes, [], 'ListRoutes of a pod with no routes');
});

t.test('UpdateRoutes: a gateway reachable only through a link route later in the list still works', async (t) => {
  const { k, call } = pod();
  await call.updateInterface(eth0);
  await call.updateRoutes([
    { dest: '198.51.100.0/24', gateway: '203.0.113.1', device: 'eth0' },
    { dest: '203.0.113.0/24', scope: 253, device: 'eth0' },
  ]);
  t.ok(
    k.routes.some((r) => r.gateway?.equals(ip('203.0.113.1'))),
    'the gateway route is set',
  );
  t.ok(k.routes.some((r) => r.dst?.equals(ip('203.0.113.0')) && r.scope === 253));
});

t.test('UpdateRoutes: 1.x routes without a family take it from their addresses; flags (onlink) pass through', async (t) => {
  const { k, call } = pod();
  await call.updateInterface(eth0);
  await call.updateRoutes([
    { dest: '', gateway: '2001:db8::1', device: 'eth0' },
    { dest: '', gateway: '169.254.1.1', device: 'eth0', flags: 4 },
  ]);
  t.match(
    k.routes.find((r) => r.family === 10 && r.gateway),
    { dstLen: 0, flags: 0 },
  );
  t.match(
    k.routes.find((r) => r.gateway?.equals(ip('169.254.1.1'))),
    { family: 2, flags: 4 },
    "Calico's onlink default route",
  );
});

t.test('UpdateRoutes: bad input is INVALID_ARGUMENT naming the route and field, before any change', async (t) => {
  const { k, call } = pod();
  await call.updateInterface(eth0);
  k.requests.length = 0;
  const cases: [Route, RegExp][] = [
    [{ dest: '192.0.2.0/24', device: 'eth9' }, /^routes\[1\].device: unknown device "eth9"/],
    [{ dest: '192.0.2.0/24' }, /^routes\[1\].device: unknown device ""/],
    [{ dest: '192.0.2.0/40', device: 'eth0' }, /^routes\[1\].dest: malformed mask "40"/],
    [{ dest: '192.0.2.10/24', device: 'eth0' }, /^routes\[1\].dest: "192.0.2.10\/24" has bits set past its \/24 prefix/],
    [{ dest: '', gateway: 'gw', device: 'eth0' }, /^routes\[1\].gateway: malformed IP address "gw"/],
    [{ dest: '2001:db8::/64', gateway: '192.0.2.1', device: 'eth0' }, /^routes\[1\]: mixes IPv4 and IPv6/],
    [{ dest: '192.0.2.0/24', device: 'eth0', family: IPFamily.v6 }, /^routes\[1\]: family v6 but its addresses are IPv4/],
    [{ dest: '192.0.2.0/24', device: 'eth0', scope: 300 }, /^routes\[1\].scope: 300 is out of range/],
  ];
  for (const [r, message] of cases) t.match(await failure(() => call.updateRoutes([kataRoutes[1], r])), { code: 3, message }, String(message));
  t.same(k.changes(), []);
});

t.test('AddARPNeighbors: permanent entries with their lladdr; state 0 means permanent', async (t) => {
  const { k, call } = pod();
  await call.updateInterface(eth0);
  await call.addArp([
    { toIPAddress: { address: '169.254.1.1' }, device: 'eth0', lladdr: 'EE:EE:EE:EE:EE:EE', state: 128 },
    { toIPAddress: { address: '2001:db8::1', family: IPFamily.v6 }, device: 'eth0', lladdr: '02:00:00:00:00:01' },
  ]);
  t.same(k.neighs, [
    { index: 2, family: 2, dst: ip('169.254.1.1'), lladdr: mac('ee:ee:ee:ee:ee:ee'), state: 0x80, flags: 0 },
    { index: 2, family: 10, dst: ip('2001:db8::1'), lladdr: mac('02:00:00:00:00:01'), state: 0x80, flags: 0 },
  ]);
  const bad: [object, RegExp][] = [
    [{ toIPAddress: { address: '169.254.1.1' }, device: 'eth7' }, /^neighbors\[0\].device: unknown device "eth7"/],
    [{ device: 'eth0' }, /^neighbors\[0\].toIPAddress is empty/],
    [{ toIPAddress: { address: '169.254.1' }, device: 'eth0' }, /^neighbors\[0\].toIPAddress.address: malformed IP address/],
    [{ toIPAddress: { address: '169.254.1.1' }, device: 'eth0', lladdr: 'ee:ee' }, /^neighbors\[0\].lladdr: malformed MAC address "ee:ee"/],
  ];
  for (const [n, message] of bad) t.match(await failure(() => call.addArp([n])), { code: 3, message }, String(message));
});

t.test('ListInterfaces: every link with its addresses, as kata shapes them', async (t) => {
  const { k, h, call } = pod();
  k.links[1].kind = 'veth';
  await call.updateInterface(eth0);
  const list = await h.listInterfaces!({} as never, ctx);
  t.same(
    list.Interfaces!.map((i) => [i.name, i.hwAddr, i.type, i.IPAddresses?.map((a) => `${a.address}/${a.mask}`)]),
    [
      ['lo', '00:00:00:00:00:00', '', []],
      ['eth0', '02:42:c0:00:02:0a', 'veth', ['192.0.2.10/24', '2001:db8::10/64']],
    ],
  );
});
