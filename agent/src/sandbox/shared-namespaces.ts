// The pod's shared IPC and UTS namespaces, pinned by bind mounts so they outlive any one container.
// The agent's main thread enters fresh namespaces just long enough to set the hostname and pin them,
// then returns to its own (only the calling thread moves; nothing here yields to the event loop).
import fs from 'node:fs';
import path from 'node:path';
import type { Libc } from '../linux/libc.js';
import { CLONE_NEWIPC, CLONE_NEWUTS, MNT_DETACH, MS_BIND } from '../linux/libc.js';

export interface PinnedNamespaces {
  ipc: string;
  uts: string;
}

export function pinSharedNamespaces(libc: Libc, dir: string, hostname: string): PinnedNamespaces {
  fs.mkdirSync(dir, { recursive: true });
  const pinned = { ipc: path.join(dir, 'ipc'), uts: path.join(dir, 'uts') };
  for (const f of Object.values(pinned)) fs.closeSync(fs.openSync(f, 'a'));
  const saved = { ipc: fs.openSync('/proc/self/ns/ipc', 'r'), uts: fs.openSync('/proc/self/ns/uts', 'r') };
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
    fs.closeSync(saved.ipc);
    fs.closeSync(saved.uts);
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
    fs.rmSync(p, { force: true });
  }
}
