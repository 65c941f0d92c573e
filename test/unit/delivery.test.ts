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

t.test('onSettled runs once the outcome is known, either way, and at once after it', async (t) => {
  for (const settle of ['delivered', 'undelivered'] as const) {
    const d = new Delivery();
    const seen: string[] = [];
    d.onSettled(() => seen.push('early'));
    t.same(seen, [], `${settle}: nothing before the outcome`);
    d[settle]();
    d[settle]();
    d.onSettled(() => seen.push('late'));
    t.same(seen, ['early', 'late'], `${settle}: each callback once`);
  }
});

t.test('DestroySandbox signals "destroyed" only after its answer is settled', async (t) => {
  const { containerHandlers } = await import('../../agent/src/container/handlers.js');
  const order: string[] = [];
  const h = containerHandlers({ removeAll: async () => void order.push('removeAll') } as never, { destroy: () => order.push('destroy') } as never, () =>
    order.push('destroyed'),
  );
  const d = new Delivery();
  await h.destroySandbox!({} as never, { afterAnswer: (fn: () => void) => d.onSettled(fn) } as never);
  t.same(order, ['removeAll', 'destroy'], 'not yet: the answer is not written');
  d.delivered();
  t.same(order, ['removeAll', 'destroy', 'destroyed']);
});
