// Http2HostConn between Node's http2 client (the host) and a plain Node http2 server (the agent's
// HTTP/2 layer): `:authority` fixed, every other header, body and stream intact; connections that
// end on an error closed.
import crypto from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import { Http2HostConn, normaliseAuthority } from '../../agent/src/transport/http2-host-conn.js';
import { encodeLiteralBlock } from '../../agent/src/transport/hpack.js';
import { badOpenings } from '../helpers/raw-http2.js';

/** A unix-less loopback pair: the host dials, the accepted socket goes to `serve`. */
async function serveOn(t: Test, serve: (sock: net.Socket) => void): Promise<number> {
  const server = net.createServer(serve);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** A Node HTTP/2 server that answers each request with its headers (JSON) and then its body. */
function echoServer(t: Test) {
  const h2 = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  h2.on('session', (s) => sessions.push(s));
  h2.on('stream', (stream, headers) => {
    const body: Buffer[] = [];
    stream.on('data', (c: Buffer) => body.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end(Buffer.concat([Buffer.from(JSON.stringify(headers) + '\n'), ...body]));
    });
  });
  t.teardown(() => sessions.forEach((s) => s.destroy()));
  return { inject: (d: Duplex) => h2.emit('connection', d), sessions };
}

function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: Buffer) {
  return new Promise<{ rst: number; headers: Record<string, string>; body: Buffer }>((resolve) => {
    const req = session.request({ ':method': 'POST', ...headers });
    req.on('error', () => undefined);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('close', () => {
      const all = Buffer.concat(chunks);
      const nl = all.indexOf(10);
      resolve({ rst: req.rstCode ?? 0, headers: nl > 0 ? JSON.parse(all.subarray(0, nl).toString()) : {}, body: all.subarray(nl + 1) });
    });
    req.end(body);
  });
}

t.test('normaliseAuthority percent-encodes only what nghttp2 refuses', async (t) => {
  t.equal(normaliseAuthority(Buffer.from('unix:////run/vc/sbs/x/kata.sock')).toString(), 'unix:%2F%2F%2F%2Frun%2Fvc%2Fsbs%2Fx%2Fkata.sock');
  t.equal(normaliseAuthority(Buffer.from('a b\\c')).toString(), 'a%20b%5Cc');
  const plain = Buffer.from('localhost:1024');
  t.equal(normaliseAuthority(plain), plain, 'an authority nghttp2 takes is kept as it is');
});

t.test('without the layer, Node refuses a slash in :authority', async (t) => {
  const server = echoServer(t);
  const port = await serveOn(t, (sock) => server.inject(sock));
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const r = await request(session, { ':path': '/x', ':authority': 'unix:////run/kata.sock' }, Buffer.alloc(0));
  t.equal(r.rst, http2.constants.NGHTTP2_PROTOCOL_ERROR, 'RST_STREAM PROTOCOL_ERROR: why Http2HostConn exists');
});

t.test('through the layer: authority fixed, headers, bodies and the dynamic table intact', async (t) => {
  const server = echoServer(t);
  const port = await serveOn(t, (sock) => server.inject(new Http2HostConn(sock)));
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const big = crypto.randomBytes(3 << 20);
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      request(
        session,
        {
          ':path': `/grpc.AgentService/M${i % 4}`,
          ':authority': 'unix:////run/vc/sbs/conn-test/kata.sock',
          'x-index': String(i),
          'x-repeated': 'same every time',
          // 40 KB of header: the client sends CONTINUATION frames, and so does the layer.
          ...(i === 5 ? { 'x-large': 'L'.repeat(40_000) } : {}),
          [http2.sensitiveHeaders]: ['x-index'],
        },
        i === 9 ? big : Buffer.from(`body ${i}`),
      ),
    ),
  );
  results.forEach((r, i) => {
    t.equal(r.rst, 0, `request ${i} not reset`);
    t.equal(r.headers[':authority'], 'unix:%2F%2F%2F%2Frun%2Fvc%2Fsbs%2Fconn-test%2Fkata.sock', `request ${i} authority`);
    t.same([r.headers[':path'], r.headers['x-index'], r.headers['x-repeated']], [`/grpc.AgentService/M${i % 4}`, String(i), 'same every time']);
    if (i === 5) t.equal(r.headers['x-large'], 'L'.repeat(40_000), 'the 40 KB header arrived whole');
    t.ok(r.body.equals(i === 9 ? big : Buffer.from(`body ${i}`)), `request ${i} body`);
  });
});

