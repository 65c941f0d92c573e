// The pid-namespace switch around a spawn and the pod's pinned IPC/UTS namespaces, on RecordingLibc:
// the order of the kernel effects, and that every fd they open is closed on success and on failure.
import path from 'node:path';
import t from 'tap';
import { SyscallError } from '../../agent/src/linux/errno.js';
import { preparePidNamespaces, spawnInPidNamespace } from '../../agent/src/namespace/pid-namespace.js';
import { pinSharedNamespaces, unpinSharedNamespaces } from '../../agent/src/sandbox/shared-namespaces.js';
import { AT_FDCWD, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWUTS, MNT_DETACH, MS_BIND, O_CLOEXEC, O_CREAT, O_RDONLY, O_WRONLY } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';

const EPERM = 1;
const ENOENT = 2;
const EEXIST = 17;

/** fds opened minus fds closed, from the recorded calls. */
function openFds(libc: RecordingLibc, opened: number[]): number[] {
  const closed = libc.calls.filter((c) => c.name === 'close').map((c) => c.args[0] as number);
  return opened.filter((fd) => !closed.includes(fd));
}

t.test('pid namespace: join opens the target, switches, spawns, switches back, closes the target', async (t) => {
  const own = new RecordingLibc({ openat: () => 7 });
  await preparePidNamespaces(own);
  t.same(own.calls[0], { name: 'openat', args: [AT_FDCWD, '/proc/self/ns/pid', O_RDONLY | O_CLOEXEC, 0] });

  const libc = new RecordingLibc({ openat: () => 31 });
  const order: string[] = [];
  const result = spawnInPidNamespace(libc, { kind: 'join', path: '/proc/55/ns/pid' }, () => {
    order.push(`spawn after ${libc.calls.length} calls`);
    return 'child';
  });
  t.equal(result, 'child');
  t.same(order, ['spawn after 2 calls']);
  t.same(
    libc.calls.map((c) => [c.name, ...c.args]),
    [
      ['openat', AT_FDCWD, '/proc/55/ns/pid', O_RDONLY | O_CLOEXEC, 0],
      ['setns', 31, CLONE_NEWPID],
      ['setns', 7, CLONE_NEWPID],
      ['close', 31],
    ],
  );
});

t.test('pid namespace: a new one is unshared and the agent returns to its own even when the spawn throws', async (t) => {
  const libc = new RecordingLibc();
  t.throws(
    () =>
      spawnInPidNamespace(libc, { kind: 'new' }, () => {
        throw new Error('spawn failed');
      }),
    /spawn failed/,
  );
  t.same(
    libc.calls.map((c) => [c.name, ...c.args]),
    [
      ['unshare', CLONE_NEWPID],
      ['setns', 7, CLONE_NEWPID],
    ],
  );
});

t.test('pid namespace: a refused setns closes the target and never spawns', async (t) => {
  const libc = new RecordingLibc({ openat: () => 40 }).fail('setns', EPERM);
  let spawned = false;
  t.throws(() => spawnInPidNamespace(libc, { kind: 'join', path: '/proc/9/ns/pid' }, () => (spawned = true)), { code: 'EPERM' });
  t.notOk(spawned);
  t.same(openFds(libc, [40]), []);
});

t.test("pid namespace 'agent': no kernel effect at all", async (t) => {
  const libc = new RecordingLibc();
  t.equal(
    spawnInPidNamespace(libc, { kind: 'agent' }, () => 1),
    1,
  );
  t.same(libc.calls, []);
});

t.test('shared namespaces: pin files made, fresh IPC+UTS, hostname, bind-pinned, back to the saved ones, fds closed', async (t) => {
  let fd = 10;
  const libc = new RecordingLibc({ openat: () => fd++ });
  const pinned = pinSharedNamespaces(libc, '/run/sbx/ns', 'pod-a');
  t.same(pinned, { ipc: '/run/sbx/ns/ipc', uts: '/run/sbx/ns/uts' });
  t.same(
    libc.calls.map((c) => [c.name, ...c.args]),
    [
      ['mkdirat', AT_FDCWD, '/run/sbx/ns', 0o755],
      ['openat', AT_FDCWD, '/run/sbx/ns/ipc', O_WRONLY | O_CREAT | O_CLOEXEC, 0o644],
      ['close', 10],
      ['openat', AT_FDCWD, '/run/sbx/ns/uts', O_WRONLY | O_CREAT | O_CLOEXEC, 0o644],
      ['close', 11],
      ['openat', AT_FDCWD, '/proc/self/ns/ipc', O_RDONLY | O_CLOEXEC, 0],
      ['openat', AT_FDCWD, '/proc/self/ns/uts', O_RDONLY | O_CLOEXEC, 0],
      ['unshare', CLONE_NEWIPC | CLONE_NEWUTS],
      ['sethostname', 'pod-a'],
      ['mount', '/proc/thread-self/ns/ipc', '/run/sbx/ns/ipc', null, MS_BIND, null],
      ['mount', '/proc/thread-self/ns/uts', '/run/sbx/ns/uts', null, MS_BIND, null],
      ['setns', 12, CLONE_NEWIPC],
      ['setns', 13, CLONE_NEWUTS],
      ['close', 12],
      ['close', 13],
    ],
  );
});

t.test('shared namespaces: the state dir is made with its parents when they are missing', async (t) => {
  const made = new Set<string>();
  const libc = new RecordingLibc({
    mkdirat: (_d, p) => {
      if (made.has(p)) throw new SyscallError('mkdirat', EEXIST, p);
      if (p !== '/run' && !made.has(path.dirname(p))) throw new SyscallError('mkdirat', ENOENT, p);
      made.add(p);
    },
  });
  pinSharedNamespaces(libc, '/run/a/b', '');
  t.same([...made], ['/run', '/run/a', '/run/a/b']);
  t.notOk(
    libc.calls.some((c) => c.name === 'sethostname'),
    'an empty hostname leaves the one the namespace starts with',
  );
});

t.test('shared namespaces: a failed bind mount undoes the pin made so far and still closes the saved fds', async (t) => {
  let fd = 20;
  let mounts = 0;
  const libc = new RecordingLibc({
    openat: () => fd++,
    mount: () => {
      if (++mounts === 2) throw new SyscallError('mount', EPERM, 'uts');
    },
  });
  t.throws(() => pinSharedNamespaces(libc, '/run/sbx/ns', 'h'), { code: 'EPERM' });
  t.same(
    libc.calls.filter((c) => c.name === 'umount2').map((c) => c.args),
    [['/run/sbx/ns/ipc', MNT_DETACH]],
  );
  t.same(
    libc.calls.filter((c) => c.name === 'setns').map((c) => c.args[1]),
    [CLONE_NEWIPC, CLONE_NEWUTS],
    'the main thread went back to the agent namespaces',
  );
  t.same(openFds(libc, [20, 21, 22, 23]), []);
});

t.test('shared namespaces: unpin detaches and removes both pins; already gone is fine', async (t) => {
  const libc = new RecordingLibc().fail('umount2', 22).fail('unlinkat', ENOENT);
  unpinSharedNamespaces(libc, { ipc: '/s/ipc', uts: '/s/uts' });
  t.same(
    libc.calls.map((c) => [c.name, ...c.args]),
    [
      ['umount2', '/s/ipc', MNT_DETACH],
      ['unlinkat', AT_FDCWD, '/s/ipc', 0],
      ['umount2', '/s/uts', MNT_DETACH],
      ['unlinkat', AT_FDCWD, '/s/uts', 0],
    ],
  );
});
