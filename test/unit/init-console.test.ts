// PID 1 under kata's console: the hvc devices the command line names, the "started without a
// console" check, and moving fds 1-2 to the console once the driver is loaded and the device exists.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { consoleModules, hvcConsoles, moveLogsToConsole, startedWithoutConsole } from '../../init/src/console.js';
import { moduleName } from '../../init/src/modules.js';
import { RecordingLibc } from '../support/recording-libc.js';

const dep = `kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`;

/** The background watch does not hold the event loop (PID 1's agent does); the test must. */
function holdLoop(t: Test): void {
  const timer = setInterval(() => undefined, 1000);
  t.teardown(() => clearInterval(timer));
}

function fixture(t: Test, bound = true): { modulesDir: string; devDir: string; sysDir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'boot-console-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const modulesDir = path.join(dir, 'modules');
  const devDir = path.join(dir, 'dev');
  fs.mkdirSync(devDir);
  for (const line of dep.split('\n').filter(Boolean)) {
    const file = path.join(modulesDir, line.slice(0, line.indexOf(':')));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '');
  }
  fs.writeFileSync(path.join(modulesDir, 'modules.dep'), dep);
  const sysDir = path.join(dir, 'sys');
  const driver = path.join(sysDir, 'bus', 'virtio', 'drivers', 'virtio_console');
  fs.mkdirSync(driver, { recursive: true });
  if (bound) fs.mkdirSync(path.join(driver, 'virtio1'));
  return { modulesDir, devDir, sysDir };
}

t.test("kata's console= words give the hvc devices in order", async (t) => {
  t.same(hvcConsoles('tsc=reliable console=hvc0 console=hvc1 quiet panic=1'), ['hvc0', 'hvc1']);
  t.same(hvcConsoles('console=ttyS0,115200 console=hvc0,9600 console=hvc0'), ['hvc0'], 'options cut, serial skipped, no duplicates');
  t.same(hvcConsoles('console=ttyS0 quiet'), []);
});

t.test('started without a console: fd 2 is /dev/null, not a pipe, file or tty', async (t) => {
  t.ok(startedWithoutConsole(() => fs.statSync('/dev/null')));
  t.notOk(
    startedWithoutConsole(() => fs.statSync(__filename)),
    'a regular file',
  );
  t.notOk(
    startedWithoutConsole(() => {
      throw Object.assign(new Error('EBADF'), { code: 'EBADF' });
    }),
    'fd 2 closed',
  );
  t.notOk(startedWithoutConsole(), "the test's own stderr (a pipe)");
});

t.test('loads the PCI transport and the console driver, waits for hvc0, puts it on fds 1 and 2', async (t) => {
  const { modulesDir, devDir, sysDir } = fixture(t);
  const libc = new RecordingLibc();
  // The port shows up only after the host answered the driver; here a moment after the loads.
  setTimeout(() => fs.writeFileSync(path.join(devDir, 'hvc0'), ''), 50);
  const r = await moveLogsToConsole(libc, { cmdline: 'quiet console=hvc0 console=hvc1', modulesDir, devDir, sysDir, timeoutMs: 20_000 });
  t.equal(r.console, path.join(devDir, 'hvc0'));
  const loads = libc.calls.filter((c) => c.name === 'finitModule').length;
  t.same(r.modules?.loaded, ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'virtio_console'], 'dependencies first');
  t.equal(loads, 6);
  t.ok(consoleModules.every((m) => r.modules?.loaded.map(moduleName).includes(m)));
  const dups = libc.calls.filter((c) => c.name === 'dup3').map((c) => c.args);
  t.same(
    dups.map((a) => a[1]),
    [1, 2],
    'fds 1 and 2, in that order; fd 0 stays /dev/null',
  );
  t.equal(dups[0][0], dups[1][0], 'both from the one opened console');
  const names = libc.calls.map((c) => c.name);
  t.ok(names.indexOf('dup3') > names.lastIndexOf('finitModule'), 'after the driver loaded');
});

