// OnlineCPUMem on a fake sysfs tree (never the host's /sys): both generations' CPU counting, memory
// blocks by `online` or `state`, waiting for a CPU that appears late, the bound on waiting; and the
// filesystem-module loader the shared-dir storages use.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { OnlineCPUMemRequestSchema } from '../../protos/gen/agent_pb.js';
import { countOnlineCpus, onlineCpuMem, onlineCpuMemHandlers } from '../../agent/src/guest/online-cpu-mem.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { filesystemEnsurer, parseFilesystems } from '../../agent/src/storage/filesystems.js';
import { dialect1x } from '../../agent/src/rpc/dialect.js';

const log = createLogger('error');

/** cpu0 (no online file), cpus 1..n with the given states, and memory blocks. */
function fakeSysfs(t: { teardown(f: () => unknown): void }, cpus: string[], memory: Record<string, { online?: string; state?: string }>) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-sysfs-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const cpuDir = `${root}/devices/system/cpu`;
  fs.mkdirSync(`${cpuDir}/cpu0`, { recursive: true });
  fs.mkdirSync(`${cpuDir}/cpufreq`);
  cpus.forEach((v, i) => addCpu(root, i + 1, v));
  for (const [name, files] of Object.entries(memory)) {
    fs.mkdirSync(`${root}/devices/system/memory/${name}`, { recursive: true });
    for (const [f, v] of Object.entries(files)) fs.writeFileSync(`${root}/devices/system/memory/${name}/${f}`, `${v}\n`);
  }
  return root;
}
function addCpu(root: string, n: number, online: string) {
  fs.mkdirSync(`${root}/devices/system/cpu/cpu${n}`, { recursive: true });
  fs.writeFileSync(`${root}/devices/system/cpu/cpu${n}/online`, `${online}\n`);
}
const read = (root: string, p: string) => fs.readFileSync(`${root}/devices/system/${p}`, 'utf8').trim();
const req = (r: { wait?: boolean; nbCpus?: number; cpuOnly?: boolean }) => create(OnlineCPUMemRequestSchema, r);
const noSleep = async () => undefined;

t.test('kata 3.x: nb_cpus is the count to have online; memory blocks by online or state', async (t) => {
  const root = fakeSysfs(t, ['1', '0', '0', '0'], {
    memory0: { online: '1' },
    memory1: { online: '0' },
    memory32: { state: 'offline' },
    memory33: { state: 'online' },
  });
  t.equal(countOnlineCpus(`${root}/devices/system/cpu`), 2, 'cpu0 without an online file counts as online');
  await onlineCpuMem({ sysfs: root, log, hotplugTimeoutMs: 1000, sleep: noSleep }, req({ nbCpus: 3 }), 'kata-3.x');
  t.same(
    [1, 2, 3, 4].map((n) => read(root, `cpu/cpu${n}/online`)),
    ['1', '1', '0', '0'],
    'one more CPU, lowest first',
  );
  t.equal(read(root, 'memory/memory1/online'), '1');
  t.equal(read(root, 'memory/memory32/state'), 'online');
  await onlineCpuMem({ sysfs: root, log, hotplugTimeoutMs: 1000, sleep: noSleep }, req({ nbCpus: 2, cpuOnly: true }), 'kata-3.x');
  t.equal(read(root, 'cpu/cpu3/online'), '0', 'already enough online: nothing written');
});

t.test('kata 1.x: nb_cpus is how many to add; nb_cpus 0 with cpu_only is refused', async (t) => {
  const root = fakeSysfs(t, ['1', '0', '0', '0'], { memory5: { online: '0' } });
  await onlineCpuMem({ sysfs: root, log, hotplugTimeoutMs: 1000, sleep: noSleep }, req({ wait: true, nbCpus: 2, cpuOnly: true }), 'kata-1.x');
  t.same(
    [1, 2, 3, 4].map((n) => read(root, `cpu/cpu${n}/online`)),
    ['1', '1', '1', '0'],
    'two offline CPUs onlined',
  );
  t.equal(read(root, 'memory/memory5/online'), '0', 'cpu_only leaves memory alone');
  const h = onlineCpuMemHandlers({ sysfs: root, log, hotplugTimeoutMs: 1000, sleep: noSleep });
  const ctx = { dialect: dialect1x } as Parameters<NonNullable<typeof h.onlineCPUMem>>[1];
  await t.rejects(Promise.resolve(h.onlineCPUMem!(req({ nbCpus: 0, cpuOnly: true }), ctx)), /nb_cpus must be greater than 0/);
  await h.onlineCPUMem!(req({ wait: true, nbCpus: 0 }), ctx);
  t.equal(read(root, 'memory/memory5/online'), '1', 'nb_cpus 0: memory only (the call sent before every create)');
  t.equal(read(root, 'cpu/cpu4/online'), '0', 'and no CPU');
});

