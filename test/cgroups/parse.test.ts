// Pure parts of the cgroup drivers: where groups go, which driver a machine gets, v1 write order
// and rules, v1 stats parsing. No root needed.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { create } from '@bufbuild/protobuf';
import { LinuxResourcesSchema } from '../../protos/gen/oci_pb.js';
import { cgroupVersionFromConfig, createCgroupManager } from '../../agent/src/cgroups/detect.js';
import { V1Manager } from '../../agent/src/cgroups/v1.js';
import { V2Manager } from '../../agent/src/cgroups/v2.js';
import { parseCgroupMounts, parseProcCgroup, pathBelowMount, v1PathOf } from '../../agent/src/cgroups/self-path.js';
import { v1Writes, type V1Tree } from '../../agent/src/cgroups/v1-settings.js';
import { parseBlkio, v1Stats } from '../../agent/src/cgroups/v1-stats.js';
import { blkioWeightToIoWeight, sharesToWeight } from '../../agent/src/cgroups/convert.js';

const procCgroup = `12:cpu,cpuacct:/system.slice/kata-agent.service
9:name=systemd:/system.slice/kata-agent.service
4:memory:/process_api/abc
0::/system.slice/kata-agent.service
`;

const hybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const unified = `30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
`;
const quiet = { warn: () => undefined } as never;

t.test('/proc/self/cgroup and mountinfo', async (t) => {
  const self = parseProcCgroup(procCgroup);
  t.equal(v1PathOf(self, 'cpuacct'), '/system.slice/kata-agent.service');
  t.equal(v1PathOf(self, 'memory'), '/process_api/abc');
  t.equal(v1PathOf(self, 'pids'), undefined);
  t.equal(self.v2, '/system.slice/kata-agent.service');
  t.same(
    parseCgroupMounts(hybrid).map((m) => [m.mountPoint, m.fstype, m.controllers]),
    [
      ['/sys/fs/cgroup/cpu,cpuacct', 'cgroup', ['cpu', 'cpuacct']],
      ['/sys/fs/cgroup/memory', 'cgroup', ['memory']],
      ['/sys/fs/cgroup/unified', 'cgroup2', []],
    ],
  );
  // Inside a cgroup namespace or a bind mount, the mount's root cuts the path.
  t.equal(pathBelowMount('/kubepods/pod1/c1', '/kubepods/pod1'), '/c1');
  t.equal(pathBelowMount('/a', '/'), '/a');
});

t.test('driver choice: v1 hierarchies win over a hybrid unified mount; cgroup2 alone gives v2', async (t) => {
  const v1 = createCgroupManager({ mountinfo: hybrid, procSelfCgroup: procCgroup, log: quiet });
  t.ok(v1 instanceof V1Manager);
  t.same((v1 as V1Manager).hierarchies, [
    { mountPoint: '/sys/fs/cgroup/cpu,cpuacct', controllers: ['cpu', 'cpuacct'], ownPath: '/system.slice/kata-agent.service' },
    { mountPoint: '/sys/fs/cgroup/memory', controllers: ['memory'], ownPath: '/process_api/abc' },
  ]);
  t.same(v1.v1Hierarchies, ['cpu,cpuacct', 'memory'], "a container's /sys/fs/cgroup mounts the agent's named hierarchies, not name=systemd");
  const v2 = createCgroupManager({ mountinfo: unified, procSelfCgroup: '0::/\n', log: quiet });
  t.ok(v2 instanceof V2Manager);
  t.equal((v2 as V2Manager).mountPoint, '/sys/fs/cgroup');
  t.equal((v2 as V2Manager).ownPath, '/');
  t.same(v2.v1Hierarchies, []);
  const forced = createCgroupManager({ mountinfo: hybrid, procSelfCgroup: procCgroup, forceVersion: 'v2', log: quiet });
  t.equal((forced as V2Manager).mountPoint, '/sys/fs/cgroup/unified');
  t.throws(() => createCgroupManager({ mountinfo: '', procSelfCgroup: '', log: quiet }), /no cgroup filesystem is mounted/);
  // agent.unified_cgroup_hierarchy / systemd.unified_cgroup_hierarchy=1 / cgroup_no_v1=all insist on v2.
  t.equal(cgroupVersionFromConfig(true), 'v2');
  t.equal(cgroupVersionFromConfig(false), undefined);
  t.equal(cgroupVersionFromConfig(undefined), undefined);
  t.throws(
    () => createCgroupManager({ mountinfo: hybrid.split('\n').slice(0, 2).join('\n'), procSelfCgroup: '', forceVersion: 'v2', log: quiet }),
    /no cgroup2/,
  );
});

t.test('unit conversions', async (t) => {
  t.equal(sharesToWeight(2n), 1n);
  t.equal(sharesToWeight(1024n), 39n);
  t.equal(sharesToWeight(262144n), 10000n);
  t.equal(sharesToWeight(1n), 1n, 'clamped below');
  t.equal(blkioWeightToIoWeight(10), 1);
  t.equal(blkioWeightToIoWeight(1000), 10000);
  t.equal(blkioWeightToIoWeight(100), 910);
});

