// Runs inside a QEMU guest (guest-v2.test.ts boots it) as the only program after a shell /init: the
// v2 driver on a real cgroup2 root with every controller (memory, cpu, cpuset, io, pids), which this
// host's hybrid layout cannot offer. Prints one "CHECK <key> <json>" line per fact for the host.
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { create } from '@bufbuild/protobuf';
import { LinuxResourcesSchema } from '../../protos/gen/oci_pb.js';
import { createCgroupManager } from '../../agent/src/cgroups/detect.js';
import { signalAll } from '../../agent/src/cgroups/signal-all.js';

const out = (key: string, v: unknown) => console.log(`CHECK ${key} ${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x))}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = async (f: () => boolean) => {
  while (!f()) await sleep(20);
};
const read = (p: string) => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8').trim() : '(missing)');
const ticks = (pid: number) => {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
};
const gated = (script: string, stdout: 'ignore' | 'pipe' = 'ignore') => spawn('/bin/sh', ['-c', `read _go; ${script}`], { stdio: ['pipe', stdout, 'ignore'] });

async function main(): Promise<void> {
  const warnings: string[] = [];
  const m = createCgroupManager({ log: { warn: (_o: object, msg: string) => warnings.push(msg) } as never });
  out('version', m.version);
  const MiB = 1048576n;
  const cg = m.create(
    'kata/c1',
    create(LinuxResourcesSchema, {
      Memory: { Limit: 32n * MiB, Swap: 32n * MiB, Reservation: 8n * MiB },
      CPU: { Shares: 1024n, Quota: 50000n, Period: 100000n, Cpus: '0', Mems: '0' },
      Pids: { Limit: 20n },
      BlockIO: { Weight: 500 },
    }),
  );
  const d = '/sys/fs/cgroup/kata/c1';
  out(
    'files',
    Object.fromEntries(
      ['memory.max', 'memory.low', 'memory.swap.max', 'cpu.weight', 'cpu.max', 'cpuset.cpus', 'pids.max', 'io.weight'].map((f) => [f, read(`${d}/${f}`)]),
    ),
  );
  cg.update(create(LinuxResourcesSchema, { Memory: { Limit: 24n * MiB, Swap: 24n * MiB }, CPU: { Period: 200000n } }));
  out('updated', { 'memory.max': read(`${d}/memory.max`), 'cpu.max': read(`${d}/cpu.max`) });

  const busy = gated('while :; do :; done');
  cg.addProcess(busy.pid!);
  busy.stdin!.end('go\n');
  out('pids', cg.pids());
  out('busyPid', busy.pid);
  await until(() => ticks(busy.pid!) > 0);
  await cg.freeze();
  const frozenAt = ticks(busy.pid!);
  await sleep(500);
  out('frozen', { state: cg.state(), ticksUnchanged: ticks(busy.pid!) === frozenAt });
  await cg.thaw();
  await until(() => ticks(busy.pid!) > frozenAt);
  out('thawed', { state: cg.state(), runs: true });
  // A busy loop at a 25% quota is throttled within a few periods.
  await until(() => (cg.stats().cpuStats?.throttlingData?.throttledPeriods ?? 0n) > 0n);
  const s = cg.stats();
  out('stats', {
    cpuTotal: s.cpuStats?.cpuUsage?.totalUsage,
    throttledPeriods: s.cpuStats?.throttlingData?.throttledPeriods,
    memoryLimit: s.memoryStats?.usage?.limit,
    statKeys: Object.keys(s.memoryStats?.stats ?? {}).length,
    pids: s.pidsStats,
  });

  let ooms = 0;
  const oom = new Promise<void>((r) =>
    cg.watchOom(() => {
      ooms++;
      r();
    }),
  );
  const hog = gated('exec tail /dev/zero');
  const hogExit = new Promise((r) => hog.once('exit', (_c, sig) => r(sig)));
  cg.addProcess(hog.pid!);
  hog.stdin!.end('go\n');
  await oom;
  out('oom', { callbacks: ooms, signal: await hogExit });

  const killed = await signalAll(cg, 'SIGKILL', () => out('signalAll-fallback', true));
  out('killed', killed);
  await until(() => busy.exitCode !== null || busy.signalCode !== null);
  await cg.destroy();

  const dev = m.create(
    'kata/dev',
    create(LinuxResourcesSchema, {
      Devices: [
        { Allow: false, Type: 'a' },
        { Allow: true, Type: 'c', Major: 1n, Minor: 3n, Access: 'rwm' },
      ],
    }),
  );
  const probe = gated(
    '(: > /dev/null) 2>/dev/null && echo null-ok || echo null-denied; (head -c1 /dev/zero > /dev/null) 2>/dev/null && echo zero-ok || echo zero-denied',
    'pipe',
  );
  let po = '';
  probe.stdout!.on('data', (b: Buffer) => (po += b));
  dev.addProcess(probe.pid!);
  probe.stdin!.end('go\n');
  await new Promise((r) => probe.once('close', r));
  out('devices', po.trim().split('\n'));
  await dev.destroy();
  out('leftover', fs.existsSync('/sys/fs/cgroup/kata') ? fs.readdirSync('/sys/fs/cgroup/kata') : []);
  out('warnings', warnings);
}

main().then(
  () => out('done', true),
  (err: Error) => out('failed', err.stack ?? String(err)),
);
