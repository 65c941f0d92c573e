// Kernel uevents: the parser of netlink datagrams, and the listener's waits (fed made-up events with
// onData; its netlink socket is never opened here).
import t from 'tap';
import { parseUevents, type Uevent } from '../../agent/src/uevent/uevent.js';
import { UeventListener, type DeviceMatcher } from '../../agent/src/uevent/listener.js';
import { createLogger } from '../../agent/src/log/logger.js';

const log = createLogger('silent');

/** One datagram as the kernel sends it: "ACTION@DEVPATH\0KEY=VALUE\0...\0". */
function uevent(header: string, fields: Record<string, string>): Buffer {
  return Buffer.from([header, ...Object.entries(fields).map(([k, v]) => `${k}=${v}`)].join('\0') + '\0', 'utf8');
}

const VDA = '/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3/block/vda';
const vdaFields = {
  ACTION: 'add',
  DEVPATH: VDA,
  SUBSYSTEM: 'block',
  MAJOR: '254',
  MINOR: '0',
  DEVNAME: 'vda',
  DEVTYPE: 'disk',
  SEQNUM: '1234',
};
const vdaAdd = () => uevent(`add@${VDA}`, vdaFields);

t.test('parseUevents: a virtio-blk disk add event', async (t) => {
  const evs = parseUevents(vdaAdd());
  t.equal(evs.length, 1);
  t.same(evs[0], {
    action: 'add',
    devpath: VDA,
    subsystem: 'block',
    devname: 'vda',
    modalias: '',
    major: 254,
    minor: 0,
    seqnum: 1234,
    env: vdaFields,
  });
});

t.test('parseUevents: a Uint8Array view into a larger buffer is read at its offset', async (t) => {
  const inner = vdaAdd();
  const big = Buffer.concat([Buffer.from('xxxx'), inner, Buffer.from('yyyy')]);
  const view = new Uint8Array(big.buffer, big.byteOffset + 4, inner.length);
  const evs = parseUevents(view);
  t.equal(evs.length, 1);
  t.equal(evs[0].devpath, VDA);
  t.equal(evs[0].seqnum, 1234);
});

t.test('parseUevents: two events back to back in one buffer', async (t) => {
  const virtioDev = '/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3';
  const buf = Buffer.concat([
    uevent(`add@${virtioDev}`, {
      ACTION: 'add',
      DEVPATH: virtioDev,
      SUBSYSTEM: 'virtio',
      MODALIAS: 'virtio:d00000002v00001AF4',
      SEQNUM: '1233',
    }),
    vdaAdd(),
  ]);
  const evs = parseUevents(buf);
  t.equal(evs.length, 2);
  t.match(evs[0], { action: 'add', devpath: virtioDev, subsystem: 'virtio', modalias: 'virtio:d00000002v00001AF4', devname: '', seqnum: 1233 });
  t.equal(evs[0].major, undefined, 'no MAJOR field: no major');
  t.match(evs[1], { action: 'add', devpath: VDA, subsystem: 'block', devname: 'vda', major: 254, minor: 0, seqnum: 1234 });
});

t.test('parseUevents: an event missing DEVPATH (or ACTION) yields nothing; its neighbours still parse', async (t) => {
  const noDevpath = uevent(`add@${VDA}`, { ACTION: 'add', SUBSYSTEM: 'block', DEVNAME: 'vda', MAJOR: '254', MINOR: '0' });
  t.same(parseUevents(noDevpath), []);
  const noAction = uevent(`add@${VDA}`, { DEVPATH: VDA, SUBSYSTEM: 'block' });
  t.same(parseUevents(noAction), []);
  const evs = parseUevents(Buffer.concat([noDevpath, vdaAdd(), noAction]));
  t.equal(evs.length, 1);
  t.equal(evs[0].devpath, VDA);
});

t.test('parseUevents: a non-numeric MAJOR is no number', async (t) => {
  const evs = parseUevents(uevent(`add@${VDA}`, { ...vdaFields, MAJOR: '25x', MINOR: '' }));
  t.equal(evs.length, 1);
  t.equal(evs[0].major, undefined);
  t.equal(evs[0].minor, undefined);
  t.equal(evs[0].env.MAJOR, '25x', 'the raw value stays in env');
});

