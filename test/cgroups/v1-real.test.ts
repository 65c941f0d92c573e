// The v1 driver on this machine's real v1 hierarchies (root only). Every group is created below the
// test process's own group with a unique name and removed at the end.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { create } from '@bufbuild/protobuf';
import { LinuxResourcesSchema } from '../../protos/gen/oci_pb.js';
import { createCgroupManager } from '../../agent/src/cgroups/detect.js';
import type { Cgroup } from '../../agent/src/cgroups/cgroup.js';
import { V1Manager } from '../../agent/src/cgroups/v1.js';
import { signalAll } from '../../agent/src/cgroups/signal-all.js';
import { Code, toRpcError } from '../../agent/src/rpc/status.js';
import { spawn } from 'node:child_process';
import { cpuTicks, eventually, gatedShell, isRoot, killAndWait, notRootReason, sleep, uniqueName } from './helpers.js';

const hasV1 = fs.existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') || fs.existsSync('/sys/fs/cgroup/freezer/cgroup.procs');
const skip = !isRoot ? notRootReason : !hasV1 ? 'no cgroup v1 hierarchies on this machine' : false;

const MiB = 1024n * 1024n;
const warnings: string[] = [];
const log = { warn: (_o: object, msg: string) => warnings.push(msg) } as never;

function mgr(): V1Manager {
  // The agent's own grace (2 s), not a shorter one: a SIGKILLed busy loop on a loaded machine took
  // more than 300 ms to leave its group, and the kill-then-destroy case below then failed.
  const m = createCgroupManager({ forceVersion: 'v1', log, destroyGraceMs: 2_000 });
  if (!(m instanceof V1Manager)) throw new Error('expected the v1 driver');
  return m;
}

/** Every directory the group has (or had) in every hierarchy. */
function groupDirs(m: V1Manager, relPath: string): string[] {
  return m.hierarchies.map((h) => path.join(h.mountPoint, h.ownPath, relPath));
}

function dirOf(m: V1Manager, controller: string, relPath: string): string {
  const h = m.hierarchies.find((x) => x.controllers.includes(controller))!;
  return path.join(h.mountPoint, h.ownPath, relPath);
}

const read = (p: string) => fs.readFileSync(p, 'utf8').trim();
// A kernel built without CFQ and BFQ (some cloud kernels) has no proportional blkio weight at all.
const blkioWeight = ['blkio.weight', 'blkio.bfq.weight'].some((f) => fs.existsSync(`/sys/fs/cgroup/blkio/${f}`));

