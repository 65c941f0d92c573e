import t from 'tap';
import { Delivery } from '../../agent/src/rpc/delivery.js';

t.test('undelivered runs every registered callback once; delivered runs none', async (t) => {
  const lost = new Delivery();
  let n = 0;
  lost.onUndelivered(() => n++);
  lost.onUndelivered(() => n++);
  lost.undelivered();
  lost.undelivered();
  lost.delivered();
  t.equal(n, 2);
  // A callback registered once the answer is known to be lost runs at once.
  lost.onUndelivered(() => n++);
  t.equal(n, 3);

  const ok = new Delivery();
  ok.onUndelivered(() => n++);
  ok.delivered();
  ok.undelivered();
  ok.onUndelivered(() => n++);
  t.equal(n, 3, 'the first outcome wins');
});