interface HostView {
  goawayCodes: number[];
  closedByServer: boolean;
}

/** Writes `bytes` as a host and records the GOAWAY codes it reads until the server closes (bounded). */
function hostSends(port: number, bytes: Buffer): Promise<HostView> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    const done = (closedByServer: boolean) => {
      clearTimeout(timer);
      c.destroy();
      const all = Buffer.concat(got);
      const goawayCodes: number[] = [];
      for (let at = 0; at + 9 <= all.length; at += 9 + all.readUIntBE(at, 3)) {
        if (all[at + 3] === 7) goawayCodes.push(all.readUInt32BE(at + 13));
      }
      resolve({ goawayCodes, closedByServer });
    };
    const timer = setTimeout(() => done(false), 5000);
    c.on('data', (d: Buffer) => got.push(d));
    c.on('end', () => done(true));
    c.on('error', () => undefined);
    c.write(bytes);
  });
}

t.test('connections ended on an error are closed, with a GOAWAY saying why', async (t) => {
  const server = echoServer(t);
  const inner: net.Socket[] = [];
  const port = await serveOn(t, (sock) => {
    inner.push(sock);
    server.inject(new Http2HostConn(sock));
  });
  const hpack = await hostSends(port, badOpenings['bad HPACK block']);
  t.same(hpack, { goawayCodes: [http2.constants.NGHTTP2_COMPRESSION_ERROR], closedByServer: true }, 'bad HPACK: COMPRESSION_ERROR, closed');
  const settings = await hostSends(port, badOpenings['SETTINGS of 5 bytes']);
  t.same(settings, { goawayCodes: [http2.constants.NGHTTP2_FRAME_SIZE_ERROR], closedByServer: true }, "nghttp2's own FRAME_SIZE_ERROR, then closed");
  const data = await hostSends(port, badOpenings['DATA on stream 0']);
  t.same(data, { goawayCodes: [http2.constants.NGHTTP2_PROTOCOL_ERROR], closedByServer: true });
  t.ok(
    inner.every((s) => s.destroyed),
    'every server-side socket destroyed',
  );
  t.ok(
    server.sessions.every((s) => s.destroyed),
    'and every HTTP/2 session with it',
  );
});

t.test('a request the host sent just before closing still reaches the server', async (t) => {
  // A host may write a whole request and close at once (it gave up, or it has nothing more to say):
  // the layer must hand the server every byte it pushed before it goes away, as a plain socket does.
  const h2 = http2.createServer();
  const paths: string[] = [];
  h2.on('stream', (stream, headers) => {
    paths.push(String(headers[':path']));
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200 });
    stream.end();
  });
  const closed: Promise<void>[] = [];
  const port = await serveOn(t, (sock) => {
    const conn = new Http2HostConn(sock);
    closed.push(new Promise((r) => conn.once('close', () => r())));
    h2.emit('connection', conn);
  });
  const field = (name: string, value: string) => ({ name: Buffer.from(name), value: Buffer.from(value), sensitive: false });
  const block = encodeLiteralBlock([field(':method', 'POST'), field(':scheme', 'http'), field(':path', '/dropped'), field(':authority', 'unix:///x')]);
  const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream, 5);
    return Buffer.concat([h, payload]);
  };
  const bytes = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, block)]);
  for (let i = 0; i < 20; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    await new Promise((r) => c.once('connect', r));
    c.end(bytes);
    c.destroy();
    await new Promise((r) => c.once('close', r));
  }
  await Promise.all(closed);
  t.equal(paths.length, 20, 'every request was served');
  t.ok(paths.every((p) => p === '/dropped'));
});