function tree(files: Record<string, string>, controllers = ['memory', 'cpu', 'cpuset', 'pids', 'blkio', 'devices', 'hugetlb']): V1Tree {
  return {
    has: (c) => controllers.includes(c),
    exists: (c, f) => `${c}/${f}` in files,
    read: (c, f) => files[`${c}/${f}`],
  };
}

t.test('v1 memory writes keep memsw >= limit at every step', async (t) => {
  const MiB = 1048576n;
  const memsw = { 'memory/memory.memsw.limit_in_bytes': String(128n * MiB) };
  const up = v1Writes(create(LinuxResourcesSchema, { Memory: { Limit: 256n * MiB, Swap: 512n * MiB } }), tree(memsw), () => undefined);
  t.same(
    up.map((w) => w.file),
    ['memory.memsw.limit_in_bytes', 'memory.limit_in_bytes'],
    'growing: memsw first',
  );
  const down = v1Writes(create(LinuxResourcesSchema, { Memory: { Limit: 64n * MiB, Swap: 64n * MiB } }), tree(memsw), () => undefined);
  t.same(
    down.map((w) => w.file),
    ['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes'],
    'shrinking: limit first',
  );
  const unlimited = v1Writes(create(LinuxResourcesSchema, { Memory: { Limit: -1n, Swap: -1n } }), tree(memsw), () => undefined);
  t.same(
    unlimited.map((w) => [w.file, w.value]),
    [
      ['memory.memsw.limit_in_bytes', '-1'],
      ['memory.limit_in_bytes', '-1'],
    ],
  );
  // Without swap accounting the swap part is dropped with a warning, and the memory limit still applies.
  const warnings: string[] = [];
  const noSwapAcct = v1Writes(create(LinuxResourcesSchema, { Memory: { Limit: 64n * MiB, Swap: 64n * MiB } }), tree({}), (m) => warnings.push(m));
  t.same(
    noSwapAcct.map((w) => w.file),
    ['memory.limit_in_bytes'],
  );
  t.match(warnings.join(), /does not account swap/);
});

t.test('v1 cpu, pids, blkio, hugetlb, devices, network writes', async (t) => {
  const warnings: string[] = [];
  const writes = v1Writes(
    create(LinuxResourcesSchema, {
      CPU: { Shares: 512n, Quota: 20000n, Period: 50000n, RealtimePeriod: 1000000n, RealtimeRuntime: 5000n, Cpus: '1', Mems: '0' },
      Pids: { Limit: -1n },
      BlockIO: {
        Weight: 300,
        LeafWeight: 10,
        WeightDevice: [{ Major: 8n, Minor: 0n, Weight: 400 }],
        ThrottleReadBpsDevice: [{ Major: 8n, Minor: -1n, Rate: 10n }],
      },
      HugepageLimits: [{ Pagesize: '1GB', Limit: 1073741824n }],
      Devices: [
        { Allow: false, Access: 'rwm' },
        { Allow: true, Type: 'c', Major: 1n, Minor: 3n, Access: 'rw' },
        { Allow: true, Type: 'c', Major: 136n, Minor: -1n, Access: 'rwm' },
      ],
      Network: { ClassID: 7, Priorities: [{ Name: 'eth0', Priority: 2 }] },
      Memory: { Kernel: 1000n },
    }),
    tree({}),
    (m) => warnings.push(m),
  );
  t.same(
    writes.map((w) => `${w.controller} ${w.file}=${w.value}`),
    [
      'cpu cpu.shares=512',
      'cpu cpu.cfs_period_us=50000',
      'cpu cpu.cfs_quota_us=20000',
      'cpu cpu.rt_period_us=1000000',
      'cpu cpu.rt_runtime_us=5000',
      'cpuset cpuset.cpus=1',
      'cpuset cpuset.mems=0',
      'pids pids.max=max',
      'blkio blkio.bfq.weight=300',
      'blkio blkio.bfq.weight_device=8:0 400',
      'blkio blkio.throttle.read_bps_device=8:* 10',
      'hugetlb hugetlb.1GB.limit_in_bytes=1073741824',
      'devices devices.deny=a',
      'devices devices.allow=c 1:3 rw',
      'devices devices.allow=c 136:* rwm',
    ],
  );
  t.match(warnings.join('\n'), /kernel limit is deprecated/);
  t.match(warnings.join('\n'), /leaf weight/);
  t.match(warnings.join('\n'), /no net_cls hierarchy/);
  t.match(warnings.join('\n'), /no net_prio hierarchy/);
  // With CFQ's files present the classic weight files are used, and unset values write nothing.
  const cfq = v1Writes(create(LinuxResourcesSchema, { BlockIO: { Weight: 300 }, CPU: {} }), tree({ 'blkio/blkio.weight': '500' }), () => undefined);
  t.same(
    cfq.map((w) => w.file),
    ['blkio.weight'],
  );
});

