// Resource values no cgroup file would take fail as INVALID_ARGUMENT naming the field and its range,
// before anything is written, on both drivers' write builders. No root needed.
import t from 'tap';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { LinuxResourcesSchema } from '../../protos/gen/oci_pb.js';
import { v1Writes, type V1Tree } from '../../agent/src/cgroups/v1-settings.js';
import { v2Writes } from '../../agent/src/cgroups/v2-settings.js';
import { InvalidArgument } from '../../agent/src/errors.js';

const tree: V1Tree = { has: () => true, exists: () => true, read: () => undefined };
const group = { exists: () => true, read: () => undefined };
type Init = MessageInitShape<typeof LinuxResourcesSchema>;

function outcome(build: 'v1' | 'v2', init: Init): string {
  const res = create(LinuxResourcesSchema, init);
  try {
    if (build === 'v1') v1Writes(res, tree, () => undefined);
    else v2Writes(res, group, () => undefined);
    return 'ok';
  } catch (err) {
    if (err instanceof InvalidArgument) return err.message;
    throw err;
  }
}

const refused: [string, Init, RegExp][] = [
  ['blkio weight below 10', { BlockIO: { Weight: 5 } }, /^BlockIO.Weight 5 is out of range: valid values are 10–1000$/],
  ['blkio weight above 1000', { BlockIO: { Weight: 4294967295 } }, /^BlockIO.Weight 4294967295 is out of range: valid values are 10–1000/],
  ['blkio leaf weight', { BlockIO: { LeafWeight: 1001 } }, /^BlockIO.LeafWeight 1001 .*10–1000/],
  ['blkio device weight', { BlockIO: { WeightDevice: [{ Major: 8n, Minor: 0n, Weight: 2 }] } }, /^BlockIO.WeightDevice\[8:0\].Weight 2 .*10–1000/],
  ['cpu shares 1', { CPU: { Shares: 1n } }, /^CPU.Shares 1 is out of range: valid values are 2–262144/],
  ['cpu shares huge', { CPU: { Shares: 18446744073709551615n } }, /^CPU.Shares 18446744073709551615 /],
  ['cpu period too short', { CPU: { Period: 999n } }, /^CPU.Period 999 is out of range: valid values are 1000–1000000 µs/],
  ['cpu period too long', { CPU: { Period: 1000001n } }, /^CPU.Period 1000001 /],
  ['cpu quota under 1 ms', { CPU: { Quota: 10n } }, /^CPU.Quota 10 is out of range: valid values are 1000–17592186044415 µs, or -1 for no limit/],
  ['rt runtime below -1', { CPU: { RealtimeRuntime: -2n } }, /^CPU.RealtimeRuntime -2 /],
  ['rt runtime above period', { CPU: { RealtimeRuntime: 2000n, RealtimePeriod: 1000n } }, /exceeds CPU.RealtimePeriod 1000/],
  ['cpuset syntax', { CPU: { Cpus: '0-a' } }, /^CPU.Cpus "0-a" is not a list/],
  ['cpuset descending range', { CPU: { Mems: '3-1' } }, /^CPU.Mems "3-1"/],
  ['pids above PID_MAX_LIMIT', { Pids: { Limit: 4194305n } }, /^Pids.Limit 4194305 is out of range: valid values are 1–4194304, or -1 for no limit/],
  ['memory+swap below limit', { Memory: { Limit: 100n << 20n, Swap: 10n << 20n } }, /^Memory.Swap 10485760 .* below Memory.Limit 104857600/],
  ['hugepage size as a path', { HugepageLimits: [{ Pagesize: '../../x', Limit: 1n }] }, /^HugepageLimits page size "..\/..\/x" is not a size/],
  ['device type', { Devices: [{ Allow: true, Type: 'x', Access: 'r' }] }, /^Devices type "x"/],
  ['device access', { Devices: [{ Allow: true, Type: 'c', Access: 'rwx' }] }, /^Devices access "rwx"/],
  ['interface name', { Network: { Priorities: [{ Name: 'eth0 1\nlo', Priority: 1 }] } }, /interface name/],
];

for (const build of ['v1', 'v2'] as const) {
  t.test(`${build}: out-of-range values are INVALID_ARGUMENT naming the field and range`, async (t) => {
    for (const [what, init, re] of refused) t.match(outcome(build, init), re, what);
  });
  t.test(`${build}: values at the edges of each range pass`, async (t) => {
    const edges: Init[] = [
      { BlockIO: { Weight: 10, WeightDevice: [{ Major: 8n, Minor: 0n, Weight: 1000 }] } },
      { CPU: { Shares: 2n, Period: 1000n, Quota: 1000n } },
      { CPU: { Shares: 262144n, Period: 1000000n, Quota: -1n, Cpus: '0-1,3', Mems: '0' } },
      { Pids: { Limit: 4194304n } },
      { Pids: { Limit: -1n } },
      { Memory: { Limit: 64n << 20n, Swap: 64n << 20n } },
      { HugepageLimits: [{ Pagesize: '2MB', Limit: 1n << 30n }] },
      { Devices: [{ Allow: false, Type: 'a', Access: 'rwm' }] },
    ];
    for (const init of edges)
      t.equal(
        outcome(build, init),
        'ok',
        JSON.stringify(init, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
      );
  });
}