t.test('parseUevents: garbage yields nothing', async (t) => {
  t.same(parseUevents(new Uint8Array(0)), []);
  t.same(parseUevents(Buffer.from('hello world')), []);
  t.same(parseUevents(Buffer.from('ACTION=add\0DEVPATH=/devices/x\0')), [], 'fields with no header before them');
  // libudev's re-broadcast: a binary header after "libudev\0", no "ACTION@DEVPATH" token.
  t.same(parseUevents(Buffer.concat([Buffer.from('libudev\0'), Buffer.from([0xfe, 0xed, 0xca, 0xfe, 0, 0, 0, 0x28])])), []);
  // Deterministic pseudo-random bytes (a linear congruential generator), many buffers.
  let seed = 0x2545f491;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
  for (let i = 0; i < 200; i++) {
    const buf = Buffer.alloc(64 + (i % 200));
    for (let j = 0; j < buf.length; j++) buf[j] = next();
    const evs = parseUevents(buf);
    if (evs.length !== 0) {
      t.fail(`random buffer ${i} parsed as ${JSON.stringify(evs)}`);
      return;
    }
  }
  t.pass('200 random buffers: no events');
});

// ---- the listener ----

function listener(onModalias?: (modalias: string, ev: Uevent) => void) {
  return new UeventListener({ libc: {} as never, log, onModalias });
}

/** A matcher for one devpath's add/change events; `present` answers what `sysfs()` says. */
function byDevpath(devpath: string, sysfs: () => string | undefined = () => undefined): DeviceMatcher<string> & { presentCalls: number } {
  const m = {
    what: `test device ${devpath}`,
    presentCalls: 0,
    fromEvent: (ev: Uevent) => (ev.devpath === devpath && ev.action !== 'remove' ? `event:${ev.devname}:${ev.seqnum}` : undefined),
    present: () => {
      m.presentCalls++;
      return sysfs();
    },
  };
  return m;
}

t.test('listener: waitFor resolves from a later event', async (t) => {
  const l = listener();
  const p = l.waitFor(byDevpath(VDA), 10_000);
  let settled = false;
  void p.then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  t.notOk(settled, 'nothing yet: still waiting');
  l.onData(uevent('add@/devices/virtual/block/loop0', { ACTION: 'add', DEVPATH: '/devices/virtual/block/loop0', SUBSYSTEM: 'block' }));
  await new Promise((r) => setImmediate(r));
  t.notOk(settled, 'an unrelated event does not settle it');
  l.onData(vdaAdd());
  t.equal(await p, 'event:vda:1234');
  t.equal(l.received, 2);
});

t.test('listener: waitFor resolves from an event seen before the wait (history)', async (t) => {
  const l = listener();
  l.onData(vdaAdd());
  l.onData(uevent('add@/devices/virtual/block/loop0', { ACTION: 'add', DEVPATH: '/devices/virtual/block/loop0', SUBSYSTEM: 'block' }));
  const m = byDevpath(VDA);
  t.equal(await l.waitFor(m, 10_000), 'event:vda:1234');
  t.equal(m.presentCalls, 0, 'found in history without a look at sysfs');
});

t.test('listener: the latest event of a devpath is the one remembered', async (t) => {
  const l = listener();
  l.onData(vdaAdd());
  l.onData(uevent(`change@${VDA}`, { ...vdaFields, ACTION: 'change', SEQNUM: '1300' }));
  t.equal(await l.waitFor(byDevpath(VDA), 10_000), 'event:vda:1300');
});

t.test('listener: waitFor resolves from present() when no event came', async (t) => {
  const l = listener();
  const m = byDevpath(VDA, () => 'sysfs:vda');
  t.equal(await l.waitFor(m, 10_000), 'sysfs:vda');
  t.equal(m.presentCalls, 1);
  t.equal(l.received, 0);
});

t.test('listener: present() is asked again on every event', async (t) => {
  const l = listener();
  let there = false;
  const m = byDevpath(VDA, () => (there ? 'sysfs:vda' : undefined));
  const p = l.waitFor(m, 10_000);
  there = true;
  // An event of some other device: no match by event, but the look at sysfs now finds it.
  l.onData(uevent('add@/devices/virtual/block/loop0', { ACTION: 'add', DEVPATH: '/devices/virtual/block/loop0', SUBSYSTEM: 'block' }));
  t.equal(await p, 'sysfs:vda');
});

