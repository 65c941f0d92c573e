// Pids of children that Node itself waits for (child_process, node-pty). The PID-1 reaper must never
// waitpid() them or their 'exit' events would never fire (docs/facts/platform.md: waitpid(-1)
// steals libuv's children). Whoever spawns registers the child here right after spawn() returns;
// the reaper runs from a signal callback on the event loop, so it cannot see the pid earlier.
const owned = new Set<number>();

export interface ChildLike {
  pid?: number;
  once(event: 'exit', listener: (...args: unknown[]) => void): unknown;
}

/** Marks `child` as owned by Node until its 'exit' event (libuv has reaped it by then). */
export function trackChild(child: ChildLike): void {
  const pid = child.pid;
  if (pid === undefined) return;
  owned.add(pid);
  child.once('exit', () => owned.delete(pid));
}

/** For spawners that only have a pid (node-pty); call untrackPid from their exit callback. */
export function trackPid(pid: number): void {
  owned.add(pid);
}

export function untrackPid(pid: number): void {
  owned.delete(pid);
}

export function isOwnedChild(pid: number): boolean {
  return owned.has(pid);
}
