// What every driver's group does the same way, whatever files its version keeps: follow its OOM
// watches, and refuse removal while processes remain.
import { failedPrecondition } from '../errors.js';
import { waitUntil } from './wait.js';

/** `pids()`, or none once the group's directory is gone (a repeated destroy). */
export function pidsIfPresent(pids: () => number[]): number[] {
  try {
    return pids();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** A group's OOM watches: each can be stopped on its own, and all stop when the group goes. */
export class OomWatches {
  private readonly stops = new Set<() => void>();

  /** Registers a started watch; the returned function stops it and forgets it. */
  add(stop: () => void): () => void {
    const remove = () => {
      this.stops.delete(remove);
      stop();
    };
    this.stops.add(remove);
    return remove;
  }

  stopAll(): void {
    for (const stop of [...this.stops]) stop();
  }
}

/**
 * Callers kill and wait for the processes they know; others killed with them (a shared pid
 * namespace's orphans) may still be exiting, so give them a moment before refusing.
 */
export async function awaitEmpty(relPath: string, pids: () => number[], graceMs: number): Promise<void> {
  await waitUntil(() => pidsIfPresent(pids).length === 0, `emptying ${relPath}`, graceMs).catch(() => undefined);
  const left = pidsIfPresent(pids);
  if (left.length > 0) throw failedPrecondition(`cgroup ${relPath} still has processes: ${left.join(' ')}`);
}
