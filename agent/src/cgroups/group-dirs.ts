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
 * Removes a group's leaf directories, then the parent levels it created if they are empty. The kernel
 * refuses rmdir (EBUSY) while exiting tasks are still being released, so the leaf is retried briefly.
 */
export async function removeGroupDirs(files: CgroupFiles, leaves: string[], createdParents: string[]): Promise<void> {
  let firstError: Error | undefined;
  for (const leaf of leaves) {
    let lastErr: unknown;
    const gone = () => {
      try {
        files.fs.rmdir(leaf);
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return true;
        lastErr = err;
        return code !== 'EBUSY';
      }
    };
    try {
      await waitUntil(gone, `rmdir ${leaf}`, 2000);
    } catch {
      // Reported below with the errno of the last attempt.
    }
    if (lastErr && files.exists(leaf)) firstError ??= new CgroupFileError('rmdir', leaf, lastErr);
  }
  removeCreated(files, createdParents);
  if (firstError) throw firstError;
}
