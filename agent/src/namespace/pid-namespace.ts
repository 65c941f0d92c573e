// Starting a child in another pid namespace from a multi-threaded Node process: switch only the
// main thread's pid_ns_for_children, spawn, switch back, all in one synchronous block. While it is
// switched the kernel refuses new threads, so nothing in here may touch the threadpool or a Worker.
import fs from 'node:fs';
import type { Libc } from '../linux/libc.js';
import { CLONE_NEWPID, O_RDONLY } from '../linux/libc.js';
import { openPath } from '../linux/paths.js';

export type PidNamespaceChoice = { kind: 'new' } | { kind: 'join'; path: string } | { kind: 'agent' };

let ownPidNs: number | undefined;

/** Opens the agent's own pid namespace once, and makes libuv start its threadpool now, not mid-switch. */
export function preparePidNamespaces(libc: Libc): Promise<void> {
  ownPidNs ??= openPath(libc, '/proc/self/ns/pid', O_RDONLY);
  // Any threadpool request starts the pool; this one has no effect of its own.
  return fs.promises.stat('/').then(() => undefined);
}

export function spawnInPidNamespace<T>(libc: Libc, choice: PidNamespaceChoice, spawn: () => T): T {
  if (choice.kind === 'agent') return spawn();
  if (ownPidNs === undefined) throw new Error('preparePidNamespaces() was not called');
  const target = choice.kind === 'join' ? openPath(libc, choice.path, O_RDONLY) : undefined;
  try {
    if (target !== undefined) libc.setns(target, CLONE_NEWPID);
    else libc.unshare(CLONE_NEWPID);
    try {
      return spawn();
    } finally {
      libc.setns(ownPidNs, CLONE_NEWPID);
    }
  } finally {
    if (target !== undefined) libc.close(target);
  }
}
