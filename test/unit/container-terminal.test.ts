// The container-init helper's terminal sequence, on the recording libc: which calls, in which order,
// and that no fd of the pty stays with the helper whatever fails.
import t from 'tap';
import { takeContainerTerminal } from '../../agent/src/container/init/terminal.js';
import { O_CLOEXEC, O_NOCTTY, O_RDWR, TIOCGPTPEER } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';

const CHANNEL = 6;
const MASTER = 100;
const SLAVE = 101;
const ENODEV = 19;
const EPIPE = 32;

function libcWithPty(): RecordingLibc {
  return new RecordingLibc({ ioctlInt: (fd, req) => (fd === MASTER && req === TIOCGPTPEER ? SLAVE : 0) });
}

const calls = (l: RecordingLibc) => l.calls.map((c) => [c.name, ...c.args.map((a) => (a instanceof Uint8Array ? [...a] : a))]);

t.test('opens /dev/ptmx, unlocks it, takes the slave from the master, makes it 0-2, sends the master, keeps nothing', async (t) => {
  const libc = libcWithPty();
  takeContainerTerminal(libc, CHANNEL);
  const flags = O_RDWR | O_NOCTTY | O_CLOEXEC;
  t.same(calls(libc), [
    ['posixOpenpt', flags],
    ['unlockpt', MASTER],
    ['ioctlInt', MASTER, TIOCGPTPEER, flags],
    ['dup3', SLAVE, 0, 0],
    ['dup3', SLAVE, 1, 0],
    ['dup3', SLAVE, 2, 0],
    ['sendFd', CHANNEL, MASTER, [1]],
    ['close', SLAVE],
    ['close', MASTER],
  ]);
});

t.test('no devpts behind /dev/ptmx: the error says what the container lacks, and nothing is left open', async (t) => {
  const libc = libcWithPty().fail('posixOpenpt', ENODEV);
  t.throws(() => takeContainerTerminal(libc, CHANNEL), /container's \/dev\/ptmx \(a devpts at \/dev\/pts\): posix_?[oO]penpt\(.*\): ENODEV/);
  t.same(
    libc.calls.filter((c) => c.name === 'close'),
    [],
  );
  t.notOk(
    libc.calls.some((c) => c.name === 'sendFd'),
    'nothing sent',
  );
});

t.test('a master that cannot be unlocked is closed', async (t) => {
  const libc = libcWithPty().fail('unlockpt', 25 /* ENOTTY */);
  t.throws(() => takeContainerTerminal(libc, CHANNEL), /ENOTTY/);
  t.same(
    libc.calls.filter((c) => c.name === 'close').map((c) => c.args[0]),
    [MASTER],
  );
});

t.test('the agent gone before the master is sent: both ends are closed, the error stands', async (t) => {
  const libc = libcWithPty().fail('sendFd', EPIPE);
  t.throws(() => takeContainerTerminal(libc, CHANNEL), /sendFd.*EPIPE/);
  t.same(
    libc.calls.filter((c) => c.name === 'close').map((c) => c.args[0]),
    [SLAVE, MASTER],
  );
});
