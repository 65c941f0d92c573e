// The agent's heap tuning (memory/heap-tuning.ts) has its effect: in a fresh node, after the same
// burst of short-lived allocations, the young generation stays at its first size with the tuning
// and grows without it. Run in child processes: V8 flags cannot be unset once set.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';

const tuningModule = path.resolve(__dirname, '..', '..', 'agent', 'src', 'memory', 'heap-tuning.js');
const script = `
const { tuneHeap } = require(${JSON.stringify(tuningModule)});
const log = { debug() {}, info() {}, warn() {}, error() {} };
tuneHeap(log, { KATA_AGENT_HEAP_TUNING: process.argv[1] });
let keep = [];
for (let i = 0; i < 2e6; i++) { keep.push({ a: i, b: 'x' + i }); if (keep.length > 2000) keep = []; }
const ns = require('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
console.log(ns.space_size);
`;

function newSpaceAfterBurst(tuning: '0' | '1'): number {
  const r = spawnSync(process.execPath, ['-e', script, tuning], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(r.stdout.trim());
}

t.test('with the tuning the new space does not grow through a burst; without it, it does', async (t) => {
  const tuned = newSpaceAfterBurst('1');
  const plain = newSpaceAfterBurst('0');
  t.ok(tuned <= 4 * 1024 * 1024, `tuned: new space ${(tuned / 1048576).toFixed(1)} MiB`);
  t.ok(plain > 2 * tuned, `untuned: new space ${(plain / 1048576).toFixed(1)} MiB, more than twice the tuned one`);
});
