// The pod's shared IPC and UTS namespaces, pinned by bind mounts so they outlive any one container.
// The agent's main thread enters fresh namespaces just long enough to set the hostname and pin them,
// then returns to its own (only the calling thread moves; nothing here yields to the event loop).
import path from 'node:path';
import type { Libc } from '../linux/libc.js';
import { CLONE_NEWIPC, CLONE_NEWUTS, MNT_DETACH, MS_BIND, O_RDONLY } from '../linux/libc.js';
import { mkdirAll, openPath, removeFile, touch } from '../linux/paths.js';

export interface PinnedNamespaces {
  ipc: string;
  uts: string;
}

export function pinSharedNamespaces(libc: Libc, dir: string, hostname: string): PinnedNamespaces {
  mkdirAll(libc, dir, 0o755);
  const pinned = { ipc: path.join(dir, 'ipc'), uts: path.join(dir, 'uts') };
  for (const f of Object.values(pinned)) touch(libc, f);
  const ipc = openPath(libc, '/proc/self/ns/ipc', O_RDONLY);
  let uts: number;
  try {
    uts = openPath(libc, '/proc/self/ns/uts', O_RDONLY);
  } catch (err) {
    libc.close(ipc);
    throw err;
  }
  const saved = { ipc, uts };
  const done: string[] = [];
  try {
    libc.unshare(CLONE_NEWIPC | CLONE_NEWUTS);
    try {
      if (hostname) libc.sethostname(hostname);
      // /proc/thread-self is this (main) thread: the only one that moved.
      for (const ns of ['ipc', 'uts'] as const) {
        libc.mount(`/proc/thread-self/ns/${ns}`, pinned[ns], null, MS_BIND, null);
        done.push(pinned[ns]);
      }
    } finally {
      libc.setns(saved.ipc, CLONE_NEWIPC);
      libc.setns(saved.uts, CLONE_NEWUTS);
    }
  } catch (err) {
    for (const p of done) libc.umount2(p, MNT_DETACH);
    throw err;
  } finally {
    libc.close(saved.ipc);
    libc.close(saved.uts);
  }
  return pinned;
}

export function unpinSharedNamespaces(libc: Libc, pinned: PinnedNamespaces): void {
  for (const p of [pinned.ipc, pinned.uts]) {
    try {
      libc.umount2(p, MNT_DETACH);
    } catch {
      // Not mounted any more.
    }
    removeFile(libc, p);
  }
}
