import t from 'tap';
import { enabledV1Subsystems, kernelHasCgroup2 } from '../../init/src/cgroups.js';
import { earlyMounts, mountAll } from '../../init/src/mounts.js';
import { setInterfaceUp } from '../../init/src/network.js';
import { powerOff } from '../../init/src/power.js';
import { SyscallError } from '../../agent/src/linux/errno.js';
import { IFF_UP, RB_POWER_OFF, SIOCGIFFLAGS, SIOCSIFFLAGS } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';

t.test("early mounts: proc first, all of kata's plus /tmp, EBUSY tolerated", async (t) => {
  const targets = earlyMounts.map((m) => m.target);
  t.same(targets, ['/proc', '/sys', '/dev', '/dev/pts', '/dev/shm', '/run', '/tmp']);
  let n = 0;
  // These mount points exist on any Linux host, so mkdir -p is a no-op; only mount is faked.
  const libc = new RecordingLibc({
    mount: () => {
      if (++n === 3) throw new SyscallError('mount', 16, 'dev'); // EBUSY: devtmpfs already there
    },
  });
  t.same(mountAll(libc), ['/dev']);
  t.equal(libc.calls.length, earlyMounts.length);
  t.same(libc.calls[0], { name: 'mount', args: ['proc', '/proc', 'proc', earlyMounts[0].flags, null] });
});

t.test('other mount errors stop the boot with the mount named', async (t) => {
  const libc = new RecordingLibc().fail('mount', 19); // ENODEV
  t.throws(() => mountAll(libc), /mount\(proc, \/proc, proc.*ENODEV/);
});

t.test('cgroup facts from /proc', async (t) => {
  const procCgroups = '#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t1\t1\ncpu\t0\t1\t1\nmemory\t0\t1\t0\npids\t0\t1\t1\n';
  t.same(enabledV1Subsystems(procCgroups), ['cpuset', 'cpu', 'pids'], 'disabled memory skipped');
  t.ok(kernelHasCgroup2('nodev\tcgroup\nnodev\tcgroup2\n'));
  t.notOk(kernelHasCgroup2('nodev\tcgroup\nnodev\tproc\n'));
});

t.test('lo up: reads flags, sets IFF_UP keeping the others, closes the socket', async (t) => {
  const seen: number[] = [];
  const libc = new RecordingLibc({
    ioctlBuf: (_fd, req, buf) => {
      t.equal(buf.toString('utf8', 0, 2), 'lo');
      if (req === SIOCGIFFLAGS)
        buf.writeUInt16LE(0x48, 16); // LOOPBACK|RUNNING, down
      else seen.push(buf.readUInt16LE(16));
      return 0;
    },
  });
  setInterfaceUp(libc, 'lo');
  t.same(seen, [0x48 | IFF_UP]);
  t.same(
    libc.calls.map((c) => c.name),
    ['socket', 'ioctlBuf', 'ioctlBuf', 'close'],
  );
  t.equal(libc.calls[2].args[1], SIOCSIFFLAGS);
  t.throws(() => setInterfaceUp(libc, 'a-very-long-name0'), /longer than 15/);
});

t.test('a failing ioctl still closes the socket', async (t) => {
  const libc = new RecordingLibc().fail('ioctlBuf', 19);
  t.throws(() => setInterfaceUp(libc, 'lo'), /ENODEV/);
  t.equal(libc.calls.at(-1)?.name, 'close');
});

t.test('power off syncs first', async (t) => {
  const libc = new RecordingLibc();
  powerOff(libc);
  t.same(libc.calls, [
    { name: 'sync', args: [] },
    { name: 'reboot', args: [RB_POWER_OFF] },
  ]);
});
