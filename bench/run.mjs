#!/usr/bin/env node
// `npm run bench [-- --quick] [-- --only NAME]`: builds, runs every bench/*.bench.ts module, prints one
// markdown table (medians and ratios against the peer measured in the same run) and writes the same
// data to bench/results/<date>.json and bench/results/latest.md.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;

const build = spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(1);

const stat = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
  return { n: s.length, min: s[0], median: q(0.5), p99: q(0.99), max: s[s.length - 1] };
};
const fmt = (x) => (x === undefined || Number.isNaN(x) ? '–' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

const modules = fs
  .readdirSync('dist/bench')
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => !only || f.includes(only))
  .sort();
const results = [];
const started = Date.now();
for (const file of modules) {
  const name = file.replace(/\.bench\.js$/, '');
  process.stderr.write(`\n== ${name}\n`);
  try {
    const mod = await import(path.join(root, 'dist/bench', file));
    const rows = await mod.measure({ quick, progress: (m) => process.stderr.write(`  ${m}\n`) });
    for (const r of rows) results.push({ module: name, ...r, oursStat: stat(r.ours.samples), peerStat: r.peer ? stat(r.peer.samples) : undefined });
  } catch (err) {
    process.stderr.write(`  failed: ${err.stack ?? err}\n`);
    results.push({ module: name, measure: `${name} (failed: ${String(err.message ?? err).split('\n')[0]})`, error: true });
  }
}

const lines = [
  `Benchmarks ${new Date().toISOString()} (${quick ? 'quick' : 'full'}; ${((Date.now() - started) / 1000).toFixed(0)} s; node ${process.version}; ${process.env.CI ? 'CI' : 'dev'} machine)`,
  '',
  '| measure | unit | ours (median) | peer | peer (median) | ratio ours/peer | better? | runs | ours min / median / p99 / max | target |',
  '|---|---|---|---|---|---|---|---|---|---|',
];
for (const r of results) {
  if (r.error) {
    lines.push(`| ${r.measure} | | | | | | | | | |`);
    continue;
  }
  const o = r.oursStat;
  const p = r.peerStat;
  const ratio = p ? o.median / p.median : undefined;
  const better = ratio === undefined ? '' : (r.higherIsBetter ? ratio >= 1 : ratio <= 1) ? 'yes' : 'no';
  lines.push(
    `| ${r.measure} | ${r.unit} | ${fmt(o.median)} | ${r.peer?.name ?? '–'} | ${fmt(p?.median)} | ${ratio === undefined ? '–' : ratio.toFixed(2)} | ${better} | ${o.n} | ${fmt(o.min)} / ${fmt(o.median)} / ${fmt(o.p99)} / ${fmt(o.max)} | ${r.target ?? ''} |`,
  );
}
const table = lines.join('\n');
console.log('\n' + table);
fs.mkdirSync('bench/results', { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
fs.writeFileSync(`bench/results/${stamp}.json`, JSON.stringify({ quick, node: process.version, results }, null, 2));
fs.writeFileSync('bench/results/latest.md', table + '\n');
console.log(`\nwritten: bench/results/${stamp}.json and bench/results/latest.md`);
