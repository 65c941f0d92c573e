// A new host taking over a yamux session on a byte stream that could not tell the guest the old
// host left (virtio-serial): the "chardev" below is one connection to the server whose far end is
// handed from host A to host B without the server seeing an end, as QEMU does when a host
// reconnects faster than the guest runs.
import net from 'node:net';
import { Duplex } from 'node:stream';
import t from 'tap';
import { YamuxClient } from '../../agent/src/transport/yamux/client.js';
import { encodeHeader, FrameType, HEADER_SIZE, SYN } from '../../agent/src/transport/yamux/frame.js';
import { serveYamux } from '../../agent/src/transport/yamux/server.js';
import type { YamuxSession } from '../../agent/src/transport/yamux/session.js';
import type { YamuxStream } from '../../agent/src/transport/yamux/stream.js';
import { once, socketPair } from './pair.js';

/** The guest's view of the port: one Duplex that outlives the hosts plugged into it. */
class Chardev extends Duplex {
  private host?: net.Socket;
  private onHostData = (chunk: Buffer) => this.push(chunk);

  /** Plugs a host in; bytes the server writes while none is attached are dropped, as QEMU does. */
  attach(host: net.Socket): void {
    this.detach();
    this.host = host;
    host.on('data', this.onHostData);
  }

  /** The host goes away without the server side seeing an end. */
  detach(): void {
    this.host?.off('data', this.onHostData);
    this.host = undefined;
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    if (this.host && !this.host.destroyed) this.host.write(chunk);
    cb();
  }
}

/** Host side: a yamux client over its own socket, whose far end the chardev forwards. */
async function plugHost(dev: Chardev): Promise<{ client: YamuxClient; close(): void }> {
  const pair = await socketPair();
  dev.attach(pair.server);
  const client = new YamuxClient(pair.client, { pingIntervalMs: 0 });
  return {
    client,
    close() {
      dev.detach();
      client.session.destroy();
      pair.close();
    },
  };
}

/** An echo server whose accepted streams are kept for inspection. */
function echoServer(dev: Chardev, newPeerOnReusedId: boolean): { session: YamuxSession; accepted: YamuxStream[]; errors: Map<number, Error> } {
  const accepted: YamuxStream[] = [];
  const errors = new Map<number, Error>();
  const session = serveYamux(
    dev,
    (s) => {
      accepted.push(s);
      s.on('error', (err) => errors.set(accepted.indexOf(s), err));
      s.on('data', (d: Buffer) => s.write(d));
    },
    { newPeerOnReusedId },
  );
  return { session, accepted, errors };
}

async function echo(stream: YamuxStream, text: string): Promise<string> {
  const got = once<Buffer>(stream, 'data');
  stream.write(text);
  return (await got).toString();
}

t.test('a second host starting over at stream 1 takes over: old streams reset, its first stream works', async (t) => {
  const dev = new Chardev();
  const srv = echoServer(dev, true);
  t.teardown(() => srv.session.close());
  const restarts: { streamId: number; reset: number }[] = [];
  srv.session.on('peer-restart', (e) => restarts.push(e));

  const a = await plugHost(dev);
  const a1 = a.client.open();
  const a3 = a.client.open();
  a1.on('error', () => undefined);
  a3.on('error', () => undefined);
  t.equal(await echo(a1, 'host A, stream 1'), 'host A, stream 1');
  t.equal(await echo(a3, 'host A, stream 3'), 'host A, stream 3');
  t.equal(srv.session.streamCount, 2);
  a.close(); // host A dies with both streams open; the server is not told

  const b = await plugHost(dev);
  t.teardown(() => b.close());
  const b1 = b.client.open();
  b1.on('error', () => undefined); // the teardown resets it
  t.equal(b1.id, 1, 'the new host reuses stream id 1');
  t.equal(await echo(b1, 'host B, first call'), 'host B, first call', "the new host's first stream is served");
  t.same(restarts, [{ streamId: 1, reset: 2 }], "one takeover, which dropped host A's two streams");
  t.equal(srv.session.stats.peerRestarts, 1);
  t.equal(srv.session.isClosed, false, 'the session lives on');
  t.equal(srv.session.streamCount, 1, "only host B's stream is open");
  t.equal(srv.accepted[0].destroyed && srv.accepted[1].destroyed, true, "host A's server-side streams are destroyed");
  t.match(srv.errors.get(0), { code: 'ECONNRESET', message: /new peer opened stream 1/ }, 'their users (gRPC connections) see a reset');

  // Host B then opens stream 3, which host A also had: no collision with the dropped one.
  const b3 = b.client.open();
  b3.on('error', () => undefined);
  t.equal(await echo(b3, 'host B, stream 3'), 'host B, stream 3');
  t.equal(srv.session.stats.peerRestarts, 1, 'a higher id is an ordinary new stream');
});

t.test("a takeover sends no RST for the old streams: it would reset the new host's stream of the same id", async (t) => {
  const pair = await socketPair();
  t.teardown(() => pair.close());
  const session = serveYamux(pair.server, (s) => s.on('error', () => undefined), { newPeerOnReusedId: true });
  t.teardown(() => session.close());
  const frames: { type: number; flags: number; id: number }[] = [];
  let buf = Buffer.alloc(0);
  let threeFrames!: () => void;
  const gotThree = new Promise<void>((resolve) => (threeFrames = resolve));
  pair.client.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= HEADER_SIZE) {
      frames.push({ type: buf[1], flags: buf.readUInt16BE(2), id: buf.readUInt32BE(4) });
      buf = buf.subarray(HEADER_SIZE);
    }
    if (frames.length >= 3) threeFrames();
  });
  let restarts = 0;
  session.on('peer-restart', () => restarts++);
  pair.client.write(encodeHeader({ type: FrameType.WindowUpdate, flags: SYN, streamId: 1, length: 0 }));
  pair.client.write(encodeHeader({ type: FrameType.WindowUpdate, flags: SYN, streamId: 3, length: 0 }));
  pair.client.write(encodeHeader({ type: FrameType.WindowUpdate, flags: SYN, streamId: 1, length: 0 }));
  await gotThree;
  t.equal(restarts, 1);
  t.same(
    frames.map((f) => `${f.id}:${f.flags}`),
    ['1:2', '3:2', '1:2'],
    "only ACKs: 1, 3, then the new host's 1",
  );
});

t.test('without newPeerOnReusedId (any other connection) a reused id is still a protocol error', async (t) => {
  const dev = new Chardev();
  const srv = echoServer(dev, false);
  const a = await plugHost(dev);
  const a1 = a.client.open();
  a1.on('error', () => undefined);
  t.equal(await echo(a1, 'x'), 'x');
  a.close();
  const b = await plugHost(dev);
  t.teardown(() => b.close());
  b.client.open().on('error', () => undefined);
  const why = await srv.session.closed;
  t.match(why?.message, /SYN for stream 1, which is already open/);
  t.equal(srv.session.stats.peerRestarts, 0);
});
