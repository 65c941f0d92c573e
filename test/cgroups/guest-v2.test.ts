// The v2 driver on a real guest kernel: boots the Debian guest kernel under QEMU with a throwaway
// initramfs (busybox, this node binary, the bundled guest-v2-check program) and checks what the
// program reports. This host's cgroup2 mount has no memory/cpu/io/pids controllers; the guest has.
// Root only (QEMU, temp files); skipped with the reason when the kernel or tools are missing.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isRoot } from './helpers.js';

const repo = path.resolve(__dirname, '..', '..', '..');

/** An uncompressed vmlinux from `npm run image`, else the kernel the image builder unpacked into its cache. */
function findKernel(): string | undefined {
  if (process.env.KATA_GUEST_KERNEL) return process.env.KATA_GUEST_KERNEL;
  const built = path.join(repo, 'build', 'vmlinux');
  if (fs.existsSync(built)) return built;
  const cache = path.join(process.env.KATA_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'kata-agent-ts'), 'unpacked');
  if (!fs.existsSync(cache)) return undefined;
  for (const d of fs.readdirSync(cache)) {
    const boot = path.join(cache, d, 'boot');
    const k = fs.existsSync(boot) ? fs.readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
    if (k) return path.join(boot, k);
  }
  return undefined;
}

const which = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim() || undefined;
const kernel = findKernel();
const busybox = ['/bin/busybox', '/usr/bin/busybox'].find(
  (p) =>
    fs.existsSync(p) &&
    /not a dynamic executable|statically linked/.test(spawnSync('ldd', [p], { encoding: 'utf8' }).stdout + spawnSync('ldd', [p], { encoding: 'utf8' }).stderr),
);
const skip = !isRoot
  ? 'needs root'
  : !which('qemu-system-x86_64') || process.arch !== 'x64'
    ? 'qemu-system-x86_64 (x86-64) not installed'
    : !kernel
      ? 'no guest kernel (set KATA_GUEST_KERNEL, run `npm run image`, or let the image builder fill its cache)'
      : !busybox
        ? 'no static busybox (apt-get install busybox-static)'
        : !which('cpio')
          ? 'cpio not installed'
          : false;

