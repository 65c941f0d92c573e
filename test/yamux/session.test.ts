import crypto from 'node:crypto';
import t, { type Test } from 'tap';
import { YamuxClient } from '../../agent/src/transport/yamux/client.js';
import { ACK, encodeHeader, FrameType, GoAwayCode, HEADER_SIZE, INITIAL_WINDOW, RST, SYN } from '../../agent/src/transport/yamux/frame.js';
import { serveYamux } from '../../agent/src/transport/yamux/server.js';
import type { YamuxSession } from '../../agent/src/transport/yamux/session.js';
import type { YamuxStream } from '../../agent/src/transport/yamux/stream.js';
import { once, readAll, socketPair, whenClosed, type SocketPair } from './pair.js';

interface Rig {
  pair: SocketPair;
  server: YamuxSession;
  client: YamuxClient;
  accepted: YamuxStream[];
  nextAccepted(): Promise<YamuxStream>;
}

async function rig(t: Test, opts: { acceptBacklog?: number } = {}): Promise<Rig> {
  const pair = await socketPair();
  const accepted: YamuxStream[] = [];
  const waiters: ((s: YamuxStream) => void)[] = [];
  const server = serveYamux(
    pair.server,
    (s) => {
      s.on('error', () => undefined); // resets are asserted where a test expects them
      const w = waiters.shift();
      if (w) w(s);
      else accepted.push(s);
    },
    opts,
  );
  const client = new YamuxClient(pair.client, { pingIntervalMs: 0 });
  t.teardown(() => {
    client.close();
    server.close();
    pair.close();
  });
  return {
    pair,
    server,
    client,
    accepted,
    nextAccepted: () =>
      new Promise((resolve) => {
        const s = accepted.shift();
        if (s) resolve(s);
        else waiters.push(resolve);
      }),
  };
}

function frame(type: FrameType, flags: number, streamId: number, length: number, payload?: Buffer): Buffer {
  const h = encodeHeader({ type, flags, streamId, length });
  return payload ? Buffer.concat([h, payload]) : h;
}

/** Collects raw bytes the server sends back on a connection driven by hand. */
function collect(sock: NodeJS.ReadableStream): { bytes: () => Buffer; waitFor: (n: number) => Promise<Buffer> } {
  let buf = Buffer.alloc(0);
  let want: { n: number; resolve: (b: Buffer) => void } | undefined;
  sock.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    if (want && buf.length >= want.n) want.resolve(buf);
  });
  return {
    bytes: () => buf,
    waitFor: (n) => (buf.length >= n ? Promise.resolve(buf) : new Promise((resolve) => (want = { n, resolve }))),
  };
}

function headers(buf: Buffer): { type: number; flags: number; id: number; length: number }[] {
  const out = [];
  for (let off = 0; off + HEADER_SIZE <= buf.length;) {
    const h = { type: buf[off + 1], flags: buf.readUInt16BE(off + 2), id: buf.readUInt32BE(off + 4), length: buf.readUInt32BE(off + 8) };
    out.push(h);
    off += HEADER_SIZE + (h.type === FrameType.Data ? h.length : 0);
  }
  return out;
}

t.test('a stream carries bytes both ways and FIN half-closes each direction', async (t) => {
  const r = await rig(t);
  const c = r.client.open();
  t.equal(c.id, 1, 'client streams have odd ids from 1');
  c.end('hello yamux');
  const s = await r.nextAccepted();
  t.equal(s.id, 1);
  t.equal((await readAll(s)).toString(), 'hello yamux', 'server reads to the client FIN');
  // The client half-closed, yet the server can still answer.
  s.end('olleh');
  t.equal((await readAll(c)).toString(), 'olleh');
  await Promise.all([whenClosed(c), whenClosed(s)]);
  t.equal(r.server.streamCount, 0, 'fully closed stream leaves the server table');
  t.equal(r.client.session.streamCount, 0, 'and the client table');
  t.equal(r.client.open().id, 3, 'next id is 3');
});