t.test('v1 stats: nanosecond files preferred, tick counts converted, blkio lines parsed', async (t) => {
  const files: Record<string, string> = {
    'cpuacct/cpuacct.usage': '5000000',
    'cpuacct/cpuacct.usage_percpu': '3000000 2000000 ',
    'cpuacct/cpuacct.stat': 'user 3\nsystem 1',
    'cpu/cpu.stat': 'nr_periods 10\nnr_throttled 4\nthrottled_time 900',
    'memory/memory.usage_in_bytes': '100',
    'memory/memory.max_usage_in_bytes': '200',
    'memory/memory.failcnt': '1',
    'memory/memory.limit_in_bytes': '300',
    'memory/memory.stat': 'cache 40\nrss 60\ntotal_cache 40',
    'memory/memory.use_hierarchy': '1',
    'pids/pids.current': '3',
    'pids/pids.max': '100',
    'blkio/blkio.throttle.io_service_bytes_recursive': '8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\nTotal 4608',
    'blkio/blkio.throttle.io_serviced_recursive': '8:0 Read 1\n8:0 Write 2\nTotal 3',
    'blkio/blkio.bfq.io_serviced_recursive': '',
  };
  const src = (extra: Record<string, string> = {}) => ({
    has: (c: string) => ['cpu', 'cpuacct', 'memory', 'pids', 'blkio'].includes(c),
    read: (c: string, f: string) => ({ ...files, ...extra })[`${c}/${f}`],
    list: () => [],
  });
  const s = v1Stats(src());
  t.equal(s.cpuStats?.cpuUsage?.totalUsage, 5000000n);
  t.same(s.cpuStats?.cpuUsage?.percpuUsage, [3000000n, 2000000n]);
  t.equal(s.cpuStats?.cpuUsage?.usageInUsermode, 30_000_000n, '3 ticks of 10 ms');
  t.equal(s.cpuStats?.cpuUsage?.usageInKernelmode, 10_000_000n);
  t.equal(s.cpuStats?.throttlingData?.throttledPeriods, 4n);
  t.equal(s.cpuStats?.throttlingData?.throttledTime, 900n);
  const ns = v1Stats(src({ 'cpuacct/cpuacct.usage_user': '123', 'cpuacct/cpuacct.usage_sys': '45' }));
  t.equal(ns.cpuStats?.cpuUsage?.usageInUsermode, 123n, 'usage_user preferred');
  t.equal(ns.cpuStats?.cpuUsage?.usageInKernelmode, 45n);
  t.equal(s.memoryStats?.cache, 40n);
  t.equal(s.memoryStats?.usage?.maxUsage, 200n);
  t.equal(s.memoryStats?.usage?.limit, 300n);
  t.equal(s.memoryStats?.useHierarchy, true);
  t.equal(s.memoryStats?.swapUsage, undefined, 'no memsw files: no swap data');
  t.same(s.memoryStats?.stats, { cache: 40n, rss: 60n, total_cache: 40n });
  t.equal(s.pidsStats?.limit, 100n);
  t.same(
    s.blkioStats?.ioServiceBytesRecursive.map((e) => `${e.major}:${e.minor} ${e.op} ${e.value}`),
    ['8:0 Read 4096', '8:0 Write 512', '8:0 Sync 0'],
  );
  t.same(
    s.blkioStats?.ioServicedRecursive.map((e) => e.value),
    [1n, 2n],
    'empty BFQ file falls back to the throttle counts',
  );
  t.same(parseBlkio('8:16 77\n'), [
    create((await import('../../protos/gen/agent_pb.js')).BlkioStatsEntrySchema, { major: 8n, minor: 16n, op: '', value: 77n }),
  ]);
});

t.test('a v1 root directory: one hierarchy per directory, symlinked aliases counted once', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-cgroup1-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  for (const d of ['cpu,cpuacct', 'memory', 'freezer', 'systemd']) fs.mkdirSync(path.join(root, d));
  fs.symlinkSync('cpu,cpuacct', path.join(root, 'cpu'));
  fs.symlinkSync('cpu,cpuacct', path.join(root, 'cpuacct'));
  const m = createCgroupManager({ root, forceVersion: 'v1', procSelfCgroup: procCgroup, log: quiet });
  t.ok(m instanceof V1Manager);
  t.same(
    (m as V1Manager).hierarchies.map((h) => [path.basename(h.mountPoint), h.controllers, h.ownPath]),
    [
      ['cpu,cpuacct', ['cpu', 'cpuacct'], '/system.slice/kata-agent.service'],
      ['freezer', ['freezer'], '/'],
      ['memory', ['memory'], '/process_api/abc'],
    ],
  );
  // Without forceVersion a root with cgroup.controllers is taken as cgroup2.
  fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'memory\n');
  t.ok(createCgroupManager({ root, procSelfCgroup: '0::/\n', log: quiet }) instanceof V2Manager);
});
