// Container-init helpers started ahead of need, each already PID 1 of a fresh pid namespace with
// node and its modules loaded, waiting for a plan. Node's start-up (~40 ms here) is most of what a
// CreateContainer costs; taking a waiting helper moves it off the request's path. A taken helper
// gets its stdio through the plan (StdioSource). Only for containers that get a new pid namespace.
import type { Libc } from '../linux/libc.js';
import { Helper } from './helper.js';

export class HelperPool {
  private readonly idle: Helper[] = [];
  private closed = false;
  private refillScheduled = false;
  private started = false;

  constructor(
    private readonly libc: Libc,
    private readonly size: number,
  ) {}

  /** Begins filling; only after preparePidNamespaces() (the spawns switch pid namespaces). */
  start(): void {
    this.started = true;
    this.scheduleRefill();
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
    this.scheduleRefill();
    return h;
  }

  private scheduleRefill(): void {
    if (!this.started || this.refillScheduled || this.closed || this.size <= 0) return;
    this.refillScheduled = true;
    // Not inside the caller's request: spawning forks node, which takes a few ms of this thread.
    setImmediate(() => {
      this.refillScheduled = false;
      while (!this.closed && this.idle.length < this.size) {
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
    const all = this.idle.splice(0);
    for (const h of all) h.child.kill('SIGKILL');
    await Promise.all(all.map((h) => h.exited));
  }
}
