// Exec helpers started ahead of need, one per container at most, each already inside that container's
// pid namespace with node loaded and waiting for a plan. An exec helper must be spawned after the agent
// switched to the container's pid namespace (a process cannot change its own), so the create pool
// cannot serve execs; without this every ExecProcess pays a fresh node start (~40 ms here).
//
// When: a container's first exec starts its warm helper, not StartContainer. Containers that are
// never exec'd then cost nothing, and the ones that are (kubelet exec probes, `kubectl exec` loops)
// repeat: from the second exec on they take a waiting helper. The cost is bounded by `max` (an idle
// helper is several MB of RssAnon): at the cap, a container gets no warm helper and its execs spawn
// their own, as before. A container's helper is killed when its init exits and at RemoveContainer,
// and once it has waited `idleMs` without an exec taking it: an exec probe every 10 s keeps its
// container's helper, a container exec'd once an hour does not hold a node process for it.
import type { Libc } from '../linux/libc.js';
import { Helper } from './helper.js';

export interface WarmExecStats {
  /** Warm helpers spawned so far. */
  spawned: number;
  /** Execs served by a warm helper. */
  taken: number;
  /** Warm helpers not spawned because `max` were already waiting. */
  refusedAtCap: number;
  /** Warm helpers killed after waiting idleMs untaken. */
  retired: number;
}

export class WarmExecHelpers {
  private readonly warm = new Map<string, Helper>();
  private closed = false;
  readonly stats: WarmExecStats = { spawned: 0, taken: 0, refusedAtCap: 0, retired: 0 };

  constructor(
    private readonly libc: Libc,
    readonly max: number,
    /** How long a helper may wait untaken before it is killed; 0 = until its container goes. */
    private readonly idleMs = 0,
  ) {}

  /** Helpers waiting now (container ids). */
  get waiting(): string[] {
    return [...this.warm.keys()];
  }

  pidOf(key: string): number | undefined {
    return this.warm.get(key)?.pid;
  }

  /** The container's waiting helper, if it is still alive; the caller owns it from now on. */
  take(key: string): Helper | undefined {
    const h = this.warm.get(key);
    if (!h) return undefined;
    this.warm.delete(key);
    if (!h.alive) return undefined;
    this.stats.taken++;
    return h;
  }

  /**
   * Starts a waiting helper for `key` in the pid namespace at `pidnsPath`, soon but not inside the
   * caller's request (forking node takes a few ms of this thread). `wanted` is asked again right
   * before the spawn: the container may have stopped or gone meanwhile.
   */
  prepare(key: string, pidnsPath: string, wanted: () => boolean): void {
    if (this.max <= 0) return;
    setImmediate(() => {
      if (this.closed || this.warm.has(key) || !wanted()) return;
      if (this.warm.size >= this.max) {
        this.stats.refusedAtCap++;
        return;
      }
      let h: Helper;
      try {
        h = Helper.spawn(this.libc, { kind: 'join', path: pidnsPath }, null);
      } catch {
        return; // e.g. the init just exited, or EAGAIN under a pids limit: execs spawn their own helper.
      }
      this.stats.spawned++;
      this.warm.set(key, h);
      const idle =
        this.idleMs > 0
          ? setTimeout(() => {
              if (this.warm.get(key) !== h) return;
              this.stats.retired++;
              void this.discard(key);
            }, this.idleMs).unref()
          : undefined;
      // Killed from inside the container, or the pid namespace's init exited (which kills it too).
      void h.exited.then(() => {
        clearTimeout(idle);
        if (this.warm.get(key) === h) this.warm.delete(key);
      });
    });
  }

  /** Kills the container's waiting helper and waits until it is reaped. */
  async discard(key: string): Promise<void> {
    const h = this.warm.get(key);
    if (!h) return;
    this.warm.delete(key);
    h.child.kill('SIGKILL');
    await h.exited;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.waiting.map((k) => this.discard(k)));
  }
}
