// The idle reclaimer (memory/idle-reclaim.ts) with scripted timers and memory: when it runs, when it
// does not, and what it runs. The last test runs the real compacting GC and malloc_trim in a child.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { IdleReclaimer, defaultMinGrowthBytes, defaultQuietMs } from '../../agent/src/memory/idle-reclaim.js';
import { createLogger } from '../../agent/src/log/logger.js';
import type { CallInfo } from '../../agent/src/rpc/call.js';

const MB = 1 << 20;

function rig(opts: { failGc?: boolean } = {}) {
  let clock = 0;
  let nextId = 1;
  const timers = new Map<number, { fn: () => void; at: number }>();
  const did: string[] = [];
  let rss = 10 * MB;
  const r = new IdleReclaimer({
    gc: () => {
      did.push('gc');
      if (opts.failGc) throw new Error('gc went wrong');
      rss -= 3 * MB;
    },
    trim: () => {
      did.push('trim');
      return true;
    },
    rss: () => rss,
    log: createLogger('error'),
    setTimer: (fn, ms) => {
      const id = nextId++;
      timers.set(id, { fn, at: clock + ms });
      return id;
    },
    clearTimer: (h) => void timers.delete(h as number),
    now: () => clock,
  });
  /** Moves the clock on, firing what falls due in order. */
  const advance = (ms: number) => {
    const end = clock + ms;
    for (;;) {
      const due = [...timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      timers.delete(due[0]);
      clock = due[1].at;
      due[1].fn();
    }
    clock = end;
  };
  return { r, did, advance, grow: (b: number) => (rss += b), pending: () => timers.size };
}

t.test('runs one GC and one trim once no call started or ended for the quiet period', async (t) => {
  const { r, did, advance } = rig();
  r.activity();
  advance(defaultQuietMs - 1);
  t.same(did, [], 'not before the quiet period is over');
  r.activity();
  advance(defaultQuietMs - 1);
  t.same(did, [], 'activity starts the period again');
  advance(1);
  t.same(did, ['gc', 'trim']);
  advance(10 * defaultQuietMs);
  t.same(did, ['gc', 'trim'], 'once per quiet period, not on a timer');
  t.equal(r.stats.runs, 1);
  t.equal(r.stats.lastFreedBytes, 3 * MB, 'what it gave back, read once V8 released its pages');
});

t.test('skips the GC when the process has not grown since the last reclaim', async (t) => {
  const { r, did, advance, grow } = rig();
  r.activity();
  advance(defaultQuietMs + 1000);
  t.same(did, ['gc', 'trim']);
  grow(defaultMinGrowthBytes - 1);
  r.activity();
  advance(defaultQuietMs);
  t.same(did, ['gc', 'trim'], 'a stats scrape that left nothing behind costs no GC');
  t.equal(r.stats.skipped, 1);
  grow(2);
  r.activity();
  advance(defaultQuietMs);
  t.same(did, ['gc', 'trim', 'gc', 'trim'], 'grown by the threshold: reclaimed again');
});

t.test('a call that stays open is not activity; its start and end are', async (t) => {
  const { r, did, advance } = rig();
  let finish!: () => void;
  const open = r.interceptor({} as CallInfo, () => new Promise<Uint8Array>((res) => (finish = () => res(new Uint8Array(0)))));
  advance(defaultQuietMs);
  t.same(did, ['gc', 'trim'], 'a ReadStdout waiting for output does not keep the agent busy');
  finish();
  t.same(await open, new Uint8Array(0), 'the answer passes through');
  advance(defaultQuietMs);
  t.equal(r.stats.runs + r.stats.skipped, 2, 'its end started a new quiet period');
  const failed = r.interceptor({} as CallInfo, () => Promise.reject(new Error('handler failed')));
  await t.rejects(failed, /handler failed/, 'a failure passes through unchanged');
});

t.test('a failing reclaim is logged and not tried again; stop() cancels what is pending', async (t) => {
  const { r, did, advance } = rig({ failGc: true });
  r.activity();
  advance(defaultQuietMs);
  t.same(did, ['gc']);
  r.activity();
  advance(10 * defaultQuietMs);
  t.same(did, ['gc'], 'not tried again');
  const other = rig();
  other.r.activity();
  other.r.stop();
  t.equal(other.pending(), 0, 'no timer left');
  other.r.activity();
  t.equal(other.pending(), 0, 'nothing scheduled after stop');
});

t.test('the real reclaim: a compacting GC and malloc_trim give a grown heap back', async (t) => {
  const mod = path.resolve(__dirname, '..', '..', 'agent', 'src', 'memory', 'idle-reclaim.js');
  const libcMod = path.resolve(__dirname, '..', '..', 'agent', 'src', 'linux', 'index.js');
  const script = `
const { idleReclaimer, rssAnon } = require(${JSON.stringify(mod)});
const { libc } = require(${JSON.stringify(libcMod)});
const log = { debug() {}, info() {}, warn(o, m) { console.error(m, o); }, error() {} };
const r = idleReclaimer(log, () => libc().mallocTrim(0), {});
let keep = [];
for (let i = 0; i < 3e5; i++) keep.push({ i, s: 'x'.repeat(20) + i });
keep = null;
const grown = rssAnon();
r.activity();
setTimeout(() => console.log(JSON.stringify({ grown, after: rssAnon(), runs: r.stats.runs, pause: r.stats.lastPauseMs })), 2500);
`;
  // The second run cannot compile %CollectGarbage (no code from strings): the --expose-gc fallback.
  for (const flags of [[], ['--disallow-code-generation-from-strings']]) {
    const out = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8' });
    t.equal(out.status, 0, out.stderr);
    const m = JSON.parse(out.stdout) as { grown: number; after: number; runs: number; pause: number };
    t.equal(m.runs, 1, `${flags.join(' ') || 'plain node'}: one reclaim`);
    t.ok(
      m.after < m.grown - 10 * MB,
      `${flags.join(' ') || 'plain node'}: RssAnon ${(m.grown / MB).toFixed(1)} → ${(m.after / MB).toFixed(1)} MB, pause ${m.pause.toFixed(1)} ms`,
    );
  }
});
