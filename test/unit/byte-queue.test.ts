import t from 'tap';
import { ByteQueue } from '../../agent/src/transport/byte-queue.js';

t.test('takes exact sizes across chunk boundaries', async (t) => {
  const q = new ByteQueue();
  q.push(Buffer.from('ab'));
  q.push(Buffer.alloc(0));
  q.push(Buffer.from('cdef'));
  t.equal(q.length, 6);
  t.equal(q.peek(3).toString(), 'abc', 'peek spans chunks');
  t.equal(q.length, 6, 'peek leaves the bytes');
  t.equal(q.take(1).toString(), 'a');
  t.equal(q.take(3).toString(), 'bcd');
  t.equal(q.take(0).length, 0);
  t.equal(q.peek(10).toString(), 'ef', 'peek past the end gives what is there');
  t.equal(q.take(2).toString(), 'ef');
  t.equal(q.length, 0);
  t.throws(() => q.take(1), RangeError);
});
