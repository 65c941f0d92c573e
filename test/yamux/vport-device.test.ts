// VportDevice without a VM: a FIFO opened read-write stands in for /dev/vportNpM. Like the port, a
// FIFO drops its unread bytes once its last fd closes, so it shows whether the device really stays
// open between sessions. poll() is the real one, except where a test plays "no host attached".
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { libc } from '../../agent/src/linux/index.js';
import { POLLHUP, POLLIN, type Libc } from '../../agent/src/linux/libc.js';
import { SerialListener } from '../../agent/src/transport/serial-listener.js';
import { VportDevice } from '../../agent/src/transport/vport-device.js';
import { once } from './pair.js';

function fifo(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vport-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const p = path.join(dir, 'vport9p1');
  const r = spawnSync('mkfifo', [p]);
  if (r.status !== 0) throw new Error(`mkfifo ${p}: ${r.stderr}`);
  return p;
}

/** How many of our fds refer to `file`. */
function fdsOf(file: string): number {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false; // the fd readdir itself used, already closed
    }
  }).length;
}

/** The real libc, with the first `hupLooks` polls answering "host side closed" as the port does. */
function hostAfter(hupLooks: number): { libc: Libc; looks: number[] } {
  const real = libc();
  const looks: number[] = [];
  return {
    looks,
    libc: Object.assign(Object.create(real) as Libc, {
      poll(fd: number, events: number, timeoutMs: number) {
        looks.push(timeoutMs);
        return looks.length <= hupLooks ? POLLIN | POLLHUP : real.poll(fd, events, timeoutMs);
      },
    }),
  };
}

t.test('waits (without blocking) while the port reports HUP, then serves on a dup of the device fd', async (t) => {
  const p = fifo(t);
  const { libc: l, looks } = hostAfter(4);
  const sleeps: number[] = [];
  const dev = new VportDevice(p, l, { minPollMs: 5, maxPollMs: 20, sleep: async (ms) => void sleeps.push(ms) });
  t.teardown(() => dev.release());
  dev.open();
  const s = await dev.nextSession(() => false);
  t.ok(s, 'a session once the host is there');
  t.same(looks, [0, 0, 0, 0, 0], 'every look is a poll with timeout 0');
  t.same(sleeps, [5, 10, 20, 20], 'the wait between looks doubles up to maxPollMs');
  // The session's stream reads and writes the device: through a FIFO it hears itself.
  s!.write('ping');
  t.equal((await once<Buffer>(s!, 'data')).toString(), 'ping');
  s!.destroy();
});

t.test('bytes that arrive between sessions are kept: closing a session leaves the device open', async (t) => {
  const p = fifo(t);
  const dev = new VportDevice(p, libc(), { sleep: async () => undefined });
  t.teardown(() => dev.release());
  dev.open();
  const first = (await dev.nextSession(() => false))!;
  first.destroy();
  await once(first, 'close');
  // The next host's first bytes, from a writer that is gone before the next session starts.
  const w = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  fs.writeSync(w, 'SYN from the next host');
  fs.closeSync(w);
  const second = (await dev.nextSession(() => false))!;
  t.equal((await once<Buffer>(second, 'data')).toString(), 'SYN from the next host');
  second.destroy();
});

t.test('release() drops unread bytes (after a protocol error they are garbage) and the next session reopens', async (t) => {
  const p = fifo(t);
  const dev = new VportDevice(p, libc(), { sleep: async () => undefined });
  dev.open();
  const w = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  fs.writeSync(w, 'rest of the garbage');
  fs.closeSync(w);
  dev.release();
  const s = (await dev.nextSession(() => false))!;
  t.teardown(() => dev.release());
  s.write('fresh');
  t.equal((await once<Buffer>(s, 'data')).toString(), 'fresh', 'only what came after the reopen');
  s.destroy();
});

t.test('close() ends the wait for a host', async (t) => {
  const p = fifo(t);
  const { libc: l } = hostAfter(Infinity);
  let closing = false;
  const dev = new VportDevice(p, l, { sleep: async () => void (closing = true) });
  t.teardown(() => dev.release());
  t.equal(await dev.nextSession(() => closing), undefined);
});

t.test('a device that cannot be opened names the path and errno', async (t) => {
  const dev = new VportDevice('/nonexistent/vport0p1', libc());
  t.throws(() => dev.open(), { message: /open\(\/nonexistent\/vport0p1, O_RDWR\|O_NONBLOCK\): ENOENT/, code: 'ENOENT' });
});

t.test('SerialListener on a real device path: no session until poll shows a host, and close() releases the port', async (t) => {
  const p = fifo(t);
  const sysfs = fs.mkdtempSync(path.join(os.tmpdir(), 'vport-sysfs-'));
  t.teardown(() => fs.rmSync(sysfs, { recursive: true, force: true }));
  fs.mkdirSync(path.join(sysfs, 'class', 'virtio-ports', 'vport9p1'), { recursive: true });
  fs.writeFileSync(path.join(sysfs, 'class', 'virtio-ports', 'vport9p1', 'name'), 'agent.channel.0\n');
  const { libc: l, looks } = hostAfter(3);
  const listener = new SerialListener({ sysfsRoot: sysfs, devDir: path.dirname(p), libc: l });
  const sessions: number[] = [];
  listener.on('session', () => sessions.push(looks.length));
  await listener.listen(() => undefined);
  t.teardown(() => listener.close());
  const firstSession = once(listener, 'session');
  await firstSession;
  t.same(sessions, [4], 'the first session starts on the first poll that shows no HUP');
  const fdsBefore = fdsOf(p);
  t.ok(fdsBefore >= 2, `the device fd and the session's dup are open (${fdsBefore})`);
  await listener.close();
  const fdsAfter = fdsOf(p);
  t.equal(fdsAfter, 0, 'no fd of the port is left after close()');
});
