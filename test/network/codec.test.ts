// The rtnetlink codec: encode → decode round trips, and replies a real kernel wrote.
import t from 'tap';
import * as c from '../../agent/src/network/rtnl-codec.js';
import { formatIp, formatMac, parseIp, parseMac, parsePrefix, parsePrefixLen } from '../../agent/src/network/inet.js';
import { captured } from './captured-replies.js';
import { InvalidArgument } from '../../agent/src/errors.js';

const hex = (parts: string[]) => parts.map((p) => Buffer.from(p, 'hex'));

t.test('each family header and its attributes survive encode → decode', async (t) => {
  const link = { family: 0, type: 1, index: 7, flags: 0x1043, change: 0x1 };
  const addr = { family: 10, prefixLen: 64, flags: 2, scope: 0, index: 7 };
  const rt = { family: 2, dstLen: 24, srcLen: 0, tos: 0, table: 254, protocol: 3, scope: 253, type: 1, flags: 4 };
  const nd = { family: 2, index: 7, state: 0x80, flags: 0, type: 0 };
  const attrs = [c.strAttr(c.IFLA_IFNAME, 'eth0'), c.u32Attr(c.IFLA_MTU, 1450), { type: c.IFLA_ADDRESS, data: Buffer.from('0242c000020a', 'hex') }];
  const datagram = Buffer.concat([
    c.encodeMessage({ type: c.RTM_SETLINK, flags: c.NLM_F_REQUEST | c.NLM_F_ACK, seq: 1, pid: 0 }, c.encodeIfInfo(link), attrs),
    c.encodeMessage({ type: c.RTM_NEWADDR, flags: c.NLM_F_REQUEST, seq: 2, pid: 0 }, c.encodeIfAddr(addr), [c.u32Attr(c.IFA_FLAGS, 2)]),
    c.encodeMessage({ type: c.RTM_NEWROUTE, flags: c.NLM_F_REQUEST, seq: 3, pid: 0 }, c.encodeRt(rt), [
      c.nestedAttr(c.RTA_METRICS, [c.u32Attr(c.RTAX_MTU, 1400)]),
    ]),
    c.encodeMessage({ type: c.RTM_NEWNEIGH, flags: c.NLM_F_REQUEST, seq: 0xffffffff, pid: 9 }, c.encodeNd(nd)),
  ]);
  const [m1, m2, m3, m4] = c.decodeMessages(datagram);
  t.match(m1, { type: c.RTM_SETLINK, flags: 5, seq: 1, pid: 0 });
  t.same(c.decodeIfInfo(m1.payload), link);
  const a1 = c.decodeAttrs(m1.payload, c.headerLen.link);
  t.equal(c.attrStr(a1, c.IFLA_IFNAME), 'eth0');
  t.equal(c.attrU32(a1, c.IFLA_MTU), 1450);
  t.equal(c.findAttr(a1, c.IFLA_ADDRESS)!.toString('hex'), '0242c000020a');
  t.same(c.decodeIfAddr(m2.payload), addr);
  t.equal(c.attrU32(c.decodeAttrs(m2.payload, c.headerLen.addr), c.IFA_FLAGS), 2);
  t.same(c.decodeRt(m3.payload), rt);
  const metrics = c.decodeAttrs(m3.payload, c.headerLen.route);
  t.equal(metrics[0].type, c.RTA_METRICS, 'NLA_F_NESTED is masked off the decoded type');
  t.equal(c.attrU32(c.decodeAttrs(metrics[0].data), c.RTAX_MTU), 1400);
  t.same(c.decodeNd(m4.payload), nd);
  t.match(m4, { seq: 0xffffffff, pid: 9 });
});

