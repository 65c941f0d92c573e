// The v2 driver against a fake cgroup2 tree (fake-v2.ts): what it writes for each OCI resource,
// how it delegates controllers, freezes, reads stats and sees OOM kills. Runs without root.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { LinuxResourcesSchema, type LinuxResources } from '../../protos/gen/oci_pb.js';
import { createCgroupManager } from '../../agent/src/cgroups/detect.js';
import { Code, toRpcError } from '../../agent/src/rpc/status.js';
import { fakeV2 } from './fake-v2.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { AT_FDCWD, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, BPF_PROG_TYPE_CGROUP_DEVICE, O_CLOEXEC, O_DIRECTORY, O_RDONLY } from '../../agent/src/linux/libc.js';
import { deviceFilterProgram } from '../../agent/src/cgroups/device-filter.js';

const MiB = 1024n * 1024n;

function setup(t: { teardown(fn: () => void): void }, controllers?: string[]) {
  const fake = fakeV2(controllers);
  t.teardown(fake.cleanup);
  const warnings: string[] = [];
  const libc = new RecordingLibc();
  const mgr = createCgroupManager({
    libc,
    root: fake.root,
    forceVersion: 'v2',
    procSelfCgroup: '0::/agent\n',
    fs: fake.fs,
    log: { warn: (_o: object, msg: string) => warnings.push(msg) } as never,
  });
  fake.fs.mkdir!(path.join(fake.root, 'agent')); // the agent's own group, as the kernel would show it
  return { fake, mgr, warnings, libc, read: (rel: string) => fs.readFileSync(path.join(fake.root, rel), 'utf8').trim() };
}

const res = (init: MessageInitShape<typeof LinuxResourcesSchema>): LinuxResources => create(LinuxResourcesSchema, init);

t.test('create delegates controllers down to the group and places it below the own group', async (t) => {
  const { fake, mgr, read } = setup(t, ['cpu', 'memory', 'pids']);
  t.equal(mgr.version, 'v2');
  const cg = mgr.create('kata/c1', undefined);
  t.equal(cg.relPath, 'kata/c1');
  t.ok(fs.existsSync(path.join(fake.root, 'agent/kata/c1/memory.max')), 'group under the own group, memory files present');
  t.same(read('agent/cgroup.subtree_control').split(' ').sort(), ['cpu', 'memory', 'pids']);
  t.same(read('agent/kata/cgroup.subtree_control').split(' ').sort(), ['cpu', 'memory', 'pids']);
  await cg.destroy();
  t.notOk(fs.existsSync(path.join(fake.root, 'agent/kata')), 'leaf and created parent level removed');
});

t.test('resources map onto v2 files with v1 units converted', async (t) => {
  const { mgr, read, warnings } = setup(t);
  const cg = mgr.create(
    'c',
    res({
      Memory: { Limit: 64n * MiB, Reservation: 16n * MiB, Swap: 96n * MiB },
      CPU: { Shares: 1024n, Quota: 50000n, Period: 100000n, Cpus: '0-1', Mems: '0' },
      Pids: { Limit: 20n },
      BlockIO: {
        Weight: 500,
        ThrottleReadBpsDevice: [{ Major: 8n, Minor: 0n, Rate: 1048576n }],
        ThrottleWriteIOPSDevice: [{ Major: 8n, Minor: 16n, Rate: 100n }],
      },
      HugepageLimits: [{ Pagesize: '2MB', Limit: 4n * 2n * MiB }],
    }),
  );
  t.equal(read('agent/c/memory.max'), String(64n * MiB));
  t.equal(read('agent/c/memory.low'), String(16n * MiB));
  t.equal(read('agent/c/memory.swap.max'), String(32n * MiB), 'OCI swap is memory+swap; v2 wants swap alone');
  // shares 1024 (the v1 default) → 1 + (1022 * 9999) / 262142 = 39.
  t.equal(read('agent/c/cpu.weight'), '39');
  t.equal(read('agent/c/cpu.max'), '50000 100000');
  t.equal(read('agent/c/cpuset.cpus'), '0-1');
  t.equal(read('agent/c/cpuset.mems'), '0');
  t.equal(read('agent/c/pids.max'), '20');
  // blkio weight 500 on [10,1000] → 1 + (490 * 9999) / 990 = 4950 on [1,10000].
  t.equal(read('agent/c/io.weight'), '4950');
  t.equal(read('agent/c/hugetlb.2MB.max'), String(8n * MiB));
  t.same(warnings, []);

  // UpdateContainer: a new period alone keeps the quota; -1 lifts limits.
  cg.update(res({ CPU: { Period: 200000n }, Memory: { Limit: -1n }, Pids: { Limit: -1n } }));
  t.equal(read('agent/c/cpu.max'), '50000 200000');
  t.equal(read('agent/c/memory.max'), 'max');
  t.equal(read('agent/c/pids.max'), 'max');
  cg.update(res({ CPU: { Quota: -1n } }));
  t.equal(read('agent/c/cpu.max'), 'max 200000');
  // Shares at the ends of the v1 range reach the ends of the v2 range.
  cg.update(res({ CPU: { Shares: 2n } }));
  t.equal(read('agent/c/cpu.weight'), '1');
  cg.update(res({ CPU: { Shares: 262144n } }));
  t.equal(read('agent/c/cpu.weight'), '10000');
  await cg.destroy();
});

