#!/usr/bin/env node
// `npm test`: builds, runs `npm run lint` (one test in the count), runs every compiled test file with tap
// (test/unit/protos-vs-spec checks that protos/gen is current), and ends with the one line CI reads:
// "N passed, N failed" (tap's own summary counts files, not tests).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);

// The same build as `npm run build`: tests run bin/kata-agent, which starts the bundle it makes.
const build = spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}

// eslint, prettier --check and tsc's unused-code checks, counted as one test. Its output is shown only
// when it fails; the tests run either way, so one run reports both.
const lint = spawnSync('npm', ['run', '--silent', 'lint'], { encoding: 'utf8' });
const lintFailed = lint.status !== 0;
if (lintFailed) {
  process.stdout.write(lint.stdout);
  process.stderr.write(lint.stderr);
  console.log(`not ok - lint (npm run lint ended with ${lint.status ?? lint.signal})`);
} else {
  console.log('ok - lint');
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
  console.log(lintFailed ? '0 passed, 2 failed' : '1 passed, 1 failed');
  process.exit(1);
}

const tap = spawn('npx', ['tap', '--reporter=tap', ...files], { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0;
let failed = 0;
let skipped = 0;
let buf = '';
// Count leaf subtests (the tests people write), not assertions and not the groups around them. In TAP
// a subtest's result line comes after its children, so a result is a leaf when no subtest result
// appeared one level deeper since the last result at its own level.
const hasChild = new Map();
let failedInFile = 0;
const count = (line) => {
  const m = /^( *)(not ok|ok) \d+ - (.*)$/.exec(line);
  if (!m) return;
  const indent = m[1].length;
  const rest = m[3];
  const isSkip = /# (SKIP|skip)\b/.test(rest);
  const isSubtest = /# time=/.test(rest) || isSkip;
  if (!isSubtest) return;
  if (indent === 0) {
    // A whole test file. If it failed without any failing test inside, it crashed: count that.
    if (m[2] === 'not ok' && failedInFile === 0) failed++;
    failedInFile = 0;
    hasChild.clear();
    return;
  }
  const leaf = !hasChild.get(indent);
  hasChild.set(indent, false);
  hasChild.set(indent - 4, true);
  if (!leaf) return;
  if (isSkip) skipped++;
  else if (m[2] === 'ok') passed++;
  else {
    failed++;
    failedInFile++;
  }
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
  if (code !== 0 && failed === 0) failed = 1;
  if (lintFailed) failed++;
  else passed++;
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed ? 1 : 0);
});
