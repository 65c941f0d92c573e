// Reaps orphans re-parented to the agent (it is a child subreaper, and PID 1 in the guest) without
// stealing the exits child_process waits for: waitpid(-1) would take libuv's children too, so on
// SIGCHLD we list our children from /proc and wait only for those child_process did not start.
import child_process from 'node:child_process';
import fs from 'node:fs';
import type { Libc } from '../linux/libc.js';
import { PR_SET_CHILD_SUBREAPER, WNOHANG } from '../linux/libc.js';

const owned = new Set<number>();
let patched = false;

/** Records every child_process child while it lives, whoever spawns it. */
function trackChildProcesses(): void {
  if (patched) return;
  patched = true;
  const proto = child_process.ChildProcess.prototype as unknown as { spawn: (...a: unknown[]) => unknown };
  const original = proto.spawn;
  proto.spawn = function (this: child_process.ChildProcess, ...args: unknown[]) {
    const r = original.apply(this, args);
    const pid = this.pid;
    if (pid !== undefined) {
      owned.add(pid);
      this.once('exit', () => owned.delete(pid));
    }
    return r;
  };
}

function childrenOfSelf(): number[] {
  const pids: number[] = [];
  let tasks: string[];
  try {
    tasks = fs.readdirSync('/proc/self/task');
  } catch {
    return pids;
  }
  for (const t of tasks) {
    try {
      for (const p of fs.readFileSync(`/proc/self/task/${t}/children`, 'utf8').split(' ')) if (p.trim()) pids.push(Number(p));
    } catch {
      // The thread ended while we listed it.
    }
  }
  return pids;
}

export interface Reaper {
  /** Orphans reaped so far. */
  readonly reaped: number;
  stop(): void;
}

export function startReaper(libc: Libc, onReap?: (pid: number, status: number) => void): Reaper {
  trackChildProcesses();
  libc.prctl(PR_SET_CHILD_SUBREAPER, 1);
  const state = { reaped: 0 };
  const reap = () => {
    for (const pid of childrenOfSelf()) {
      if (owned.has(pid)) continue;
      try {
        const r = libc.waitpid(pid, WNOHANG);
        if (r.pid === pid) {
          state.reaped++;
          onReap?.(pid, r.status);
        }
      } catch {
        // ECHILD: someone else reaped it first.
      }
    }
  };
  process.on('SIGCHLD', reap);
  return {
    get reaped() {
      return state.reaped;
    },
    stop() {
      process.off('SIGCHLD', reap);
    },
  };
}

export function isOwnedChild(pid: number): boolean {
  return owned.has(pid);
}

/**
 * For children started outside child_process (node-pty forks on its own and waits in its own
 * thread): register them while they live, or the reaper would take their exit status.
 */
export function ownChild(pid: number): () => void {
  owned.add(pid);
  return () => owned.delete(pid);
}