t.test('8 MB through one stream: a paused reader stops the sender after one window', async (t) => {
  const r = await rig(t);
  const data = crypto.randomBytes(8 * 1024 * 1024);
  const c = r.client.open();
  const exhausted = once(c, 'window-exhausted');
  let writeDone = false;
  c.end(data, () => (writeDone = true));
  const s = await r.nextAccepted();
  s.pause();
  await exhausted;
  // The ping travels behind every data frame already sent, so its answer means they have all landed.
  await r.client.ping(5000);
  t.equal(c.peerWindow, 0, 'sender used the whole window');
  t.equal(s.readableLength, INITIAL_WINDOW, 'receiver holds exactly one window of unread data');
  t.equal(s.ourWindow, 0, 'receiver granted nothing while paused');
  t.equal(writeDone, false, 'writer is still waiting (back-pressure reached it)');
  const updatesBefore = r.server.stats.windowUpdatesOut;
  const got = await readAll(s);
  t.equal(got.length, data.length, 'all bytes arrived');
  t.ok(got.equals(data), 'bytes arrived intact and in order');
  const updates = r.server.stats.windowUpdatesOut - updatesBefore;
  // Each update grants at least half a window, and at least (8 MB - 256 KiB) had to be granted.
  t.ok(updates >= (data.length - INITIAL_WINDOW) / INITIAL_WINDOW, `window updates sent as the reader consumed (${updates})`);
  t.ok(updates <= data.length / (INITIAL_WINDOW / 2) + 1, `no more than one per half window (${updates})`);
  t.equal(writeDone, true, 'writer finished once the reader drained');
});

t.test('a reader that drains a full window after a pause grants it back', async (t) => {
  // Regression (found against hashicorp/yamux): Node calls _read() before it takes the chunk out
  // of the buffer and then not again until the next push, so granting only from _read() saw
  // nothing consumed, and a peer that had used its whole window waited forever.
  const pair = await socketPair();
  t.teardown(() => pair.close());
  let stream!: YamuxStream;
  const session = serveYamux(pair.server, (s) => {
    stream = s;
    s.pause();
  });
  t.teardown(() => session.close());
  const rx = collect(pair.client);
  pair.client.write(frame(FrameType.WindowUpdate, SYN, 1, 0));
  pair.client.write(frame(FrameType.Data, 0, 1, INITIAL_WINDOW, crypto.randomBytes(INITIAL_WINDOW)));
  pair.client.write(frame(FrameType.Ping, SYN, 0, 7));
  await rx.waitFor(2 * HEADER_SIZE); // ACK for the stream, then the ping answer: the data is in
  t.equal(stream.readableLength, INITIAL_WINDOW, 'one whole window buffered');
  t.equal(stream.ourWindow, 0);
  stream.resume();
  const all = headers(await rx.waitFor(3 * HEADER_SIZE));
  t.same(all[2], { type: FrameType.WindowUpdate, flags: 0, id: 1, length: INITIAL_WINDOW }, 'the whole window granted back');
});

t.test('8 MB echoed through a pipe with whole-window frames, as a hashicorp peer sends them', async (t) => {
  const pair = await socketPair();
  const server = serveYamux(pair.server, (s) => s.pipe(s), { maxFrame: INITIAL_WINDOW });
  const client = new YamuxClient(pair.client, { pingIntervalMs: 0, maxFrame: INITIAL_WINDOW });
  t.teardown(() => {
    client.close();
    server.close();
    pair.close();
  });
  // Other streams competing for the connection make the echo's writes back-pressure its reads.
  const payloads = [crypto.randomBytes(8 * 1024 * 1024), ...Array.from({ length: 20 }, (_, i) => crypto.randomBytes(1000 + i * 5000))];
  const ok = await Promise.all(
    payloads.map(async (data) => {
      const c = client.open();
      c.end(data);
      return (await readAll(c)).equals(data);
    }),
  );
  t.equal(ok.filter(Boolean).length, payloads.length, 'every stream, the 8 MB one too, echoed intact');
});

t.test('100 concurrent streams keep their own bytes', async (t) => {
  const r = await rig(t);
  const n = 100;
  const payloads = Array.from({ length: n }, (_, i) => crypto.randomBytes(20_000 + i * 997));
  r.server.on('stream', (s: YamuxStream) => s.pipe(s)); // echo
  r.accepted.forEach((s) => s.pipe(s));
  const results = await Promise.all(
    payloads.map(async (p) => {
      const c = r.client.open();
      c.end(p);
      return (await readAll(c)).equals(p);
    }),
  );
  t.equal(results.filter(Boolean).length, n, 'every stream echoed exactly its own payload');
  t.equal(r.server.stats.streamsAccepted, n);
});

