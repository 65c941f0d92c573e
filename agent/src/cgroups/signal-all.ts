// "Signal every process of the container" (3.x SignalProcess with exec_id "" and SIGKILL; 1.x
// exec_id ""): listing the group and signalling each pid races with forks, so the group is frozen
// first: no task runs, none can fork, and the list is complete. Signals sent to frozen tasks are
// delivered when they are thawed, which happens even if the container was paused before.
// For SIGKILL, cgroup v2's cgroup.kill does the same in one atomic write.
import type { Cgroup } from './cgroup.js';

/** A group that can SIGKILL all its processes at once (the v2 driver, on kernels with cgroup.kill). */
interface AtomicKill {
  killAll(): boolean;
}
const hasAtomicKill = (cg: Cgroup): cg is Cgroup & AtomicKill => typeof (cg as Partial<AtomicKill>).killAll === 'function';

/** Signals every process of the group; returns the pids it found there. */
export async function signalAll(
  cg: Cgroup,
  signal: NodeJS.Signals | number,
  kill: (pid: number, signal: NodeJS.Signals | number) => void = process.kill,
): Promise<number[]> {
  if ((signal === 'SIGKILL' || signal === 9) && hasAtomicKill(cg)) {
    const pids = cg.pids();
    if (cg.killAll()) return pids;
  }
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
