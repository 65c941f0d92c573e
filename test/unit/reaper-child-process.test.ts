// The agent's wiring of the orphan reaper: every child started through process/spawn.ts is owned, so
// orphans are reaped while child_process keeps every exit code.
import { once } from 'node:events';
import fs from 'node:fs';
import t from 'tap';
import { libc } from '../../agent/src/linux/index.js';
import { PR_SET_CHILD_SUBREAPER } from '../../agent/src/linux/libc.js';
import { OrphanReaper } from '../../agent/src/process/reaper.js';
import { execFileOwned, spawnOwned } from '../../agent/src/process/spawn.js';

function zombiesOf(pid: number): string[] {
  const out: string[] = [];
  for (const p of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[0] === 'Z' && Number(f[1]) === pid) out.push(p);
    } catch {
      // Gone while we looked.
    }
  }
  return out;
}

t.test('orphans are reaped; child_process keeps its exit codes', async (t) => {
  libc().prctl(PR_SET_CHILD_SUBREAPER, 1);
  const reaped: number[] = [];
  const reaper = new OrphanReaper({ libc: libc(), onReaped: (c) => reaped.push(c.pid) });
  reaper.start();
  t.teardown(() => reaper.stop());
  // Each shell leaves an orphan that re-parents to us (a child subreaper) and exits later.
  const shells = Array.from({ length: 10 }, (_, i) => {
    const c = spawnOwned('sh', ['-c', `sleep 0.2 & exit ${i + 1}`], { stdio: 'ignore' });
    return once(c, 'exit').then(([code]) => code as number);
  });
  t.same(await Promise.all(shells), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "every child_process 'exit' event kept its code");
  const viaExecFile = await new Promise<number>((resolve) =>
    execFileOwned('sh', ['-c', 'exit 42'], {}, (err) => resolve((err as { code?: number } | null)?.code ?? 0)),
  );
  t.equal(viaExecFile, 42);
  while (reaped.length < 10) await new Promise((r) => setTimeout(r, 20));
  t.equal(reaped.length, 10, 'ten orphans reaped');
  t.same(zombiesOf(process.pid), [], 'no zombies');
});
