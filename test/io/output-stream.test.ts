import type net from 'node:net';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { MAX_READ, OutputStream } from '../../agent/src/io/output-stream.js';

const never = new AbortController().signal;

// A PassThrough behaves as the fd-backed socket does for everything OutputStream uses (data, end,
// error, pause/resume) and lets the test decide exactly when bytes arrive.
function source(): PassThrough & net.Socket {
  return new PassThrough() as PassThrough & net.Socket;
}

const tick = () => new Promise((r) => setImmediate(r));

t.test('past the high-water mark the source is paused, and resumed once the host reads', async (t) => {
  const src = source();
  const out = new OutputStream(src, { highWater: 64 * 1024, eioIsEnd: false });
  for (let i = 0; i < 8; i++) src.write(Buffer.alloc(16 * 1024, i));
  await tick();
  t.equal(out.pending, 64 * 1024, 'stops taking bytes at the mark; the rest stays upstream');
  t.ok(src.isPaused(), 'source paused: the writer gets throttled');
  const first = await out.read(40 * 1024, never);
  t.equal(first?.length, 40 * 1024);
  t.notOk(src.isPaused(), 'resumed below the mark');
  await tick();
  let total = first!.length;
  src.end();
  for (;;) {
    const d = await out.read(1 << 20, never);
    if (d === null) break;
    total += d.length;
  }
  t.equal(total, 8 * 16 * 1024, 'nothing dropped');
});

t.test('bytes keep their order across chunk boundaries', async (t) => {
  const src = source();
  const out = new OutputStream(src, { highWater: 1 << 20, eioIsEnd: false });
  src.write('abc');
  src.write('defgh');
  src.end('ij');
  await tick();
  const got: string[] = [];
  for (;;) {
    const d = await out.read(4, never);
    if (d === null) break;
    got.push(Buffer.from(d).toString());
  }
  t.same(got, ['abcd', 'efgh', 'ij']);
});

t.test('a read asks for at most MAX_READ bytes whatever len says', async (t) => {
  const src = source();
  const out = new OutputStream(src, { highWater: 4 * MAX_READ, eioIsEnd: false });
  src.end(Buffer.alloc(MAX_READ + 10));
  await tick();
  t.equal((await out.read(0xffffffff, never))?.length, MAX_READ);
  t.equal((await out.read(0xffffffff, never))?.length, 10);
});

t.test('EIO is end of stream only where the options say so', async (t) => {
  const eio = () => Object.assign(new Error('read EIO'), { code: 'EIO' });
  const pty = source();
  const ptyOut = new OutputStream(pty, { highWater: 1024, eioIsEnd: true });
  pty.write('tail');
  await tick();
  pty.destroy(eio());
  await tick();
  t.equal(Buffer.from((await ptyOut.read(100, never))!).toString(), 'tail', 'queued bytes first');
  t.equal(await ptyOut.read(100, never), null);

  const pipe = source();
  const pipeOut = new OutputStream(pipe, { highWater: 1024, eioIsEnd: false });
  pipe.destroy(eio());
  await tick();
  await t.rejects(pipeOut.read(100, never), { name: 'Error', message: /EIO/ });
});

t.test('drainAtEnd adds the bytes the source missed, before end of stream', async (t) => {
  const src = source();
  let drains = 0;
  const out = new OutputStream(src, {
    highWater: 1024,
    eioIsEnd: true,
    drainAtEnd: () => {
      drains++;
      return [Buffer.from('-late')];
    },
  });
  src.end('early');
  await tick();
  const got: string[] = [];
  for (;;) {
    const d = await out.read(100, never);
    if (d === null) break;
    got.push(Buffer.from(d).toString());
  }
  t.equal(got.join(''), 'early-late');
  t.equal(drains, 1, 'drained once though end and close both fired');
});

t.test('unread puts bytes back at the front, for the next read, and wakes a waiting read', async (t) => {
  const src = source();
  const out = new OutputStream(src, { highWater: 1 << 20, eioIsEnd: false });
  src.write('abcdef');
  await tick();
  const first = await out.read(4, never);
  t.equal(Buffer.from(first!).toString(), 'abcd');
  out.unread(first!);
  t.equal(out.pending, 6);
  t.equal(Buffer.from((await out.read(100, never))!).toString(), 'abcdef', 'the put-back bytes come first, then the rest');
  // A read waiting on an empty queue gets bytes put back while it waits.
  const waiting = out.read(100, never);
  out.unread(Buffer.from('xy'));
  t.equal(Buffer.from((await waiting)!).toString(), 'xy');
  // After the writers closed, put-back bytes still come before end of stream.
  src.end();
  await tick();
  out.unread(Buffer.from('z'));
  t.equal(Buffer.from((await out.read(100, never))!).toString(), 'z');
  t.equal(await out.read(100, never), null);
});

t.test('unread past the high-water mark keeps the source paused until the host reads it down', async (t) => {
  const src = source();
  const out = new OutputStream(src, { highWater: 8, eioIsEnd: false });
  src.write('1234');
  await tick();
  const d = await out.read(4, never);
  t.notOk(src.isPaused());
  out.unread(Buffer.alloc(8, 0x41));
  out.unread(d!);
  t.ok(src.isPaused(), 'paused: 12 bytes queued over a mark of 8');
  await out.read(10, never);
  t.notOk(src.isPaused(), 'resumed once read below half the mark');
});