t.test('a device node that cannot be opened yet is waited for, not given up on', async (t) => {
  const { modulesDir, devDir, sysDir } = fixture(t);
  const libc = new RecordingLibc();
  // Under load the guest's /dev/hvc0 existed a moment before it could be opened (EINVAL); a
  // directory in its place fails the open the same way (EISDIR) until the real node replaces it.
  const hvc0 = path.join(devDir, 'hvc0');
  fs.mkdirSync(hvc0);
  setTimeout(() => {
    fs.rmdirSync(hvc0);
    fs.writeFileSync(hvc0, '');
  }, 50);
  const r = await moveLogsToConsole(libc, { cmdline: 'console=hvc0', modulesDir, devDir, sysDir, timeoutMs: 20_000 });
  t.equal(r.console, hvc0, 'moved once the node could be opened');
  t.same(
    libc.calls.filter((c) => c.name === 'dup3').map((c) => c.args[1]),
    [1, 2],
  );
});

t.test('a node that never opens: the reason says why', async (t) => {
  holdLoop(t);
  const { modulesDir, devDir, sysDir } = fixture(t);
  fs.mkdirSync(path.join(devDir, 'hvc0'));
  const r = await moveLogsToConsole(new RecordingLibc(), { cmdline: 'console=hvc0', modulesDir, devDir, sysDir, timeoutMs: 20, lateMs: 50 });
  t.match(r.reason, /EISDIR.*still watching/);
  t.match((await r.late)?.reason, /EISDIR/);
});

t.test('a port later than the bounded wait: the boot goes on, the logs move when it appears', async (t) => {
  holdLoop(t);
  const { modulesDir, devDir, sysDir } = fixture(t);
  const libc = new RecordingLibc();
  const r = await moveLogsToConsole(libc, { cmdline: 'console=hvc0 console=hvc1', modulesDir, devDir, sysDir, timeoutMs: 50 });
  t.equal(r.console, undefined, 'not there within the bound');
  t.match(r.reason, `${path.join(devDir, 'hvc0')}, ${path.join(devDir, 'hvc1')} appeared within 50 ms; still watching`);
  t.notOk(
    libc.calls.some((c) => c.name === 'dup3'),
    'fds left alone meanwhile',
  );
  fs.writeFileSync(path.join(devDir, 'hvc1'), '');
  const late = await r.late;
  t.equal(late?.console, path.join(devDir, 'hvc1'), 'moved once it appeared');
  t.same(
    libc.calls.filter((c) => c.name === 'dup3').map((c) => c.args[1]),
    [1, 2],
  );
});

t.test('a port that never appears: the background watch gives up, fds left alone', async (t) => {
  holdLoop(t);
  const { modulesDir, devDir, sysDir } = fixture(t);
  const libc = new RecordingLibc();
  const r = await moveLogsToConsole(libc, { cmdline: 'console=hvc0', modulesDir, devDir, sysDir, timeoutMs: 20, lateMs: 100 });
  const late = await r.late;
  t.equal(late?.console, undefined);
  t.match(late?.reason, `${path.join(devDir, 'hvc0')} appeared within 120 ms`);
  t.notOk(libc.calls.some((c) => c.name === 'dup3'));
});

t.test('no virtio-serial device bound to the driver: no wait at all', async (t) => {
  const { modulesDir, devDir, sysDir } = fixture(t, false);
  const libc = new RecordingLibc();
  const r = await moveLogsToConsole(libc, { cmdline: 'console=hvc0', modulesDir, devDir, sysDir, timeoutMs: 60_000 });
  t.match(r.reason, /no device bound to virtio_console/);
  t.equal(r.late, undefined, 'no background watch');
  t.ok(
    libc.calls.some((c) => c.name === 'finitModule'),
    'the driver was loaded first',
  );
});

t.test('no hvc console on the command line: nothing loaded, nothing moved', async (t) => {
  const { modulesDir, devDir } = fixture(t);
  const libc = new RecordingLibc();
  const r = await moveLogsToConsole(libc, { cmdline: 'console=ttyS0 quiet', modulesDir, devDir });
  t.match(r.reason, /no console=hvcN/);
  t.same(libc.calls, []);
});
