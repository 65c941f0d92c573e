// Container-init helpers started ahead of need, each already PID 1 of a fresh pid namespace with
// node and its modules loaded, waiting for a plan. Node's start-up (~40 ms here) is most of what a
// CreateContainer costs; taking a waiting helper moves it off the request's path. A taken helper
// gets its stdio through the plan (StdioSource). Only for containers that get a new pid namespace.
//
// A waiting helper is a whole node process (~6 MB RssAnon), paid for in the VM's memory for as long
// as it waits. Containers are created in bursts (a pod: CreateSandbox, then its containers), so the
// pool fills when a burst starts (start(), warm() at CreateSandbox, a take()) and is emptied once no
// container was created for `idleMs`. A CreateContainer after that pays a fresh node start, and the
// pool fills again for the rest of its burst.
import type { Libc } from '../linux/libc.js';
import { Helper } from './helper.js';

export class HelperPool {
  private readonly idle: Helper[] = [];
  private closed = false;
  private refillScheduled = false;
  private started = false;
  /** Emptied for want of use: no refill until the next take() or warm(). */
  private retired = false;
  private retireTimer: NodeJS.Timeout | undefined;
  /** Helpers killed for want of use so far. */
  retiredHelpers = 0;

  constructor(
    private readonly libc: Libc,
    private readonly size: number,
    /** How long the pool keeps helpers no CreateContainer took; 0 = for good. */
    private readonly idleMs = 0,
  ) {}

  /** Begins filling; only after preparePidNamespaces() (the spawns switch pid namespaces). */
  start(): void {
    this.started = true;
    this.scheduleRefill();
    this.armRetire();
  }

  /** Containers are coming (CreateSandbox): fill the pool again if it was emptied. */
  warm(): void {
    this.retired = false;
    this.scheduleRefill();
    this.armRetire();
  }

  /** Pids of the helpers waiting now. */
  get idlePids(): number[] {
    return this.idle.map((h) => h.pid);
  }

  /**
   * A waiting helper, or undefined (pool empty or disabled); the pool refills in the background.
   * A helper killed a moment ago can still look alive here (its exit is seen on a later tick): the
   * caller retries in a fresh helper when the taken one dies before it is ready.
   */
  take(): Helper | undefined {
    let h: Helper | undefined;
    while ((h = this.idle.shift()) && !h.alive);
    this.retired = false;
    this.scheduleRefill();
    this.armRetire();
    return h;
  }

  private armRetire(): void {
    if (!this.started || this.closed || this.idleMs <= 0) return;
    clearTimeout(this.retireTimer);
    this.retireTimer = setTimeout(() => this.retire(), this.idleMs);
    // Never what keeps the agent alive.
    this.retireTimer.unref();
  }

  private retire(): void {
    this.retireTimer = undefined;
    if (this.closed) return;
    this.retired = true;
    // Out of `idle` first: take() must not hand out one that is dying, and their exit handlers
    // refill only for helpers still in it.
    for (const h of this.idle.splice(0)) {
      h.child.kill('SIGKILL');
      this.retiredHelpers++;
    }
  }

  private scheduleRefill(): void {
    if (!this.started || this.retired || this.refillScheduled || this.closed || this.size <= 0) return;
    this.refillScheduled = true;
    // Not inside the caller's request: spawning forks node, which takes a few ms of this thread.
    setImmediate(() => {
      this.refillScheduled = false;
      while (!this.closed && !this.retired && this.idle.length < this.size) {
        let h: Helper;
        try {
          h = Helper.spawn(this.libc, { kind: 'new' }, null);
        } catch {
          return; // e.g. EAGAIN under a pids limit: requests spawn their own helper then.
        }
        this.idle.push(h);
        // An idle helper killed from outside (OOM killer, an admin) is replaced, not kept as a corpse.
        void h.exited.then(() => {
          const i = this.idle.indexOf(h);
          if (i < 0) return;
          this.idle.splice(i, 1);
          this.scheduleRefill();
        });
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retireTimer);
    const all = this.idle.splice(0);
    for (const h of all) h.child.kill('SIGKILL');
    await Promise.all(all.map((h) => h.exited));
  }
}