t.test('pings are answered with the same opaque value', async (t) => {
  const r = await rig(t);
  const rtt = await r.client.ping(5000);
  t.ok(rtt >= 0, 'client ping resolves with a round trip time');
  t.equal(r.server.stats.pingsAnswered, 1);

  const pair = await socketPair();
  t.teardown(() => pair.close());
  const session = serveYamux(pair.server, () => undefined);
  t.teardown(() => session.close());
  const rx = collect(pair.client);
  pair.client.write(frame(FrameType.Ping, SYN, 0, 0xdeadbeef));
  const got = await rx.waitFor(HEADER_SIZE);
  t.same(headers(got), [{ type: FrameType.Ping, flags: ACK, id: 0, length: 0xdeadbeef }]);
});

t.test('server answers a SYN with ACK, and RST from the peer resets only that stream', async (t) => {
  const pair = await socketPair();
  t.teardown(() => pair.close());
  const streams: YamuxStream[] = [];
  const session = serveYamux(pair.server, (s) => streams.push(s));
  t.teardown(() => session.close());
  const rx = collect(pair.client);
  pair.client.write(frame(FrameType.WindowUpdate, SYN, 1, 0));
  pair.client.write(frame(FrameType.Data, SYN, 3, 5, Buffer.from('early')));
  await rx.waitFor(2 * HEADER_SIZE);
  t.same(headers(rx.bytes()), [
    { type: FrameType.WindowUpdate, flags: ACK, id: 1, length: 0 },
    { type: FrameType.WindowUpdate, flags: ACK, id: 3, length: 0 },
  ]);
  t.equal(streams.length, 2);
  const errored = once<Error>(streams[0], 'error');
  pair.client.write(frame(FrameType.WindowUpdate, RST, 1, 0));
  t.match((await errored).message, /reset by peer/);
  t.equal(session.streamCount, 1, 'the other stream is untouched');
  t.equal(streams[1].read()?.toString(), 'early', 'data that came with the SYN was delivered');
  t.equal(session.isClosed, false);
});

t.test('a locally destroyed stream sends RST; the peer gets ECONNRESET, the session lives on', async (t) => {
  const r = await rig(t);
  const c = r.client.open();
  c.write('x');
  const s = await r.nextAccepted();
  const err = once<NodeJS.ErrnoException>(c, 'error');
  s.destroy();
  t.equal((await err).code, 'ECONNRESET');
  const c2 = r.client.open();
  c2.end('still works');
  const s2 = await r.nextAccepted();
  t.equal((await readAll(s2)).toString(), 'still works');
});

t.test('go-away: the peer may not open new streams, open ones carry on', async (t) => {
  const r = await rig(t);
  const c = r.client.open();
  const s = await r.nextAccepted();
  r.server.goAway();
  await r.client.ping(5000); // the go-away was sent before the ping answer
  t.throws(() => r.client.open(), { code: 'ECONNREFUSED' });
  c.end('after go-away');
  t.equal((await readAll(s)).toString(), 'after go-away');

  // A client that ignores the go-away gets RST.
  const pair = await socketPair();
  t.teardown(() => pair.close());
  const session = serveYamux(pair.server, () => t.fail('no stream may be accepted after go-away'));
  t.teardown(() => session.close());
  const rx = collect(pair.client);
  session.goAway();
  pair.client.write(frame(FrameType.WindowUpdate, SYN, 1, 0));
  await rx.waitFor(2 * HEADER_SIZE);
  t.same(headers(rx.bytes()), [
    { type: FrameType.GoAway, flags: 0, id: 0, length: GoAwayCode.Normal },
    { type: FrameType.WindowUpdate, flags: RST, id: 1, length: 0 },
  ]);
  t.equal(session.stats.streamsRefused, 1);
});

