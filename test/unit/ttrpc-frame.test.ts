import t from 'tap';
import { encodeFrame, FrameReader, FrameType, HEADER_LENGTH, MAX_DATA_LENGTH } from '../../agent/src/transport/ttrpc/frame.js';

t.test('header layout: length u32 BE, stream id u32 BE, type, flags', async (t) => {
  const f = encodeFrame(0x01020305, FrameType.Response, 0x04, Buffer.from('abc'));
  t.same([...f], [0, 0, 0, 3, 1, 2, 3, 5, 2, 4, 0x61, 0x62, 0x63]);
});

t.test('frames split at every possible point come out whole and in order', async (t) => {
  const stream = Buffer.concat([
    encodeFrame(1, FrameType.Request, 0, Buffer.from('hello')),
    encodeFrame(3, FrameType.Request, 0, Buffer.alloc(0)),
    encodeFrame(5, FrameType.Data, 1, Buffer.from('z')),
  ]);
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = new FrameReader();
    const ev = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))];
    t.same(
      ev.map((e) => (e.kind === 'frame' ? [e.header.streamId, e.header.type, e.header.flags, e.data.toString()] : e.kind)),
      [
        [1, 1, 0, 'hello'],
        [3, 1, 0, ''],
        [5, 3, 1, 'z'],
      ],
      `cut at ${cut}`,
    );
    t.notOk(r.midFrame);
  }
});

t.test('an oversized frame is reported on its header and its data skipped as it streams by', async (t) => {
  const r = new FrameReader();
  const header = Buffer.alloc(HEADER_LENGTH);
  header.writeUInt32BE(MAX_DATA_LENGTH + 10, 0);
  header.writeUInt32BE(7, 4);
  header[8] = FrameType.Request;
  let ev = r.push(header);
  t.match(ev, [{ kind: 'oversized', header: { length: MAX_DATA_LENGTH + 10, streamId: 7 } }]);
  t.ok(r.midFrame, 'still skipping');
  // The body arrives in chunks, the last one carrying the next frame too.
  for (let left = MAX_DATA_LENGTH + 10; left > 0;) {
    const n = Math.min(left, 1 << 20);
    left -= n;
    ev = r.push(left === 0 ? Buffer.concat([Buffer.alloc(n), encodeFrame(9, FrameType.Request, 0, Buffer.from('ok'))]) : Buffer.alloc(n));
    if (left > 0) t.same(ev, []);
  }
  t.match(ev, [{ kind: 'frame', header: { streamId: 9 } }]);
  t.equal((ev[0] as { data: Buffer }).data.toString(), 'ok');
  t.notOk(r.midFrame);
});

t.test('a 4 GiB length costs no memory: nothing is buffered while skipping', async (t) => {
  const r = new FrameReader();
  const header = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0]);
  t.match(r.push(header), [{ kind: 'oversized' }]);
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < 64; i++) t.same(r.push(chunk), []);
  t.ok(r.midFrame);
  // White-box on purpose: the reader's buffered byte count is the memory it holds.
  t.equal((r as unknown as { bytes: { length: number } }).bytes.length, 0, 'skipped chunks are not kept');
});