t.test('throttles go to io.max one device and key per write', async (t) => {
  const { fake, mgr } = setup(t);
  const cg = mgr.create(
    'c',
    res({ BlockIO: { ThrottleReadBpsDevice: [{ Major: 8n, Minor: 0n, Rate: 1048576n }], ThrottleWriteIOPSDevice: [{ Major: 8n, Minor: 16n, Rate: 100n }] } }),
  );
  t.same(
    fake.writes.filter(([f]) => f.endsWith('io.max')).map(([, v]) => v),
    ['8:0 rbps=1048576', '8:16 wiops=100'],
  );
  await cg.destroy();
});

t.test('what v2 cannot express is refused or warned about, never silently claimed', async (t) => {
  const { mgr, warnings, fake } = setup(t, ['cpu', 'memory']);
  // A memory+swap total without a memory limit cannot be split into v2's swap-only value.
  let err: unknown;
  try {
    mgr.create('c1', res({ Memory: { Swap: 64n * MiB } }));
  } catch (e) {
    err = e;
  }
  t.equal(toRpcError(err).code, Code.INVALID_ARGUMENT);
  t.notOk(fs.existsSync(path.join(fake.root, 'agent/c1')), 'the failed create left no group');

  // pids is not delegated here: the limit cannot be applied, and the error says which controller.
  err = undefined;
  try {
    mgr.create('c2', res({ Pids: { Limit: 5n } }));
  } catch (e) {
    err = e;
  }
  t.equal(toRpcError(err).code, Code.FAILED_PRECONDITION);
  t.match(String(err), /pids\.max: the pids controller is not enabled/);
  t.notOk(fs.existsSync(path.join(fake.root, 'agent/c2')));

  // A kernel without swap has no memory.swap.max: the memory limit applies, the swap part is warned about.
  const cg = mgr.create('c3', res({ CPU: { RealtimeRuntime: 1000n }, Memory: { DisableOOMKiller: true } }));
  fs.rmSync(path.join(fake.root, 'agent/c3/memory.swap.max'));
  cg.update(res({ Memory: { Limit: 32n * MiB, Swap: 32n * MiB } }));
  t.equal(fs.readFileSync(path.join(fake.root, 'agent/c3/memory.max'), 'utf8').trim(), String(32n * MiB));
  t.match(warnings.join('\n'), /swap limit not applied/);
  t.match(warnings.join('\n'), /realtime/);
  t.match(warnings.join('\n'), /OOM killer/);
  await cg.destroy();
});

t.test('freeze and thaw go through cgroup.freeze and wait for cgroup.events', async (t) => {
  const { mgr, read } = setup(t);
  const cg = mgr.create('c', undefined);
  t.equal(cg.state(), 'THAWED');
  await cg.freeze();
  t.equal(read('agent/c/cgroup.freeze'), '1');
  t.equal(cg.state(), 'FROZEN');
  await cg.thaw();
  t.equal(cg.state(), 'THAWED');
  await cg.destroy();
});

t.test('a freeze the kernel never completes fails with DEADLINE_EXCEEDED and is undone', async (t) => {
  const fake = fakeV2();
  t.teardown(fake.cleanup);
  // This fake kernel records cgroup.freeze but never reports the group frozen.
  const stuck = { ...fake.fs, writeFile: (p: string, v: string) => fs.writeFileSync(p, v) };
  const mgr = createCgroupManager({
    root: fake.root,
    forceVersion: 'v2',
    procSelfCgroup: '0::/\n',
    fs: stuck,
    freezeTimeoutMs: 50,
    log: { warn: () => undefined } as never,
  });
  const cg = mgr.create('c', undefined);
  const err = await cg.freeze().then(
    () => undefined,
    (e: unknown) => e,
  );
  t.equal(toRpcError(err).code, Code.DEADLINE_EXCEEDED);
  t.equal(fs.readFileSync(path.join(fake.root, 'c/cgroup.freeze'), 'utf8'), '0', 'freeze request withdrawn');
  await cg.destroy();
});

