import { spawn } from 'node:child_process';
import fs from 'node:fs';
import t from 'tap';
import { PR_SET_CHILD_SUBREAPER, WNOHANG } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { trackChild } from '../../agent/src/process/children.js';
import { exitCode, listChildren, OrphanReaper } from '../../agent/src/process/reaper.js';

t.test('wait status decoding', async (t) => {
  t.equal(exitCode(3 << 8), 3);
  t.equal(exitCode(9), 137, 'SIGKILL -> 128+9');
});

t.test('skips owned pids, waits for the rest with WNOHANG, reports exit codes', async (t) => {
  const libc = new RecordingLibc({ waitpid: (pid) => (pid === 11 ? { pid: 11, status: 2 << 8 } : { pid: 0, status: 0 }) });
  const reaper = new OrphanReaper({ libc, listChildren: () => [10, 11, 12], isOwned: (p) => p === 10 });
  t.same(reaper.reap(), [{ pid: 11, code: 2 }]);
  t.same(
    libc.calls.map((c) => c.args),
    [
      [11, WNOHANG],
      [12, WNOHANG],
    ],
  );
});

t.test('ECHILD (libuv got there first) is not an error', async (t) => {
  const reaper = new OrphanReaper({ libc: new RecordingLibc().fail('waitpid', 10), listChildren: () => [5], isOwned: () => false });
  t.same(reaper.reap(), []);
});

t.test("real orphans are reaped and Node keeps its own child's exit event", async (t) => {
  const { libc } = await import('../../agent/src/linux/index.js');
  const real = libc();
  // Become a subreaper so the shell's background children are re-parented to this test process.
  real.prctl(PR_SET_CHILD_SUBREAPER, 1);
  const reaped: number[] = [];
  const codes = new Map<number, number>();
  const reaper = new OrphanReaper({
    libc: real,
    onReaped: (c) => {
      reaped.push(c.pid);
      codes.set(c.pid, c.code);
    },
  });
  reaper.start();
  t.teardown(() => reaper.stop());
  // The shell leaves a background child that blocks on fd 3 and exits; that child is now an orphan
  // (re-parented to us) which exits with 3 only when we close our end of the pipe.
  const sh = spawn('sh', ['-c', '(read x <&3; exit 3) & echo $!; exit 0'], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'] });
  trackChild(sh);
  const orphan = Number((await new Promise<Buffer>((r) => sh.stdout!.once('data', r))).toString().trim());
  const code = await new Promise<number | null>((r) => sh.once('exit', (c) => r(c)));
  t.equal(code, 0, "tracked child's exit event fired with its code");
  t.ok(listChildren().includes(orphan), 'the orphan is now our child');
  const gone = new Promise<void>((resolve) => {
    const check = () => (reaped.includes(orphan) ? resolve() : setTimeout(check, 20));
    check();
  });
  (sh.stdio[3] as import('node:stream').Writable).end('\n');
  await gone;
  t.same(codes.get(orphan), 3, 'orphan reaped with its exit code');
  const zombies = listChildren().filter((pid) => {
    try {
      return /^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  });
  t.same(zombies, [], 'no zombie children left');
});
