// RemoveStaleVirtiofsShareMounts: 3.x hosts send it after every container removal. With virtio-fs the
// guest kernel keeps an inode (and virtiofsd an open fd on the host) for each file it has looked up;
// once the host has removed a container's share, a lookup of each mount below the shared directory
// makes the kernel find it gone and drop its inodes, so virtiofsd can close the host's fds. A mount
// point that fails to stat is exactly such a stale one: that is expected, not an error.
import path from 'node:path';
import type { Logger } from '../log/logger.js';
import type { AgentHandlers } from '../rpc/service.js';
import { realStorageFs } from './storage-fs.js';

/** The guest path the host shares container rootfs and files under, below the state root. */
export function sharedContainersDir(stateRoot: string): string {
  return path.join(stateRoot, 'shared', 'containers');
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
export function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points (field 5 of /proc/self/mountinfo) at or below `dir`. */
export function mountPointsBelow(mountinfo: string, dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : dir + '/';
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mp = unescapeMountPath(field);
    if (mp === dir || mp.startsWith(prefix)) out.push(mp);
  }
  return out;
}

export interface StaleShareDeps {
  sharedDir: string;
  log: Logger;
  readMountinfo?: () => string;
  /** Looks a path up; throws when it is gone (the stale case). */
  lookup?: (p: string) => void;
}

export function staleShareMountHandlers(deps: StaleShareDeps): AgentHandlers {
  const readMountinfo = deps.readMountinfo ?? (() => realStorageFs.readText('/proc/self/mountinfo'));
  const lookup = deps.lookup ?? ((p: string) => void realStorageFs.stat(p));
  return {
    removeStaleVirtiofsShareMounts() {
      let stale = 0;
      const mounts = mountPointsBelow(readMountinfo(), deps.sharedDir);
      for (const mp of mounts) {
        try {
          lookup(mp);
        } catch (err) {
          stale++;
          deps.log.debug({ path: mp, err: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, 'stale share mount');
        }
      }
      deps.log.debug({ mounts: mounts.length, stale }, 'share mounts looked up');
      return {};
    },
  };
}
