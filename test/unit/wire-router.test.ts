import t from 'tap';
import { PassThrough, type Duplex } from 'node:stream';
import { HTTP2_PREFACE, routeConnection, type Wire, type WireRoutes } from '../../agent/src/transport/wire-router.js';

interface Outcome {
  wire?: Wire;
  /** What the chosen server reads: must be the whole stream from its first byte. */
  bytes?: Promise<Buffer>;
  rejected?: string;
  conn: PassThrough;
}

function readAll(d: Duplex): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    d.on('data', (c: Buffer) => parts.push(c));
    d.on('end', () => resolve(Buffer.concat(parts)));
    d.resume();
  });
}

/** Feeds chunks one event-loop turn apart, as separate packets would arrive, then ends. */
async function feed(chunks: Buffer[], routes: (o: Outcome) => WireRoutes, end = true): Promise<Outcome> {
  const conn = new PassThrough();
  const o: Outcome = { conn };
  routeConnection(conn, routes(o), { onReject: (r) => (o.rejected = r) });
  for (const c of chunks) {
    if (conn.destroyed) break;
    conn.write(c);
    await new Promise((r) => setImmediate(r));
  }
  if (end && !conn.destroyed) conn.end();
  await new Promise((r) => setImmediate(r));
  return o;
}

const agentRoutes = (o: Outcome): WireRoutes => ({
  grpc: (c) => ((o.wire = 'grpc'), (o.bytes = readAll(c))),
  ttrpc: (c) => ((o.wire = 'ttrpc'), (o.bytes = readAll(c))),
});
const serialRoutes = (o: Outcome): WireRoutes => ({
  grpc: (c) => ((o.wire = 'grpc'), (o.bytes = readAll(c))),
  yamux: (c) => ((o.wire = 'yamux'), (o.bytes = readAll(c))),
});

const bytewise = (b: Buffer) => [...b].map((x) => Buffer.of(x));
const h2 = Buffer.concat([HTTP2_PREFACE, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
const ttrpcFrame = Buffer.from([0, 0, 0, 2, 0, 0, 0, 1, 1, 0, 0x0a, 0x00]);
const yamuxSyn = Buffer.from([0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);

t.test('the HTTP/2 preface routes to gRPC, whole, split or a byte at a time, with nothing lost', async (t) => {
  for (const [name, chunks] of [
    ['one packet', [h2]],
    ['split inside the preface', [h2.subarray(0, 7), h2.subarray(7, 19), h2.subarray(19)]],
    ['a byte at a time', bytewise(h2)],
  ] as const) {
    const o = await feed([...chunks], agentRoutes);
    t.equal(o.wire, 'grpc', name);
    t.same(await o.bytes, h2, `${name}: the gRPC server reads every byte`);
  }
});

t.test('ttrpc is chosen on the first byte; the whole frame reaches the ttrpc server', async (t) => {
  for (const chunks of [[ttrpcFrame], bytewise(ttrpcFrame)]) {
    const o = await feed(chunks, agentRoutes);
    t.equal(o.wire, 'ttrpc');
    t.same(await o.bytes, ttrpcFrame);
  }
  // Even a frame whose length is over the limit goes to ttrpc, which answers RESOURCE_EXHAUSTED.
  const o = await feed([Buffer.from([0, 0x41, 0, 0, 0, 0, 0, 1, 1, 0])], agentRoutes);
  t.equal(o.wire, 'ttrpc');
});

t.test('on a serial channel 0x00 means yamux, checked on its type byte', async (t) => {
  let o = await feed(bytewise(yamuxSyn), serialRoutes);
  t.equal(o.wire, 'yamux');
  t.same(await o.bytes, yamuxSyn);
  o = await feed([Buffer.from([0, 9, 0, 1])], serialRoutes);
  t.equal(o.wire, undefined);
  t.match(o.rejected, /not a yamux header/);
  t.ok(o.conn.destroyed);
  o = await feed(bytewise(h2), serialRoutes);
  t.equal(o.wire, 'grpc', 'gRPC without yamux on serial is still recognised');
});

t.test('adversarial prefixes close the connection and route nowhere', async (t) => {
  const cases: [string, Buffer[], RegExp][] = [
    ['HTTP/1.1 request', [Buffer.from('GET / HTTP/1.1\r\n\r\n')], /first byte 0x47/],
    ['preface that goes wrong at its last byte', [Buffer.concat([HTTP2_PREFACE.subarray(0, 23), Buffer.from('X')])], /byte 23/],
    ['preface that goes wrong mid-way, a byte at a time', bytewise(Buffer.from('PRI * HTTP/1.1\r\n')), /byte 11/],
    ['garbage', [Buffer.from([0xff, 0xfe, 0x00, 0x01])], /first byte 0xff/],
    ['lower-case preface', [Buffer.from('pri * HTTP/2.0\r\n\r\nSM\r\n\r\n')], /first byte 0x70/],
  ];
  for (const [name, chunks, why] of cases) {
    const o = await feed(chunks, agentRoutes, false);
    t.equal(o.wire, undefined, name);
    t.match(o.rejected, why, name);
    t.ok(o.conn.destroyed, `${name}: closed`);
  }
});

t.test('a peer that closes before the wire is known is closed, not routed', async (t) => {
  let o = await feed([], agentRoutes);
  t.equal(o.wire, undefined);
  t.match(o.rejected, /closed without sending/);
  o = await feed(bytewise(HTTP2_PREFACE.subarray(0, 10)), agentRoutes);
  t.equal(o.wire, undefined);
  t.match(o.rejected, /closed after 10 bytes/);
  t.ok(o.conn.destroyed);
  o = await feed([Buffer.of(0)], serialRoutes);
  t.match(o.rejected, /closed after 1 bytes/);
});

t.test('a short read waits: nothing is decided on a partial preface', async (t) => {
  const o = await feed([HTTP2_PREFACE.subarray(0, 5)], agentRoutes, false);
  t.equal(o.wire, undefined);
  t.equal(o.rejected, undefined);
  t.notOk(o.conn.destroyed);
  o.conn.destroy();
});

t.test('ttrpc and yamux cannot share a channel', async (t) => {
  t.throws(() => routeConnection(new PassThrough(), { ttrpc: () => undefined, yamux: () => undefined } as never), /not both/);
});