t.test('attributes are padded to 4 bytes and the message length counts the padding', async (t) => {
  const m = c.encodeMessage({ type: c.RTM_SETLINK, flags: 1, seq: 1, pid: 0 }, c.encodeIfInfo({ family: 0, type: 0, index: 1, flags: 0, change: 0 }), [
    c.strAttr(c.IFLA_IFNAME, 'ab'),
    c.u32Attr(c.IFLA_MTU, 9000),
  ]);
  // 16 nlmsghdr + 16 ifinfomsg + (4 + "ab\0" = 7 → 8) + 8
  t.equal(m.length, 48);
  t.equal(m.readUInt32LE(0), 48);
  t.equal(m.readUInt16LE(32), 7, 'rta_len is the unpadded length');
  t.equal(m.readUInt16LE(42), c.IFLA_MTU, 'the next attribute starts on the 4-byte boundary');
});

t.test('malformed input is refused, not misread', async (t) => {
  t.same(c.decodeMessages(Buffer.alloc(8)), [], 'fewer bytes than a header: nothing');
  const bad = Buffer.alloc(20);
  bad.writeUInt32LE(64, 0);
  t.throws(() => c.decodeMessages(bad), /malformed nlmsghdr at 0: length 64/);
  const attr = Buffer.from([8, 0, 3, 0, 0x61, 0x62]);
  t.throws(() => c.decodeAttrs(attr), /malformed rtattr at 0: length 8/);
  t.throws(() => c.decodeRt(Buffer.alloc(8)), /malformed rtmsg: 8 bytes, need 12/);
});

t.test('a real RTM_NEWLINK for veth0', async (t) => {
  const [m, ...rest] = c.decodeMessages(hex(captured.linkVeth0)[0]);
  t.equal(rest.length, 0);
  t.match(m, { type: c.RTM_NEWLINK, seq: 7 });
  const h = c.decodeIfInfo(m.payload);
  t.equal(h.index, 3);
  t.ok(h.flags & 1, 'IFF_UP');
  const attrs = c.decodeAttrs(m.payload, c.headerLen.link);
  t.equal(c.attrStr(attrs, c.IFLA_IFNAME), 'veth0');
  t.equal(c.attrU32(attrs, c.IFLA_MTU), 1500);
  t.equal(formatMac(c.findAttr(attrs, c.IFLA_ADDRESS)!), '02:42:c0:00:02:0a');
  t.equal(c.attrStr(c.decodeAttrs(c.findAttr(attrs, c.IFLA_LINKINFO)!), c.IFLA_INFO_KIND), 'veth');
});

t.test('a real address dump: a multipart message, then NLMSG_DONE in the next datagram', async (t) => {
  const [d1, d2] = hex(captured.addrDump);
  const [m] = c.decodeMessages(d1);
  t.match(m, { type: c.RTM_NEWADDR, flags: c.NLM_F_MULTI, seq: 7 });
  t.same(c.decodeIfAddr(m.payload), { family: 2, prefixLen: 24, flags: 0x80, scope: 0, index: 3 });
  const attrs = c.decodeAttrs(m.payload, c.headerLen.addr);
  t.equal(formatIp(c.findAttr(attrs, c.IFA_LOCAL)!), '192.0.2.10');
  t.equal(c.attrStr(attrs, 3 /* IFA_LABEL */), 'veth0');
  t.match(c.decodeMessages(d2), [{ type: c.NLMSG_DONE, flags: c.NLM_F_MULTI, seq: 7 }]);
});

t.test('a real IPv4 route dump: the gateway route and the kernel link route', async (t) => {
  const msgs = hex(captured.routeDump).flatMap((d) => c.decodeMessages(d));
  const routes = msgs.filter((m) => m.type === c.RTM_NEWROUTE).map((m) => ({ h: c.decodeRt(m.payload), a: c.decodeAttrs(m.payload, c.headerLen.route) }));
  const main = routes.filter((r) => c.attrU32(r.a, c.RTA_TABLE) === 254);
  const via = main.find((r) => c.findAttr(r.a, c.RTA_GATEWAY));
  t.equal(formatIp(c.findAttr(via!.a, c.RTA_DST)!), '198.51.100.0');
  t.equal(via!.h.dstLen, 24);
  t.equal(formatIp(c.findAttr(via!.a, c.RTA_GATEWAY)!), '192.0.2.1');
  t.equal(c.attrU32(via!.a, c.RTA_OIF), 3);
  const link = main.find((r) => r.h.protocol === 2);
  t.match(link!.h, { dstLen: 24, scope: 253, protocol: 2 });
  t.equal(formatIp(c.findAttr(link!.a, c.RTA_PREFSRC)!), '192.0.2.10');
  t.ok(
    routes.some((r) => r.h.table === 255),
    'the local table is in the dump too',
  );
  t.equal(msgs.at(-1)!.type, c.NLMSG_DONE);
});

