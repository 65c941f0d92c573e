// Creating and removing a group's directory chain below the agent's own group, shared by both drivers.
import path from 'node:path';
import { CgroupFileError, type CgroupFiles } from './files.js';
import { waitUntil } from './wait.js';

/**
 * mkdir of each missing level of `relPath` below `base`, calling `prepare(dir)` on every level this
 * call created (v1 cpuset must be filled before a level can take tasks or children).
 * Returns the created directories, outermost first. On failure removes what it created.
 */
export function makeGroupDirs(files: CgroupFiles, base: string, relPath: string, prepare?: (dir: string, parent: string) => void): string[] {
  const created: string[] = [];
  let dir = base;
  try {
    for (const seg of relPath.split('/')) {
      const parent = dir;
      dir = path.join(dir, seg);
      if (files.exists(dir)) continue;
      try {
        files.fs.mkdir(dir);
      } catch (err) {
        // A sibling container may have created the shared parent level a moment ago.
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw new CgroupFileError('mkdir', dir, err);
      }
      created.push(dir);
      prepare?.(dir, parent);
    }
  } catch (err) {
    removeCreated(files, created);
    throw err;
  }
  return created;
}

/** Best-effort removal of shared parent levels: one still holding another container's group stays. */
export function removeCreated(files: CgroupFiles, created: string[]): void {
  for (const dir of [...created].reverse()) {
    try {
      files.fs.rmdir(dir);
    } catch {
      // EBUSY/ENOTEMPTY: another group lives below it; ENOENT: already gone.
    }
  }
}

/**
 * Parent levels a manager created for its groups (the "kata" of "kata/<cid>"). Several groups share
 * them, so the one whose removal empties a level removes it, whichever group created it.
 */
export class OwnedParents {
  private readonly dirs = new Set<string>();

  add(dirs: string[]): void {
    for (const d of dirs) this.dirs.add(d);
  }

  /** Removes the owned levels above `leaf` (below `base`) that are now empty, deepest first. */
  prune(files: CgroupFiles, leaf: string, base: string): void {
    const below = (dir: string) => {
      const rel = path.relative(base, dir);
      return rel !== '' && !rel.startsWith('..');
    };
    for (let dir = path.dirname(leaf); below(dir) && this.dirs.has(dir); dir = path.dirname(dir)) {
      try {
        files.fs.rmdir(dir);
      } catch (err) {
        // EBUSY: another group still lives below it.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return;
      }
      this.dirs.delete(dir);
    }
  }
}

/**
 * Removes a group's leaf directories. The kernel refuses rmdir (EBUSY) while exiting tasks are still
 * being released, so leaves are retried briefly (one deadline for all of them).
 */
export async function removeGroupDirs(files: CgroupFiles, leaves: string[]): Promise<void> {
  const pending = new Set(leaves);
  const errors = new Map<string, unknown>();
  const attempt = () => {
    for (const leaf of pending) {
      try {
        files.fs.rmdir(leaf);
        pending.delete(leaf);
        errors.delete(leaf);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') pending.delete(leaf);
        else errors.set(leaf, err);
        if (code !== 'ENOENT' && code !== 'EBUSY') pending.delete(leaf);
      }
    }
    return pending.size === 0;
  };
  try {
    await waitUntil(attempt, 'rmdir of cgroup directories', 2000);
  } catch {
    // Reported below with the errno of the last attempt.
  }
  const [leaf, err] = [...errors][0] ?? [];
  if (leaf !== undefined) throw new CgroupFileError('rmdir', leaf, err);
}