t.test('listener: a remove event makes a seen device forgotten', async (t) => {
  const l = listener();
  l.onData(vdaAdd());
  l.onData(uevent(`remove@${VDA}`, { ...vdaFields, ACTION: 'remove', SEQNUM: '1240' }));
  const err = await l.waitFor(byDevpath(VDA), 30).then(
    (r) => new Error(`resolved with ${r}`),
    (e: Error) => e,
  );
  t.equal(err.name, 'DeadlineExceeded', 'the removed disk is not found in history');
  // Not even its remove event is kept: a matcher that would take any event of the devpath finds none.
  const anyAction: DeviceMatcher<string> = {
    what: 'any event of vda',
    fromEvent: (ev) => (ev.devpath === VDA ? `${ev.action}:${ev.seqnum}` : undefined),
    present: () => undefined,
  };
  const err2 = await l.waitFor(anyAction, 30).then(
    (r) => new Error(`resolved with ${r}`),
    (e: Error) => e,
  );
  t.equal(err2.name, 'DeadlineExceeded', 'the devpath is gone from history');
  // And a new add brings it back.
  l.onData(uevent(`add@${VDA}`, { ...vdaFields, SEQNUM: '1250' }));
  t.equal(await l.waitFor(byDevpath(VDA), 10_000), 'event:vda:1250');
});

t.test('listener: timeout rejects with DeadlineExceeded naming the matcher', async (t) => {
  const l = listener();
  const m = byDevpath('/devices/nowhere/block/vdq');
  const err = await l.waitFor(m, 20).then(
    () => new Error('resolved'),
    (e: Error) => e,
  );
  t.equal(err.name, 'DeadlineExceeded');
  t.match(err.message, m.what);
  t.match(err.message, /20 ms/);
  // The waiter is gone: a later matching event is not delivered to a settled promise (no throw).
  l.onData(uevent('add@/devices/nowhere/block/vdq', { ACTION: 'add', DEVPATH: '/devices/nowhere/block/vdq', SUBSYSTEM: 'block' }));
});

t.test('listener: an AbortSignal abort rejects with Cancelled', async (t) => {
  const l = listener();
  const m = byDevpath(VDA);
  const ac = new AbortController();
  const p = l.waitFor(m, 10_000, ac.signal);
  ac.abort();
  const err = await p.then(
    () => new Error('resolved'),
    (e: Error) => e,
  );
  t.equal(err.name, 'Cancelled');
  t.match(err.message, m.what);
  // A later event for it changes nothing (the waiter was dropped).
  l.onData(vdaAdd());

  const pre = new AbortController();
  pre.abort();
  const err2 = await l.waitFor(byDevpath('/devices/none'), 10_000, pre.signal).then(
    () => new Error('resolved'),
    (e: Error) => e,
  );
  t.equal(err2.name, 'Cancelled', 'a signal aborted already rejects at once');
});

t.test('listener: a matcher that throws rejects the wait with its error', async (t) => {
  const l = listener();
  const boom: DeviceMatcher<string> = {
    what: 'exploding',
    fromEvent: () => undefined,
    present: () => {
      throw new Error('sysfs says no');
    },
  };
  await t.rejects(l.waitFor(boom, 10_000), { message: 'sysfs says no' });
});

t.test('listener: onModalias is called for add events with a MODALIAS only', async (t) => {
  const calls: [string, string][] = [];
  const l = listener((modalias, ev) => calls.push([modalias, ev.action]));
  const dev = '/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3';
  const base = { DEVPATH: dev, SUBSYSTEM: 'virtio', MODALIAS: 'virtio:d00000002v00001AF4' };
  l.onData(uevent(`add@${dev}`, { ACTION: 'add', ...base }));
  l.onData(uevent(`change@${dev}`, { ACTION: 'change', ...base }));
  l.onData(uevent(`bind@${dev}`, { ACTION: 'bind', ...base }));
  l.onData(uevent(`remove@${dev}`, { ACTION: 'remove', ...base }));
  l.onData(vdaAdd()); // an add without MODALIAS
  t.same(calls, [['virtio:d00000002v00001AF4', 'add']]);
  t.equal(l.received, 5);
});

t.test('listener: an onModalias that throws does not stop the waits', async (t) => {
  const l = listener(() => {
    throw new Error('modprobe failed');
  });
  const p = l.waitFor(byDevpath(VDA), 10_000);
  l.onData(uevent(`add@${VDA}`, { ...vdaFields, MODALIAS: 'virtio:d00000002v00001AF4' }));
  t.equal(await p, 'event:vda:1234');
});
