#!/usr/bin/env node
// `npm test`: builds, checks the generated protos are current, runs every compiled test file with tap,
// and ends with the one line CI reads: "N passed, N failed" (tap's own summary counts files, not tests).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);

const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}

function findTests(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? findTests(p) : e.name.endsWith('.test.js') ? [p] : [];
  });
}

// Optional filters: `npm test -- unit grpc` runs only files whose path contains one of the words.
const filters = process.argv.slice(2);
const files = findTests('dist/test')
  .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)))
  .sort();
if (files.length === 0) {
  console.log('no test files found under dist/test');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const tap = spawn('npx', ['tap', '--reporter=tap', ...files], { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0;
let failed = 0;
let skipped = 0;
let buf = '';
const count = (line) => {
  // Direct children of each file's subtest sit at four spaces: those are our tests.
  const m = /^ {4}(not ok|ok) \d+/.exec(line);
  if (!m) return;
  if (/# (SKIP|skip)/.test(line)) skipped++;
  else if (m[1] === 'ok') passed++;
  else failed++;
};
tap.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buf += chunk.toString();
  const lines = buf.split('\n');
  buf = lines.pop();
  lines.forEach(count);
});
tap.on('close', (code) => {
  if (buf) count(buf);
  // A file that crashed before reporting counts as a failure even if tap counted no test in it.
  if (code !== 0 && failed === 0) failed = 1;
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed ? 1 : 0);
});