t.test('v1: limits are written below the own path, read back, updated; destroy leaves nothing', { skip }, async (t) => {
  const m = mgr();
  const parent = uniqueName('cgtest-v1');
  const rel = `${parent}/limits`;
  const cg = m.create(
    rel,
    create(LinuxResourcesSchema, {
      Memory: { Limit: 64n * MiB, Swap: 64n * MiB, Reservation: 32n * MiB },
      CPU: { Shares: 512n, Quota: 50000n, Period: 100000n, Cpus: '0', Mems: '0' },
      Pids: { Limit: 50n },
      ...(blkioWeight ? { BlockIO: { Weight: 200 } } : {}),
      Devices: [
        { Allow: false, Access: 'rwm' },
        { Allow: true, Type: 'c', Major: 1n, Minor: 3n, Access: 'rwm' },
      ],
    }),
  );
  t.teardown(() => cg.destroy().catch(() => undefined));

  // The memory hierarchy places the test process in a sub-group here; the group must be below it.
  const self = fs
    .readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .find((l) => /:memory:/.test(l))!
    .split(':')[2];
  t.equal(dirOf(m, 'memory', rel), path.join('/sys/fs/cgroup/memory', self, rel));
  for (const d of groupDirs(m, rel)) t.ok(fs.existsSync(d), `${d} exists`);

  const mem = dirOf(m, 'memory', rel);
  t.equal(read(`${mem}/memory.limit_in_bytes`), String(64n * MiB));
  t.equal(read(`${mem}/memory.soft_limit_in_bytes`), String(32n * MiB));
  if (fs.existsSync(`${mem}/memory.memsw.limit_in_bytes`)) t.equal(read(`${mem}/memory.memsw.limit_in_bytes`), String(64n * MiB));
  const cpu = dirOf(m, 'cpu', rel);
  t.equal(read(`${cpu}/cpu.shares`), '512');
  t.equal(read(`${cpu}/cpu.cfs_quota_us`), '50000');
  t.equal(read(`${cpu}/cpu.cfs_period_us`), '100000');
  t.equal(read(`${dirOf(m, 'cpuset', rel)}/cpuset.cpus`), '0');
  t.equal(read(`${dirOf(m, 'pids', rel)}/pids.max`), '50');
  const blkio = dirOf(m, 'blkio', rel);
  if (blkioWeight) {
    const weightFile = fs.existsSync(`${blkio}/blkio.weight`) ? 'blkio.weight' : 'blkio.bfq.weight';
    t.match(read(`${blkio}/${weightFile}`), /\b200$/);
  } else {
    // No weight file: the limit is refused by name, not dropped silently.
    const weight = create(LinuxResourcesSchema, { BlockIO: { Weight: 200 } });
    t.throws(() => cg.update(weight), /blkio\.bfq\.weight/);
    let code: Code | undefined;
    try {
      cg.update(weight);
    } catch (e) {
      code = toRpcError(e).code;
    }
    t.equal(code, Code.FAILED_PRECONDITION);
  }
  t.equal(read(`${dirOf(m, 'devices', rel)}/devices.list`), 'c 1:3 rwm');
  // The intermediate level got CPUs and memory nodes from its parent, or the leaf could not take any.
  t.not(read(path.join(path.dirname(dirOf(m, 'cpuset', rel)), 'cpuset.cpus')), '');

  // UpdateContainer: raising memory above the current memsw needs memsw raised first.
  cg.update(create(LinuxResourcesSchema, { Memory: { Limit: 128n * MiB, Swap: 128n * MiB }, Pids: { Limit: -1n } }));
  t.equal(read(`${mem}/memory.limit_in_bytes`), String(128n * MiB));
  t.equal(read(`${dirOf(m, 'pids', rel)}/pids.max`), 'max');
  // ...and lowering it needs the limit lowered first.
  cg.update(create(LinuxResourcesSchema, { Memory: { Limit: 16n * MiB, Swap: 16n * MiB } }));
  t.equal(read(`${mem}/memory.limit_in_bytes`), String(16n * MiB));

  const s = cg.stats();
  t.equal(s.memoryStats?.usage?.limit, 16n * MiB);
  t.equal(s.pidsStats?.current, 0n);

  await cg.destroy();
  for (const d of groupDirs(m, rel)) t.notOk(fs.existsSync(d), `${d} removed`);
  for (const d of groupDirs(m, parent)) t.notOk(fs.existsSync(d), `${d} (created parent level) removed`);
});

t.test('v1: a process moved in is listed, counted, frozen (it stops running) and thawed', { skip }, async (t) => {
  const m = mgr();
  const rel = uniqueName('cgtest-v1-freeze');
  const cg = m.create(rel, create(LinuxResourcesSchema, { Pids: { Limit: 10n } }));
  const { child, release } = gatedShell('while :; do :; done');
  t.teardown(async () => {
    await killAndWait(child);
    await cg.destroy().catch(() => undefined);
  });
  const pid = child.pid!;
  cg.addProcess(pid);
  release();
  t.same(cg.pids(), [pid]);
  for (const d of groupDirs(m, rel)) t.match(fs.readFileSync(`${d}/cgroup.procs`, 'utf8'), new RegExp(`^${pid}$`, 'm'));

  const before = cpuTicks(pid);
  await eventually(() => cpuTicks(pid) > before);
  t.equal(cg.state(), 'THAWED');

  await cg.freeze();
  t.equal(cg.state(), 'FROZEN');
  t.equal(read(`${dirOf(m, 'freezer', rel)}/freezer.state`), 'FROZEN');
  const frozenAt = cpuTicks(pid);
  await sleep(300);
  t.equal(cpuTicks(pid), frozenAt, 'a frozen busy loop accumulates no CPU time');

  await cg.thaw();
  t.equal(cg.state(), 'THAWED');
  await eventually(() => cpuTicks(pid) > frozenAt);
  t.pass('runs again after thaw');

  const s = cg.stats();
  t.equal(s.pidsStats?.current, 1n);
  t.equal(s.pidsStats?.limit, 10n);
  t.ok((s.cpuStats?.cpuUsage?.totalUsage ?? 0n) > 0n, 'cpu usage counted');
  t.ok((s.cpuStats?.cpuUsage?.usageInUsermode ?? 0n) > 0n, 'user time counted');
  t.equal(s.cpuStats?.cpuUsage?.percpuUsage.length, (await import('node:os')).cpus().length);
  t.ok(Object.keys(s.memoryStats?.stats ?? {}).includes('rss'), 'memory.stat map carried');

  // Removing a group that still has a process fails and says why; after the kill it succeeds.
  const busy = await cg.destroy().then(
    () => undefined,
    (e: unknown) => e,
  );
  t.equal(toRpcError(busy).code, Code.FAILED_PRECONDITION);
  t.match(String(busy), new RegExp(`still has processes: ${pid}`));
  // A process killed but not yet gone (as orphans of a shared pid namespace are at RemoveContainer)
  // does not make destroy fail: it waits for the group to empty.
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await cg.destroy();
  for (const d of groupDirs(m, rel)) t.notOk(fs.existsSync(d), `${d} removed`);
  await exited;
});

