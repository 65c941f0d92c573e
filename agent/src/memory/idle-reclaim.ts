// Memory given back once the agent goes quiet. A guest agent works in bursts (a pod starting, a
// kubectl exec, a stats scrape) and idles in between, and the VM pays for whatever it still holds
// then. V8 keeps the pages a burst grew its heap by until its memory reducer runs, which it starts
// only some 8 s after a full GC and not reliably (bench/memory.bench.ts saw 28 MB stay for 10 s),
// and its collections leave the old space fragmented; glibc keeps the free pages between the
// chunks in use, which V8's and libuv's native allocations leave behind.
//
// So once no call has started or ended for `quietMs`, and the process has grown by `minGrowthBytes`
// since the last reclaim, the agent runs one compacting full GC and then malloc_trim(0). Measured
// (bench/memory.bench.ts): 2 s after 2,000 ttrpc + 2,000 gRPC calls 18.5 MB RssAnon, against 28–32
// MB with the heap tuning alone; after the first AgentService call 13.3 instead of 15 MB. The price
// is one pause of the event loop, ~30 ms here and 214 ms in a VM under TCG, taken only when nothing
// is asked of the agent: a call arriving during it waits for it. Calls that stay open (a ReadStdout
// or GetOOMEvent waiting for data) are not activity: a pod always has some.
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Interceptor } from '../rpc/call.js';
import type { Logger } from '../log/logger.js';

export interface ReclaimDeps {
  /** A full, compacting GC. */
  gc: () => void;
  /** malloc_trim(0); whether glibc released anything. */
  trim: () => boolean;
  /** Resident anonymous bytes of the process now (growth since the last reclaim decides whether to run one). */
  rss: () => number;
  log: Logger;
  quietMs?: number;
  minGrowthBytes?: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  now?: () => number;
}

export const defaultQuietMs = 1000;
export const defaultMinGrowthBytes = 1 << 20;
/** How long after a reclaim its result is read (V8 releases pages in the background). */
const settleMs = 500;

export class IdleReclaimer {
  private timer: unknown;
  private settleTimer: unknown;
  private lastActivity = 0;
  /** RSS right after the last reclaim (0: none yet, so the first quiet period reclaims). */
  private floor = 0;
  private readonly quietMs: number;
  private readonly minGrowth: number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private readonly now: () => number;
  private stopped = false;
  /** Reclaims run so far, and the pauses they took (ms), for the metrics and tests. */
  readonly stats = { runs: 0, skipped: 0, lastPauseMs: 0, lastFreedBytes: 0 };

  constructor(private readonly deps: ReclaimDeps) {
    this.quietMs = deps.quietMs ?? defaultQuietMs;
    this.minGrowth = deps.minGrowthBytes ?? defaultMinGrowthBytes;
    this.setTimer =
      deps.setTimer ??
      ((fn, ms) => {
        const t = setTimeout(fn, ms);
        // Never what keeps the process alive.
        t.unref();
        return t;
      });
    this.clearTimer = deps.clearTimer ?? ((h) => clearTimeout(h as NodeJS.Timeout));
    this.now = deps.now ?? (() => performance.now());
  }

  /**
   * A call started or ended: the quiet period starts again. This runs twice per call, so it only
   * notes the time; the one pending timer looks at it when it fires and waits out the rest.
   */
  activity(): void {
    if (this.stopped) return;
    this.lastActivity = this.now();
    if (this.timer === undefined) this.timer = this.setTimer(() => this.check(), this.quietMs);
  }

  private check(): void {
    this.timer = undefined;
    const quietFor = this.now() - this.lastActivity;
    if (quietFor < this.quietMs) this.timer = this.setTimer(() => this.check(), this.quietMs - quietFor);
    else this.quiet();
  }

  /** Sees every call's start and end (the rpc layer's interceptor seam). */
  readonly interceptor: Interceptor = async (_call, next) => {
    this.activity();
    try {
      return await next();
    } finally {
      this.activity();
    }
  };

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clearTimer(this.timer);
    if (this.settleTimer !== undefined) this.clearTimer(this.settleTimer);
    this.timer = this.settleTimer = undefined;
  }

  private quiet(): void {
    const before = this.deps.rss();
    if (this.floor !== 0 && before - this.floor < this.minGrowth) {
      this.stats.skipped++;
      return;
    }
    const t0 = this.now();
    try {
      this.deps.gc();
      this.deps.trim();
    } catch (err) {
      // Never worth failing over: log it and stop trying.
      this.deps.log.warn({ err: (err as Error).message }, 'idle memory reclaim failed; not tried again');
      this.stop();
      return;
    }
    const pauseMs = this.now() - t0;
    this.stats.runs++;
    this.stats.lastPauseMs = pauseMs;
    // V8 unmaps the freed pages from a background task: what was given back shows a moment later.
    this.floor = before;
    this.settleTimer = this.setTimer(() => {
      this.settleTimer = undefined;
      const after = this.deps.rss();
      this.floor = after;
      this.stats.lastFreedBytes = before - after;
      this.deps.log.debug({ pause_ms: Math.round(pauseMs * 10) / 10, rss_anon_before: before, rss_anon_after: after }, 'idle memory reclaimed');
    }, settleMs);
  }
}

/**
 * A full GC the agent can call, with compaction asked for only for this collection. Node offers one
 * only through --expose-gc, which as a start-up flag was measured to slow the boot. V8's
 * %CollectGarbage, compiled once with natives syntax allowed for that one function, is the same
 * collector and costs ~0.2 MB; where a V8 lacks it, a new context made after setting --expose-gc
 * has `gc` (~0.45 MB: the context stays alive with it).
 */
export function compactingGc(): () => void {
  let gc: () => void;
  try {
    v8.setFlagsFromString('--allow-natives-syntax');
    gc = new Function('%CollectGarbage(null)') as () => void;
  } catch {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  } finally {
    v8.setFlagsFromString('--no-allow-natives-syntax');
  }
  return () => {
    v8.setFlagsFromString('--compact-on-every-full-gc');
    try {
      gc();
    } finally {
      v8.setFlagsFromString('--no-compact-on-every-full-gc');
    }
  };
}

/**
 * RssAnon of /proc/self/status: what the VM pays for. Not process.memoryUsage().rss, which counts
 * file pages too, and so grows when the first reclaim maps libc's binding.
 */
export function rssAnon(): number {
  const m = /^RssAnon:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** The reclaimer the agent runs, unless KATA_AGENT_IDLE_RECLAIM=0 (the benchmarks' baseline). */
export function idleReclaimer(log: Logger, trim: () => boolean, env: NodeJS.ProcessEnv = process.env): IdleReclaimer | undefined {
  if (env.KATA_AGENT_IDLE_RECLAIM === '0') {
    log.debug({}, 'idle memory reclaim off (KATA_AGENT_IDLE_RECLAIM=0)');
    return undefined;
  }
  let gc: (() => void) | undefined;
  // The flags are set on the first reclaim, not at start-up.
  return new IdleReclaimer({ gc: () => (gc ??= compactingGc())(), trim, rss: rssAnon, log });
}
