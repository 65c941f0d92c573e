// "Signal every process of the container" (3.x SignalProcess with exec_id "" and SIGKILL; 1.x
// exec_id ""): listing the group and signalling each pid races with forks, so the group is frozen
// first: no task runs, none can fork, and the list is complete. Signals sent to frozen tasks are
// delivered when they are thawed, which happens even if the container was paused before.
import type { Cgroup } from './cgroup.js';

export async function signalAll(cg: Cgroup, signal: NodeJS.Signals | number, kill: (pid: number, signal: NodeJS.Signals | number) => void = process.kill): Promise<number[]> {
  await cg.freeze();
  const pids = cg.pids();
  try {
    for (const pid of pids) {
      try {
        kill(pid, signal);
      } catch (err) {
        // Gone since the listing (it was exiting when frozen): nothing to signal.
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
  } finally {
    await cg.thaw();
  }
  return pids;
}