t.test('v1: a process over its memory limit is OOM-killed and watchOom reports it', { skip }, async (t) => {
  const m = mgr();
  const rel = uniqueName('cgtest-v1-oom');
  const cg: Cgroup = m.create(rel, create(LinuxResourcesSchema, { Memory: { Limit: 16n * MiB, Swap: 16n * MiB } }));
  // tail keeps the never-ending "line" from /dev/zero in memory until the limit stops it.
  const { child, release } = gatedShell('exec tail /dev/zero');
  t.teardown(async () => {
    await killAndWait(child);
    await cg.destroy().catch(() => undefined);
  });
  let ooms = 0;
  const oom = new Promise<void>((resolve) => {
    const stop = cg.watchOom(() => {
      ooms++;
      stop();
      resolve();
    });
  });
  cg.addProcess(child.pid!);
  const exit = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, sig) => r(sig)));
  release();
  await oom;
  t.equal(ooms, 1, 'one OOM reported');
  t.equal(await exit, 'SIGKILL', 'the kernel killed it');
  t.equal(cg.stats().memoryStats?.usage?.maxUsage, 16n * MiB, 'peak usage reached the limit');
  await cg.destroy();
  for (const d of groupDirs(m, rel)) t.notOk(fs.existsSync(d), `${d} removed`);
});

t.test('v1: bad paths, duplicates and failed creates', { skip }, async (t) => {
  const m = mgr();
  for (const bad of ['../escape', '/abs', 'a//b', 'a/./b', '']) {
    t.equal(toRpcError(t.throws(() => m.create(bad, undefined)) ?? new Error()).code, Code.INVALID_ARGUMENT, `"${bad}" refused`);
  }
  const rel = uniqueName('cgtest-v1-dup');
  const cg = m.create(rel, undefined);
  t.teardown(() => cg.destroy().catch(() => undefined));
  let err: unknown;
  try {
    m.create(rel, undefined);
  } catch (e) {
    err = e;
  }
  t.equal(toRpcError(err).code, Code.ALREADY_EXISTS);
  await cg.destroy();

  // A resource the kernel rejects fails the create, names the file, and leaves no directory.
  const rel2 = uniqueName('cgtest-v1-fail');
  err = undefined;
  try {
    m.create(`${rel2}/leaf`, create(LinuxResourcesSchema, { CPU: { Cpus: '4096' } }));
  } catch (e) {
    err = e;
  }
  t.match(String(err), /cpuset\.cpus/);
  for (const d of [...groupDirs(m, rel2), ...groupDirs(m, `${rel2}/leaf`)]) t.notOk(fs.existsSync(d), `${d} not left behind`);
});

t.test('v1: device rules written to devices.allow/deny are enforced', { skip }, async (t) => {
  const m = mgr();
  const rel = uniqueName('cgtest-v1-dev');
  const cg = m.create(
    rel,
    create(LinuxResourcesSchema, {
      Devices: [
        { Allow: false, Type: 'a' },
        { Allow: true, Type: 'c', Major: 1n, Minor: 3n, Access: 'rwm' },
      ],
    }),
  );
  t.teardown(() => cg.destroy().catch(() => undefined));
  const probe =
    'read _go; (: > /dev/null) 2>/dev/null && echo null-ok || echo null-denied; (head -c1 /dev/zero > /dev/null) 2>/dev/null && echo zero-ok || echo zero-denied';
  const child = spawn('sh', ['-c', probe], { stdio: ['pipe', 'pipe', 'ignore'] });
  t.teardown(() => killAndWait(child));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  cg.addProcess(child.pid!);
  child.stdin!.end('go\n');
  await new Promise((r) => child.once('close', r));
  t.same(out.trim().split('\n'), ['null-ok', 'zero-denied']);
  await cg.destroy();
});