/** The initramfs: busybox, node and its libraries, koffi with its native part, the bundled check. */
async function buildInitramfs(dir: string): Promise<string> {
  const root = path.join(dir, 'root');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'node_modules/@koromix']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.copyFileSync(busybox!, path.join(root, 'bin/busybox'));
  fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
  const copyHostFile = (p: string) => {
    fs.mkdirSync(path.join(root, path.dirname(p)), { recursive: true });
    fs.copyFileSync(fs.realpathSync(p), path.join(root, p));
    fs.chmodSync(path.join(root, p), 0o755);
  };
  copyHostFile(process.execPath);
  for (const line of spawnSync('ldd', [process.execPath], { encoding: 'utf8' }).stdout.split('\n')) {
    const lib = /=> (\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)/.exec(line)?.[1];
    if (lib) copyHostFile(lib);
  }
  // koffi is loaded only for the device filter (bpf); its native module sits in a per-platform package.
  const koffiDir = path.dirname(require.resolve('koffi'));
  fs.cpSync(koffiDir, path.join(root, 'node_modules/koffi'), { recursive: true, dereference: true });
  const nativeDir = path.join(path.dirname(koffiDir), '@koromix', `koffi-${process.platform}-${process.arch}`);
  if (fs.existsSync(nativeDir))
    fs.cpSync(nativeDir, path.join(root, 'node_modules/@koromix', path.basename(nativeDir)), { recursive: true, dereference: true });
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only when the test is not skipped
  const esbuild = require('esbuild') as typeof import('esbuild');
  try {
    await esbuild.build({
      entryPoints: [path.join(__dirname, 'guest-v2-check.js')],
      bundle: true,
      platform: 'node',
      target: 'node20',
      external: ['koffi'],
      outfile: path.join(root, 'check.js'),
      logLevel: 'error',
    });
  } finally {
    // esbuild keeps a service process for later builds: stop it rather than leave it to outlive us.
    await esbuild.stop();
  }
  fs.writeFileSync(
    path.join(root, 'init'),
    [
      '#!/bin/busybox sh',
      '/bin/busybox --install -s /bin',
      'export PATH=/bin',
      'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp',
      'mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup',
      'echo "CHECK kernel \\"$(uname -r) $(cat /sys/fs/cgroup/cgroup.controllers)\\""',
      `${process.execPath} /check.js`,
      'poweroff -f',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const initrd = path.join(dir, 'initrd.cpio');
  const r = spawnSync('sh', ['-c', `find . | cpio -o -H newc --quiet > ${JSON.stringify(initrd)}`], { cwd: root });
  if (r.status !== 0) throw new Error(`cpio failed: ${r.stderr}`);
  return initrd;
}

t.test('v2 driver in a QEMU guest with every controller: limits, freeze, stats, OOM, kill, devices', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cgroups-guest-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const initrd = await buildInitramfs(dir);
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      '-M',
      'q35',
      '-m',
      '1024',
      '-smp',
      '2',
      '-nographic',
      '-no-reboot',
      '-nodefaults',
      '-serial',
      'stdio',
      '-kernel',
      kernel!,
      '-initrd',
      initrd,
      '-append',
      'console=ttyS0 quiet tsc=reliable no_timer_check rcupdate.rcu_expedited=1 panic=1 reboot=k cryptomgr.notests i8042.noaux=1 i8042.nopnp=1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let consoleText = '';
  qemu.stdout!.on('data', (b: Buffer) => (consoleText += b));
  qemu.stderr!.on('data', (b: Buffer) => (consoleText += b));
  const exited = new Promise<number | null>((r) => qemu.once('exit', (code) => r(code)));
  t.teardown(() => {
    if (qemu.exitCode === null && qemu.signalCode === null) process.kill(qemu.pid!, 'SIGKILL');
  });
  await exited;

  const checks = new Map<string, unknown>();
  for (const line of consoleText.split('\n')) {
    const m = /^CHECK (\S+) (.*)\r?$/.exec(line.replace(/^.*?(?=CHECK )/, ''));
    if (m) checks.set(m[1], JSON.parse(m[2]));
  }
  const c = (k: string) => checks.get(k) as never;
  if (!checks.has('done')) t.fail(`the guest check did not finish:\n${String(c('failed') ?? '')}\n--- console tail ---\n${consoleText.slice(-4000)}`);
  t.match(c('kernel'), /memory.*pids|pids.*memory/, 'guest cgroup2 offers memory and pids');
  t.equal(c('version'), 'v2');
  t.same(c('files'), {
    'memory.max': String(32 * 1048576),
    'memory.low': String(8 * 1048576),
    'memory.swap.max': '0',
    'cpu.weight': '39',
    'cpu.max': '50000 100000',
    'cpuset.cpus': '0',
    'pids.max': '20',
    'io.weight': 'default 4950',
  });
  t.same(c('updated'), { 'memory.max': String(24 * 1048576), 'cpu.max': '50000 200000' });
  t.same(c('pids'), [c('busyPid')]);
  t.same(c('frozen'), { state: 'FROZEN', ticksUnchanged: true });
  t.same(c('thawed'), { state: 'THAWED', runs: true });
  const stats = c('stats') as { cpuTotal: string; throttledPeriods: string; memoryLimit: string; statKeys: number; pids: { current: string; limit: string } };
  t.ok(BigInt(stats.cpuTotal) > 0n, 'cpu usage');
  t.ok(BigInt(stats.throttledPeriods) > 0n, 'a busy loop at a 25% quota is throttled');
  t.equal(stats.memoryLimit, String(24 * 1048576));
  t.ok(stats.statKeys > 10, 'memory.stat carried');
  t.same({ current: stats.pids.current, limit: stats.pids.limit }, { current: '1', limit: '20' });
  t.same(c('oom'), { callbacks: 1, signal: 'SIGKILL' }, 'the OOM kill reached watchOom through memory.events');
  t.notOk(checks.has('signalAll-fallback'), 'SIGKILL went through cgroup.kill');
  t.same(c('devices'), ['null-ok', 'zero-denied'], 'eBPF device filter enforced');
  t.same(c('leftover'), [], 'groups and the shared parent level removed');
  t.same(c('warnings'), []);
});
