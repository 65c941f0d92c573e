#!/usr/bin/env node
// Bundles init + agent into one file with esbuild (straight from the TypeScript sources) and copies
// the two native addons beside it: koffi and node-pty load .node files by path at run time, so they
// stay external and only their Linux x64 parts are copied.
// usage: node rootfs-builder/bundle.mjs OUT_DIR
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.resolve(process.argv[2] ?? path.join(repo, 'build', 'bundle'));
const nm = path.join(repo, 'node_modules');

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });

/**
 * @grpc/reflection loads its own .proto files relative to its installed folder, which a bundle
 * does not have: point those reads at proto/ beside agent.js instead.
 */
function reflectionProtos() {
  return {
    name: 'reflection-protos',
    setup(b) {
      b.onLoad({ filter: /@grpc[\\/]reflection[\\/]build[\\/]src[\\/]implementations[\\/].*\.js$/ }, (args) => {
        const src = fs.readFileSync(args.path, 'utf8');
        const fixed = src.replaceAll("path.join(__dirname, '../../proto/", "path.join(__dirname, 'proto/");
        if (fixed === src && src.includes('.proto')) throw new Error(`${args.path}: proto path pattern changed; update reflectionProtos()`);
        return { contents: fixed, loader: 'js' };
      });
    },
  };
}

/**
 * The agent require()s @bufbuild/protobuf where it loads it lazily (agent/src/rpc/lazy-protos.ts)
 * and imports it everywhere else. The package maps the two kinds to its CJS and ESM builds, which
 * would put both in the bundle: resolve every kind as an import so there is one copy.
 */
function oneProtobufBuild() {
  return {
    name: 'one-protobuf-build',
    setup(b) {
      b.onResolve({ filter: /^@bufbuild\/protobuf(\/.*)?$/ }, (args) => {
        if (args.kind !== 'require-call' || args.pluginData?.oneProtobufBuild) return undefined;
        return b.resolve(args.path, { kind: 'import-statement', resolveDir: args.resolveDir, importer: args.importer, pluginData: { oneProtobufBuild: true } });
      });
    },
  };
}

await build({
  entryPoints: [path.join(repo, 'init', 'src', 'main.ts')],
  outfile: path.join(out, 'agent.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['koffi', 'node-pty'],
  // The agent's start reads the whole file: without whitespace it is ~40% smaller and its read ~25 ms
  // shorter under TCG. Identifiers keep their names so stack traces in the logs stay readable.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [reflectionProtos(), oneProtobufBuild()],
});
// The container-init helper is its own small program (process/helper.ts finds it beside agent.js):
// node runs it for every container init and exec, so it must not carry the whole agent.
await build({
  entryPoints: [path.join(repo, 'agent', 'src', 'container', 'init', 'main.ts')],
  outfile: path.join(out, 'container-init.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['koffi'],
  minify: false,
  legalComments: 'none',
  logLevel: 'warning',
});
// agentVersion reads name and version from a package.json beside the bundle.
const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
fs.writeFileSync(path.join(out, 'package.json'), JSON.stringify({ name: pkg.name, version: pkg.version, private: true }) + '\n');
// The .proto files @grpc/reflection reads at run time sit beside the bundle.
fs.cpSync(path.join(nm, '@grpc', 'reflection', 'build', 'proto', 'grpc'), path.join(out, 'proto', 'grpc'), { recursive: true });

// The loader and the V8 code cache it starts from (see loader.js). The cache is made by running the
// agent briefly on a throwaway unix socket with this machine's node, which is the image's node too.
fs.copyFileSync(path.join(repo, 'rootfs-builder', 'loader.js'), path.join(out, 'loader.js'));

function copy(rel, filter = () => true) {
  const src = path.join(nm, rel);
  const dst = path.join(out, 'node_modules', rel);
  fs.cpSync(src, dst, { recursive: true, dereference: true, filter: (s) => filter(path.relative(src, s)) });
}
// koffi: its JS loader plus the glibc x64 build only (doc/, vendor/ and C sources are not needed).
copy('koffi', (r) => !/^(doc|vendor|lib)(\/|$)/.test(r));
copy('@koromix/koffi-linux-x64', (r) => !r.startsWith('musl_x64'));
// node-pty: lib/ and the addon built for this Node; no prebuilds for other systems, no tests.
copy('node-pty', (r) => r === '' || r === 'package.json' || r === 'lib' || (r.startsWith('lib/') && !r.endsWith('.map') && !r.includes('.test.')) || r === 'build' || r === 'build/Release' || r === 'build/Release/pty.node');

// One cache per way node is started (loader.js cacheFileFor): plain on the host, and with the
// guest's flags and environment as the image's /usr/bin/kata-agent starts it.
const guestNode = JSON.parse(fs.readFileSync(path.join(repo, 'rootfs-builder', 'guest-node.json'), 'utf8'));
for (const { flags, env } of [{ flags: [], env: {} }, guestNode]) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-cache-'));
  const r = spawnSync(process.execPath, [...flags, path.join(out, 'loader.js')], {
    env: { ...process.env, ...env, KATA_AGENT_MAKE_CODE_CACHE: '1500', KATA_AGENT_SERVER_ADDR: `unix://${tmp}/a.sock`, KATA_AGENT_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  fs.rmSync(tmp, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`making the V8 code cache for node ${flags.join(' ')} failed (status ${r.status})`);
}

let total = 0;
const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).forEach((e) => {
  const p = path.join(d, e.name);
  if (e.isDirectory()) walk(p);
  else total += fs.statSync(p).size;
});
walk(out);
console.log(`bundle: ${(total / 1048576).toFixed(1)} MiB in ${out}`);
