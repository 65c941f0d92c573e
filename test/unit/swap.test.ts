// AddSwap and AddSwapPath (storage/swap.ts) against the recording libc and a fake device finder:
// what reaches swapon(2), the refusals before it, and the off-guest answer. In the VM,
// test/guest/block-hotplug.test.ts swaps on a real hot-plugged disk.
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { AddSwapPathRequestSchema, AddSwapRequestSchema } from '../../protos/gen/agent_pb.js';
import { pciPathOfSlots, swapHandlers } from '../../agent/src/storage/swap.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { errorOf } from '../support/unit.js';

const log = createLogger('silent');

function setup(onGuest = true) {
  const libc = new RecordingLibc();
  const lookups: [string, string][] = [];
  const devices = {
    block: async (kind: string, source: string) => {
      lookups.push([kind, source]);
      return { path: '/dev/vdc', major: 254, minor: 32 };
    },
  } as never;
  const h = swapHandlers({ libc, log, devices: onGuest ? devices : undefined });
  const swapons = () => libc.calls.filter((c) => c.name === 'swapon').map((c) => c.args);
  return { h, lookups, swapons };
}

/** The error of a handler, thrown at once or as a rejection (both reach the host as its status). */
async function rejection(f: () => unknown): Promise<Error> {
  try {
    await f();
    return new Error('resolved');
  } catch (e) {
    return e as Error;
  }
}

t.test('pciPathOfSlots: slots to a PCI path; empty or out of range refused', async (t) => {
  t.equal(pciPathOfSlots([2, 3]), '02/03');
  t.equal(pciPathOfSlots([31]), '1f');
  t.match(errorOf(() => pciPathOfSlots([])).message, /PCIPath is empty/);
  t.match(errorOf(() => pciPathOfSlots([2, 32])).message, /slot 32 is not 0-31/);
});

t.test('AddSwap: the disk at the PCI path is waited for, then swapon on its node', async (t) => {
  const { h, lookups, swapons } = setup();
  t.same(await h.addSwap!(create(AddSwapRequestSchema, { PCIPath: [2, 3] }), {} as never), {});
  t.same(lookups, [['blk', '02/03']]);
  t.same(swapons(), [['/dev/vdc', 0]]);
});

t.test('AddSwapPath: swapon on the file as given; a path not absolute and normalized is refused first', async (t) => {
  const { h, swapons } = setup();
  t.same(await h.addSwapPath!(create(AddSwapPathRequestSchema, { path: '/run/kata-containers/swap/file1' }), {} as never), {});
  t.same(swapons(), [['/run/kata-containers/swap/file1', 0]]);
  for (const bad of ['swapfile', '/run/../etc/shadow', '/run//x', '/run/x/', '']) {
    const err = await rejection(() => h.addSwapPath!(create(AddSwapPathRequestSchema, { path: bad }), {} as never));
    t.equal(err.name, 'InvalidArgument', JSON.stringify(bad));
  }
  t.equal(swapons().length, 1, 'nothing else reached swapon');
});

t.test('off the guest both answer UNIMPLEMENTED and touch nothing', async (t) => {
  const { h, swapons, lookups } = setup(false);
  const a = await rejection(() => h.addSwap!(create(AddSwapRequestSchema, { PCIPath: [2, 3] }), {} as never));
  t.equal(a.name, 'Unimplemented');
  t.match(a.message, /AddSwap 02\/03: swap is only added on the guest/);
  const b = await rejection(() => h.addSwapPath!(create(AddSwapPathRequestSchema, { path: '/swapfile' }), {} as never));
  t.equal(b.name, 'Unimplemented');
  t.same(swapons(), []);
  t.same(lookups, []);
});
