#!/usr/bin/env node
// Regenerates protos/gen from protos/*.proto with buf + protoc-gen-es (both npm packages, so this
// works offline). `--check` generates into a temporary folder and fails if the committed code differs.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const committed = path.join(root, 'protos/gen');
const out = check ? fs.mkdtempSync(path.join(os.tmpdir(), 'kata-gen-')) : committed;

const template = {
  version: 'v2',
  clean: true,
  plugins: [{ local: path.join(root, 'node_modules/.bin/protoc-gen-es'), out, opt: ['target=ts', 'import_extension=js'] }],
};
const buf = path.join(root, 'node_modules/@bufbuild/buf/bin/buf');
// buf's .bin link can install without its run bit, so call its JS launcher through node.
const r = spawnSync(process.execPath, [buf, 'generate', '--template', JSON.stringify(template), path.join(root, 'protos')], {
  cwd: root,
  stdio: 'inherit',
});
if (r.status !== 0) {
  console.error(`buf generate failed with status ${r.status}`);
  process.exit(1);
}
if (!check) process.exit(0);

const list = (d) => fs.readdirSync(d).filter((f) => f.endsWith('.ts')).sort();
const stale = [];
const a = list(committed);
const b = list(out);
for (const f of new Set([...a, ...b])) {
  const x = a.includes(f) ? fs.readFileSync(path.join(committed, f), 'utf8') : null;
  const y = b.includes(f) ? fs.readFileSync(path.join(out, f), 'utf8') : null;
  if (x !== y) stale.push(f);
}
fs.rmSync(out, { recursive: true, force: true });
if (stale.length) {
  console.error(`protos/gen is stale (run npm run gen): ${stale.join(', ')}`);
  process.exit(1);
}
console.log('protos/gen is up to date');