t.test('v1: signalAll kills every process of a group, even one that keeps forking', { skip }, async (t) => {
  const m = mgr();
  const rel = uniqueName('cgtest-v1-killall');
  const cg = m.create(rel, create(LinuxResourcesSchema, { Pids: { Limit: 30n } }));
  // Forks as fast as it can, retrying at the pids limit (bash, unlike dash, survives a failed fork):
  // a plain list-then-kill would miss the children born in between.
  const child = spawn('bash', ['-c', 'read _go; while :; do sleep 1000 & done 2>/dev/null'], { stdio: ['pipe', 'ignore', 'ignore'] });
  const release = () => child.stdin!.end('go\n');
  const exited = new Promise((r) => child.once('exit', r));
  t.teardown(async () => {
    await killAndWait(child);
    // Only if the test failed midway: the group is gone otherwise.
    if (cg.state() === 'FROZEN') await cg.thaw();
    const left = () => {
      try {
        return cg.pids();
      } catch {
        return [];
      }
    };
    for (const pid of left()) process.kill(pid, 'SIGKILL');
    await eventually(() => left().length === 0);
    await cg.destroy().catch(() => undefined);
  });
  cg.addProcess(child.pid!);
  release();
  await eventually(() => cg.pids().length >= 5);
  t.equal(child.exitCode, null, 'the forker is still running');
  const signalled = await signalAll(cg, 'SIGKILL');
  t.ok(signalled.includes(child.pid!), 'the shell was in the list');
  t.ok(signalled.length >= 5, `${signalled.length} processes signalled`);
  await exited;
  // Its sleep children were re-parented and die too; the reaper of this test process is the kernel's
  // subreaper chain, so wait for the group to empty rather than for exit events.
  await eventually(() => cg.pids().length === 0);
  t.equal(cg.state(), 'THAWED', 'thawed again');
  await cg.destroy();
});

t.test('v1: no group of this test run is left in any hierarchy', { skip }, async (t) => {
  const m = mgr();
  const mine = new RegExp(`^cgtest-v1-[a-z-]*${process.pid}-`);
  for (const h of m.hierarchies) {
    const left = fs.readdirSync(path.join(h.mountPoint, h.ownPath)).filter((n) => mine.test(n));
    t.same(left, [], `${h.mountPoint}${h.ownPath}`);
  }
});

t.test('v1: refreshCpuset gives the parent levels and the group the guest CPUs, or the group its own', { skip }, async (t) => {
  const m = mgr();
  const parent = uniqueName('cgtest-v1-cpuset');
  const online = read('/sys/devices/system/cpu/online');
  const narrow = create(LinuxResourcesSchema, { CPU: { Cpus: '0' } });
  const a = m.create(`${parent}/mid/a`, undefined);
  const b = m.create(`${parent}/mid/b`, undefined);
  t.teardown(async () => {
    await a.destroy().catch(() => undefined);
    await b.destroy().catch(() => undefined);
  });
  // A group made before a hot-add holds the old CPUs: narrow them as a stand-in for that.
  a.update(narrow);
  b.update(narrow);
  fs.writeFileSync(path.join(dirOf(m, 'cpuset', `${parent}/mid`), 'cpuset.cpus'), '0');
  fs.writeFileSync(path.join(dirOf(m, 'cpuset', parent), 'cpuset.cpus'), '0');
  a.refreshCpuset(online, undefined);
  t.equal(read(path.join(dirOf(m, 'cpuset', parent), 'cpuset.cpus')), online, 'outer level widened');
  t.equal(read(path.join(dirOf(m, 'cpuset', `${parent}/mid`), 'cpuset.cpus')), online, 'inner level widened');
  t.equal(read(path.join(dirOf(m, 'cpuset', `${parent}/mid/a`), 'cpuset.cpus')), online, 'the group: every online CPU');
  b.refreshCpuset(online, '0');
  t.equal(read(path.join(dirOf(m, 'cpuset', `${parent}/mid/b`), 'cpuset.cpus')), '0', 'a group with its own cpuset keeps it');
});