t.test('waits for a CPU the host hot-adds after the call, up to the hotplug timeout', async (t) => {
  const root = fakeSysfs(t, [], {});
  let naps = 0;
  const sleep = async () => {
    // The vCPU shows up in sysfs only after the agent looked once.
    if (++naps === 2) addCpu(root, 1, '0');
  };
  await onlineCpuMem({ sysfs: root, log, hotplugTimeoutMs: 60_000, sleep }, req({ nbCpus: 2, cpuOnly: true }), 'kata-3.x');
  t.equal(read(root, 'cpu/cpu1/online'), '1');
  t.equal(naps, 2, 'looked again until it appeared');

  const none = fakeSysfs(t, [], {});
  await t.rejects(
    onlineCpuMem({ sysfs: none, log, hotplugTimeoutMs: 0, sleep: noSleep }, req({ nbCpus: 2, cpuOnly: true }), 'kata-3.x'),
    /1 online, 2 wanted, after 0 ms/,
  );
  await t.rejects(
    onlineCpuMem({ sysfs: none, log, hotplugTimeoutMs: 0, sleep: noSleep }, req({ wait: true, nbCpus: 1, cpuOnly: true }), 'kata-1.x'),
    /0 onlined, 1 wanted/,
  );
});

t.test('filesystem modules: loaded with finit_module only when /proc/filesystems lacks the type', async (t) => {
  t.same([...parseFilesystems('nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\t9p\n')], ['sysfs', 'tmpfs', 'ext4', '9p']);
  const mods = fs.mkdtempSync(path.join(os.tmpdir(), 'fs-mods-'));
  t.teardown(() => fs.rmSync(mods, { recursive: true, force: true }));
  const dep = [
    'kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko',
    'kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko',
    'kernel/net/9p/9pnet.ko:',
    'kernel/fs/netfs/netfs.ko:',
    'kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko',
    'kernel/fs/fuse/fuse.ko:',
  ];
  fs.writeFileSync(`${mods}/modules.dep`, dep.join('\n') + '\n');
  for (const l of dep) {
    const f = `${mods}/${l.slice(0, l.indexOf(':'))}`;
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, 'ko');
  }
  let filesystems = 'nodev\ttmpfs\n';
  const loaded: string[] = [];
  const libc = new RecordingLibc({
    finitModule: (fd) => {
      loaded.push(path.basename(fs.readlinkSync(`/proc/self/fd/${fd}`)));
      if (loaded.at(-1) === '9p.ko') filesystems += 'nodev\t9p\n';
    },
  });
  const ensure = filesystemEnsurer({ libc, log, modulesDir: mods, readFilesystems: () => filesystems });
  ensure('tmpfs');
  t.same(loaded, [], 'known type: nothing loaded');
  ensure('9p');
  t.same(loaded, ['9pnet.ko', '9pnet_virtio.ko', 'netfs.ko', '9p.ko'], 'the virtio transport and 9p, dependencies first');
  ensure('9p');
  t.equal(loaded.length, 4, 'once there, not loaded again');
  t.throws(() => ensure('virtiofs'), /filesystem virtiofs is not in \/proc\/filesystems and loading virtiofs did not add it/);
  ensure('nosuchfs');
});

t.test("after adding CPUs the containers' cpusets are refreshed with the online list (memory-only calls leave them)", async (t) => {
  const root = fakeSysfs(t, ['0'], {});
  fs.writeFileSync(`${root}/devices/system/cpu/online`, '0-1\n');
  const calls: unknown[][] = [];
  const cgroup = { refreshCpuset: (...a: unknown[]) => void calls.push(a) } as never;
  const deps = {
    sysfs: root,
    log,
    hotplugTimeoutMs: 1000,
    sleep: noSleep,
    containerCgroups: () => [
      { id: 'c1', cgroup, cpus: undefined },
      { id: 'c2', cgroup, cpus: '1' },
    ],
  };
  await onlineCpuMem(deps, req({ nbCpus: 0 }), 'kata-3.x');
  t.same(calls, [], 'nb_cpus 0: no CPU changed');
  await onlineCpuMem(deps, req({ nbCpus: 2, cpuOnly: true }), 'kata-3.x');
  t.same(calls, [
    ['0-1', undefined],
    ['0-1', '1'],
  ]);
});

t.test("an agent that is not the guest's (no sysfs given) onlines nothing", async (t) => {
  const calls: unknown[] = [];
  await onlineCpuMem(
    { sysfs: undefined, log, hotplugTimeoutMs: 0, sleep: noSleep, containerCgroups: () => (calls.push(1), []) },
    req({ nbCpus: 4 }),
    'kata-3.x',
  );
  t.same(calls, [], 'not even the containers are looked at');
});
