// RtnlClient on the recording libc: the socket it opens, sequence numbers, multipart dumps across
// datagrams, ACKs, NLMSG_ERROR as an error naming the request, and a kernel that does not answer.
import t from 'tap';
import { RecordingLibc } from '../support/recording-libc.js';
import { NetlinkError, RtnlClient } from '../../agent/src/network/rtnl-client.js';
import * as c from '../../agent/src/network/rtnl-codec.js';
import { toRpcError } from '../../agent/src/rpc/status.js';
import { captured } from './captured-replies.js';

/** A captured reply with every message's sequence number rewritten to `seq`. */
function withSeq(hexes: string[], seq: number): Buffer[] {
  return hexes.map((h) => {
    const b = Buffer.from(h, 'hex');
    for (let off = 0; off + 16 <= b.length; off += (b.readUInt32LE(off) + 3) & ~3) b.writeUInt32LE(seq, off + 8);
    return b;
  });
}

/** A libc whose kernel answers each request with `answer(seq)`'s datagrams. */
function scripted(answer: (seq: number, req: c.NlMessage) => Buffer[]) {
  const queue: Buffer[] = [];
  const sent: c.NlMessage[] = [];
  const libc = new RecordingLibc({
    sendNetlink: (_fd, data) => {
      const [m] = c.decodeMessages(Buffer.from(data));
      sent.push(m);
      queue.push(...answer(m.seq, m));
      return data.length;
    },
    poll: () => (queue.length ? 1 : 0),
    recv: (_fd, buf) => {
      const d = queue.shift()!;
      Buffer.from(buf.buffer, buf.byteOffset).set(d);
      return d.length;
    },
  });
  return { libc, sent };
}

t.test('opens one NETLINK_ROUTE socket on first use, bound, with extended ACKs, and closes it', async (t) => {
  const { libc } = scripted((seq) => withSeq(captured.ack, seq));
  const rtnl = new RtnlClient(libc);
  t.equal(libc.calls.length, 0, 'nothing before the first request');
  rtnl.change(c.RTM_SETLINK, 0, c.encodeIfInfo({ family: 0, type: 0, index: 3, flags: 1, change: 1 }), [], 'up');
  rtnl.change(c.RTM_SETLINK, 0, c.encodeIfInfo({ family: 0, type: 0, index: 3, flags: 1, change: 1 }), [], 'up');
  rtnl.close();
  const names = libc.calls.map((x) => x.name);
  t.same(names.slice(0, 3), ['socket', 'bindNetlink', 'setsockoptInt']);
  t.same(libc.calls[0].args, [16, 3 | 0o2000000, 0], 'AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE');
  t.same(libc.calls[2].args, [100, 270, 11, 1], 'SOL_NETLINK NETLINK_EXT_ACK');
  t.equal(names.filter((n) => n === 'socket').length, 1);
  t.equal(names.at(-1), 'close');
});

t.test('a change is sent with REQUEST|ACK and a fresh sequence number, and returns on the ACK', async (t) => {
  const { libc, sent } = scripted((seq) => withSeq(captured.ack, seq));
  const rtnl = new RtnlClient(libc);
  rtnl.change(c.RTM_NEWADDR, c.NLM_F_CREATE | c.NLM_F_EXCL, c.encodeIfAddr({ family: 2, prefixLen: 24, flags: 0, scope: 0, index: 3 }), [], 'x');
  rtnl.change(c.RTM_NEWADDR, c.NLM_F_CREATE, c.encodeIfAddr({ family: 2, prefixLen: 24, flags: 0, scope: 0, index: 3 }), [], 'x');
  t.equal(sent[0].flags, c.NLM_F_REQUEST | c.NLM_F_ACK | c.NLM_F_CREATE | c.NLM_F_EXCL);
  t.equal(sent[1].seq, (sent[0].seq + 1) >>> 0);
});

t.test('a dump gathers every datagram until NLMSG_DONE', async (t) => {
  const { libc, sent } = scripted((seq) => withSeq(captured.addrDump, seq));
  const msgs = new RtnlClient(libc).dump(c.RTM_GETADDR, c.encodeIfAddr({ family: 2, prefixLen: 0, flags: 0, scope: 0, index: 0 }));
  t.equal(sent[0].flags, c.NLM_F_REQUEST | c.NLM_F_DUMP);
  t.equal(msgs.length, 1);
  t.equal(c.decodeIfAddr(msgs[0].payload).prefixLen, 24);
  t.equal(libc.calls.filter((x) => x.name === 'recv').length, 2, 'the DONE came in a second datagram');
});

t.test('replies to an older request are skipped', async (t) => {
  const { libc } = scripted((seq) => [...withSeq(captured.addrExists, seq - 1), ...withSeq(captured.ack, seq)]);
  t.doesNotThrow(() => new RtnlClient(libc).change(c.RTM_SETLINK, 0, Buffer.alloc(16), [], 'up'), 'the stale EEXIST is not taken for this answer');
});

t.test('NLMSG_ERROR becomes a NetlinkError naming the request, the errno and the kernel text', async (t) => {
  const { libc } = scripted((seq) => withSeq(captured.addrExists, seq));
  const err = t.throws(() =>
    new RtnlClient(libc).change(c.RTM_NEWADDR, 0, Buffer.alloc(8), [], 'RTM_NEWADDR 192.0.2.10/24 on eth0'),
  ) as unknown as NetlinkError;
  t.ok(err instanceof NetlinkError);
  t.equal(err.message, 'RTM_NEWADDR 192.0.2.10/24 on eth0: EEXIST (file already exists): ipv4: Address already assigned');
  t.match(err, { code: 'EEXIST', errno: 17 });
  t.equal(toRpcError(err).code, 6, 'ALREADY_EXISTS, as other EEXIST errors');
});

t.test('a kernel that does not answer fails the request instead of hanging', async (t) => {
  const { libc } = scripted(() => []);
  t.throws(() => new RtnlClient(libc).dump(c.RTM_GETLINK, Buffer.alloc(16), 'RTM_GETLINK dump'), {
    message: 'RTM_GETLINK dump: no netlink reply within 2000 ms',
  });
  const poll = libc.calls.find((x) => x.name === 'poll')!;
  t.same(poll.args.slice(1), [1, 2000], 'POLLIN with a bound');
});

t.test('a dump interrupted by concurrent changes is asked again', async (t) => {
  let n = 0;
  const { libc, sent } = scripted((seq) => {
    const parts = withSeq(captured.addrDump, seq);
    // The first answer is marked NLM_F_DUMP_INTR, as the kernel does when the table changed mid-dump.
    if (n++ === 0) parts[0].writeUInt16LE(c.NLM_F_MULTI | c.NLM_F_DUMP_INTR, 6);
    return parts;
  });
  t.equal(new RtnlClient(libc).dump(c.RTM_GETADDR, Buffer.alloc(8)).length, 1);
  t.equal(sent.length, 2);
});

t.test('a socket that cannot be bound is closed again and the error names bind', async (t) => {
  const libc = new RecordingLibc().fail('bindNetlink', 1);
  t.throws(() => new RtnlClient(libc).dump(c.RTM_GETLINK, Buffer.alloc(16)), { code: 'EPERM', message: /^bindNetlink/ });
  t.same(
    libc.calls.map((x) => x.name),
    ['socket', 'bindNetlink', 'close'],
  );
});