t.test('stats are read from the v2 files with their units converted', async (t) => {
  const { fake, mgr } = setup(t);
  const cg = mgr.create('c', undefined);
  const w = (f: string, v: string) => fs.writeFileSync(path.join(fake.root, 'agent/c', f), v);
  w('cpu.stat', 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n');
  w('memory.current', '4096\n');
  w('memory.peak', '8192\n');
  w('memory.max', '65536\n');
  w('memory.events', 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
  w('memory.stat', 'anon 1024\nfile 2048\n');
  w('memory.swap.current', '0\n');
  w('pids.current', '2\n');
  w('pids.max', 'max\n');
  w('io.stat', '8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n');
  w('hugetlb.2MB.current', '2097152\n');
  w('hugetlb.2MB.events', 'max 4\n');
  const s = cg.stats();
  t.equal(s.cpuStats?.cpuUsage?.totalUsage, 1_500_000n, 'usec → ns');
  t.equal(s.cpuStats?.cpuUsage?.usageInUsermode, 1_000_000n);
  t.equal(s.cpuStats?.cpuUsage?.usageInKernelmode, 500_000n);
  t.same(s.cpuStats?.throttlingData && { ...s.cpuStats.throttlingData, $typeName: undefined }, {
    $typeName: undefined,
    periods: 7n,
    throttledPeriods: 2n,
    throttledTime: 30_000n,
  });
  t.equal(s.memoryStats?.usage?.usage, 4096n);
  t.equal(s.memoryStats?.usage?.maxUsage, 8192n);
  t.equal(s.memoryStats?.usage?.limit, 65536n);
  t.equal(s.memoryStats?.usage?.failcnt, 3n, 'limit hits from memory.events "max"');
  t.equal(s.memoryStats?.cache, 2048n, 'page cache is "file" in v2');
  t.same(s.memoryStats?.stats, { anon: 1024n, file: 2048n });
  t.equal(s.memoryStats?.swapUsage?.limit, 0xffff_ffff_ffff_ffffn, '"max" swap is reported as no limit');
  t.equal(s.memoryStats?.useHierarchy, true);
  t.equal(s.pidsStats?.current, 2n);
  t.equal(s.pidsStats?.limit, 0n, '"max" pids is 0 (no limit), as kata reports it');
  t.same(
    s.blkioStats?.ioServiceBytesRecursive.map((e) => [e.major, e.minor, e.op, e.value]),
    [
      [8n, 0n, 'Read', 100n],
      [8n, 0n, 'Write', 200n],
    ],
  );
  t.same(
    s.blkioStats?.ioServicedRecursive.map((e) => [e.op, e.value]),
    [
      ['Read', 1n],
      ['Write', 2n],
    ],
  );
  t.same(Object.keys(s.hugetlbStats), ['2MB'], 'rsvd files are not a page size');
  t.equal(s.hugetlbStats['2MB']?.usage, 2097152n);
  t.equal(s.hugetlbStats['2MB']?.failcnt, 4n);
  await cg.destroy();
});

t.test('OOM kills counted in memory.events reach the watcher, one call per kill', async (t) => {
  const { fake, mgr } = setup(t);
  const cg = mgr.create('c', undefined);
  const events = path.join(fake.root, 'agent/c/memory.events');
  // The watcher does not hold the event loop open (the agent's server does); this test must.
  const keepAlive = setInterval(() => undefined, 1000);
  t.teardown(() => clearInterval(keepAlive));
  let calls = 0;
  let wake: () => void = () => undefined;
  const stop = cg.watchOom(() => {
    calls++;
    wake();
  });
  const until = (n: number) =>
    new Promise<void>((r) => {
      wake = () => calls >= n && r();
      wake();
    });
  fs.writeFileSync(events, 'low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n');
  await until(1);
  t.equal(calls, 1);
  fs.writeFileSync(events, 'low 0\nhigh 0\nmax 4\noom 3\noom_kill 3\n');
  await until(3);
  t.equal(calls, 3, 'two more kills, two more calls');
  // A second watcher on the same file tells when the kernel-side event has been delivered.
  const delivered = async (content: string) => {
    const probe = fs.watch(events);
    const seen = new Promise<void>((r) => probe.once('change', () => r()));
    fs.writeFileSync(events, content);
    await seen;
    probe.close();
    await new Promise((r) => setImmediate(r));
  };
  await delivered('low 0\nhigh 5\nmax 4\noom 3\noom_kill 3\n');
  t.equal(calls, 3, 'a change of another counter is no kill');
  stop();
  await delivered('low 0\nhigh 5\nmax 4\noom 4\noom_kill 4\n');
  t.equal(calls, 3, 'nothing after stop');
  await cg.destroy();
});

t.test('group paths that could leave the agent subtree are refused; duplicates too', async (t) => {
  const { mgr } = setup(t);
  for (const bad of ['..', '../x', 'a/../../b', '/etc', '']) {
    let err: unknown;
    try {
      mgr.create(bad, undefined);
    } catch (e) {
      err = e;
    }
    t.equal(toRpcError(err).code, Code.INVALID_ARGUMENT, `"${bad}"`);
  }
  const cg = mgr.create('dup', undefined);
  let err: unknown;
  try {
    mgr.create('dup', undefined);
  } catch (e) {
    err = e;
  }
  t.equal(toRpcError(err).code, Code.ALREADY_EXISTS);
  await cg.destroy();
  await cg.destroy();
  t.pass('a second destroy is harmless');
});

t.test('device rules become an eBPF filter attached to the group; an update swaps it without a gap', async (t) => {
  const { mgr, libc, fake } = setup(t);
  const rules = [
    { Allow: false, Type: 'a' },
    { Allow: true, Type: 'c', Major: 1n, Minor: 3n, Access: 'rwm' },
  ];
  const cg = mgr.create('c', res({ Devices: rules }));
  const bpfCalls = () => libc.calls.filter((c) => c.name.startsWith('bpf') || c.name === 'close' || c.name === 'openat');
  const groupDir = path.join(fake.root, 'agent', 'c');
  const [load, open, attach, closeDir] = bpfCalls();
  t.same(load?.args, [BPF_PROG_TYPE_CGROUP_DEVICE, deviceFilterProgram(res({ Devices: rules }).Devices), 'Apache-2.0']);
  t.same(open?.args, [AT_FDCWD, groupDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0], 'the group directory opened through the seam');
  t.equal(attach?.name, 'bpfProgAttach');
  const firstProg = attach?.args[1];
  t.same(attach?.args.slice(2), [BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI]);
  t.same(closeDir?.args, [attach?.args[0]], 'the directory fd is closed once attached');

  libc.calls.length = 0;
  cg.update(res({ Devices: [{ Allow: true, Type: 'a' }] }));
  t.same(
    bpfCalls().map((c) => c.name),
    ['bpfProgLoad', 'openat', 'bpfProgAttach', 'bpfProgDetach', 'close', 'close'],
    'new filter in before the old one out',
  );
  t.equal(bpfCalls()[3]?.args[1], firstProg, 'the old program is the one detached');
  t.equal(bpfCalls()[4]?.args[0], firstProg);
  t.same(bpfCalls()[5]?.args, [bpfCalls()[2]?.args[0]], 'then the directory fd');
  const secondProg = bpfCalls()[2]?.args[1];

  libc.calls.length = 0;
  cg.update(res({ Pids: { Limit: 3n } }));
  t.same(bpfCalls(), [], 'an update without device rules keeps the filter');

  let err: unknown;
  try {
    cg.update(res({ Devices: [{ Allow: true, Type: 'z' }] }));
  } catch (e) {
    err = e;
  }
  t.equal(toRpcError(err).code, Code.INVALID_ARGUMENT);

  libc.calls.length = 0;
  await cg.destroy();
  t.same(
    bpfCalls().map((c) => [c.name, c.args[0]]),
    [['close', secondProg]],
    'program fd released with the group',
  );
});

t.test('a parent level shared by several groups goes with the last of them, whichever created it', async (t) => {
  const { fake, mgr } = setup(t);
  const a = mgr.create('kata/a', undefined);
  const b = mgr.create('kata/b', undefined);
  await a.destroy();
  t.ok(fs.existsSync(path.join(fake.root, 'agent/kata/b')), 'b untouched');
  await b.destroy();
  t.notOk(fs.existsSync(path.join(fake.root, 'agent/kata')), 'kata removed with the last group');
  // A level that existed before the manager is not its to remove.
  fake.fs.mkdir!(path.join(fake.root, 'agent/preexisting'));
  const c = mgr.create('preexisting/c', undefined);
  await c.destroy();
  t.ok(fs.existsSync(path.join(fake.root, 'agent/preexisting')));
});