t.test('streams beyond the accept backlog are refused with RST', async (t) => {
  const r = await rig(t, { acceptBacklog: 2 });
  const a = r.client.open();
  const b = r.client.open();
  const c = r.client.open();
  const err = once<NodeJS.ErrnoException>(c, 'error');
  t.equal((await err).code, 'ECONNRESET', 'third stream reset');
  t.equal(r.server.stats.streamsRefused, 1);
  t.equal(r.server.streamCount, 2);
  a.destroy();
  b.destroy();
  await r.client.ping(5000); // both RSTs have reached the server
  t.equal(r.server.streamCount, 0);
  const d = r.client.open();
  d.end('room again');
  const s = await r
    .nextAccepted()
    .then(() => r.nextAccepted())
    .then(() => r.nextAccepted());
  t.equal((await readAll(s)).toString(), 'room again');
});

t.test('garbage ends the session with a protocol-error go-away', async (t) => {
  for (const [name, bytes] of [
    ['text', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['short noise (less than a header)', Buffer.from('hi\n')],
    ['HTTP/2 preface', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')],
    ['unknown type', frame(7 as FrameType, 0, 0, 0)],
    ['data on stream 0', frame(FrameType.Data, 0, 0, 1, Buffer.from('x'))],
    ['oversize data frame', frame(FrameType.Data, SYN, 1, INITIAL_WINDOW + 1)],
    ['even id from client', frame(FrameType.WindowUpdate, SYN, 2, 0)],
    ['duplicate SYN', Buffer.concat([frame(FrameType.WindowUpdate, SYN, 1, 0), frame(FrameType.WindowUpdate, SYN, 1, 0)])],
    [
      'window overrun',
      Buffer.concat([frame(FrameType.Data, SYN, 1, 200_000, Buffer.alloc(200_000)), frame(FrameType.Data, 0, 1, 100_000, Buffer.alloc(100_000))]),
    ],
  ] as const) {
    const pair = await socketPair();
    // Nothing reads the streams, so no window is granted back (the overrun case relies on it).
    const session = serveYamux(pair.server, (s) => s.on('error', () => undefined));
    const rx = collect(pair.client);
    const ended = once(pair.client, 'end');
    pair.client.write(bytes);
    const reason = await session.closed;
    t.match(reason?.message, /yamux protocol error/, `${name}: ${reason?.message}`);
    await ended;
    const last = headers(rx.bytes()).pop();
    t.same(last, { type: FrameType.GoAway, flags: 0, id: 0, length: GoAwayCode.ProtocolError }, `${name}: peer told why`);
    pair.close();
  }
});

t.test('the connection ending resets open streams on both sides', async (t) => {
  const r = await rig(t);
  const c = r.client.open();
  c.write('x');
  const s = await r.nextAccepted();
  const serverErr = once<NodeJS.ErrnoException>(s, 'error');
  const clientErr = once<NodeJS.ErrnoException>(c, 'error');
  r.pair.client.end(); // EOF, as a host closing its side of the channel
  t.equal((await serverErr).code, 'ECONNRESET');
  t.equal((await clientErr).code, 'ECONNRESET');
  t.equal(await r.server.closed, undefined, 'a plain EOF is a clean end for the session');
  t.throws(() => r.client.open(), /closed/);
});

t.test('a go-away with an error code from the peer ends the session', async (t) => {
  const pair = await socketPair();
  t.teardown(() => pair.close());
  const session = serveYamux(pair.server, () => undefined);
  pair.client.write(frame(FrameType.GoAway, 0, 0, GoAwayCode.InternalError));
  t.match((await session.closed)?.message, /peer went away: internal error/);
});

t.test('the client keeps pinging, and a peer that stops answering ends its session', async (t) => {
  const pair = await socketPair();
  t.teardown(() => pair.close());
  const server = serveYamux(pair.server, () => undefined);
  t.teardown(() => server.close());
  let answered!: () => void;
  const three = new Promise<void>((resolve) => (answered = resolve));
  let n = 0;
  const client = new YamuxClient(pair.client, { pingIntervalMs: 5, onPing: () => ++n === 3 && answered() });
  t.teardown(() => client.close());
  await three;
  t.ok(server.stats.pingsAnswered >= 3, `server answered ${server.stats.pingsAnswered} keep-alive pings`);

  // A peer that reads but never answers (a hung guest).
  const mute = await socketPair();
  t.teardown(() => mute.close());
  mute.server.resume();
  const hung = new YamuxClient(mute.client, { pingIntervalMs: 5, pingTimeoutMs: 20 });
  t.match((await hung.closed)?.message, /yamux keep-alive failed: yamux ping \d+: no answer within 20 ms/);
});