t.test('real NLMSG_ERRORs: errno, the request echoed, the extended-ack text; and an ACK', async (t) => {
  const [exists] = c.decodeMessages(hex(captured.addrExists)[0]);
  t.same(c.decodeError(exists), { errno: 17, request: { type: c.RTM_NEWADDR, flags: 0x605, seq: 7, pid: 0 }, message: 'ipv4: Address already assigned' });
  const [prefix] = c.decodeMessages(hex(captured.badPrefix)[0]);
  t.match(c.decodeError(prefix), { errno: 22, message: 'Invalid prefix for given prefix length' });
  const [ack] = c.decodeMessages(hex(captured.ack)[0]);
  t.same(c.decodeError(ack), { errno: 0, request: { type: c.RTM_SETLINK, flags: 5, seq: 7, pid: 0 }, message: undefined });
  const ours = c.decodeMessages(c.encodeError(19, { type: c.RTM_SETLINK, flags: 5, seq: 9, pid: 0 }, 'no such device'))[0];
  t.same(
    c.decodeError(ours),
    { errno: 19, request: { type: c.RTM_SETLINK, flags: 5, seq: 9, pid: 0 }, message: 'no such device' },
    'encodeError writes what decodeError reads',
  );
});

t.test('address text forms', async (t) => {
  t.equal(formatIp(parseIp('2001:db8::10', 'x').bytes), '2001:db8::10');
  t.equal(formatIp(parseIp('2001:db8:0:0:1:0:0:1', 'x').bytes), '2001:db8::1:0:0:1', 'the first longest zero run is compressed');
  t.equal(formatIp(parseIp('::', 'x').bytes), '::');
  t.equal(formatIp(parseIp('fe80::1', 'x').bytes), 'fe80::1');
  t.equal(parseIp('::ffff:192.0.2.1', 'x').bytes.toString('hex'), '00000000000000000000ffffc0000201');
  t.equal(parseIp('192.0.2.10', 'x').bytes.toString('hex'), 'c000020a');
  t.throws(() => parseIp('192.0.2.300', 'routes[0].gateway'), { kind: 'InvalidArgument', message: 'routes[0].gateway: malformed IP address "192.0.2.300"' });
  t.equal(parsePrefixLen('24', 2, 'm'), 24);
  t.equal(parsePrefixLen('255.255.255.0', 2, 'm'), 24);
  t.equal(parsePrefixLen('64', 10, 'm'), 64);
  t.throws(() => parsePrefixLen('33', 2, 'm'), { kind: 'InvalidArgument', message: /m: malformed mask "33"/ });
  t.throws(() => parsePrefixLen('255.0.255.0', 2, 'm'), InvalidArgument);
  t.throws(() => parsePrefixLen('x', 10, 'm'), InvalidArgument);
  t.match(parsePrefix('', 'd'), { ip: undefined, len: 0 });
  t.match(parsePrefix('192.0.2.0/24', 'd'), { ip: { family: 2 }, len: 24 });
  t.match(parsePrefix('192.0.2.1', 'd'), { len: 32 });
  t.equal(formatMac(parseMac('02:42:C0:00:02:0A', 'h')), '02:42:c0:00:02:0a');
  t.throws(() => parseMac('02:42:c0:00:02', 'interface.hwAddr'), {
    kind: 'InvalidArgument',
    message: 'interface.hwAddr: malformed MAC address "02:42:c0:00:02"',
  });
  t.throws(() => parseMac('02:42:c0:00:02:zz', 'h'), InvalidArgument);
});
