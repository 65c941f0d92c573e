#!/usr/bin/env node
// Bundles init + agent into one file with esbuild (straight from the TypeScript sources) and copies
// the two native addons beside it: koffi and node-pty load .node files by path at run time, so they
// stay external and only their Linux x64 parts are copied.
// usage: node rootfs-builder/bundle.mjs OUT_DIR
import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.resolve(process.argv[2] ?? path.join(repo, 'build', 'bundle'));
const nm = path.join(repo, 'node_modules');

const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
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

/**
 * esbuild turns an import of a Node builtin into `__toESM(require(...))`, a copy of all the module's
 * properties (a getter each) made once per importing file: at start-up node:fs was copied 28 times
 * and node:path 22 times, ~30 ms of a boot under TCG and most of the young generation a boot fills.
 * Every import of a builtin goes through one small ES module instead, which exports the builtin
 * itself as default and its plain properties by name (read once, no copies, no getters). A named
 * import of anything else (an accessor, a name this node lacks) fails the build here.
 */
function builtinsWithoutCopies() {
  const require = createRequire(import.meta.url);
  return {
    name: 'builtins-without-copies',
    setup(b) {
      b.onResolve({ filter: /^node:/ }, (args) => {
        if (args.kind !== 'import-statement' || args.namespace === 'builtin') return undefined;
        return { path: args.path, namespace: 'builtin' };
      });
      b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => {
        const mod = require(args.path);
        const names = Object.keys(mod).filter((k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k) && 'value' in Object.getOwnPropertyDescriptor(mod, k));
        const lines = [`const m = require(${JSON.stringify(args.path)});`, 'export default m;', ...names.map((n) => `export const ${n} = m.${n};`)];
        return { contents: lines.join('\n') + '\n', loader: 'js' };
      });
    },
  };
}

/**
 * gRPC (kata 1.x) is loaded on a host's first gRPC connection, and @grpc/grpc-js with
 * @grpc/reflection and protobufjs is ~60% of the bundle. They go in grpc-deps.js beside agent.js so
 * that a booting agent reads (and keeps in memory) only the code it starts with. The agent's imports
 * of the two packages become requires of that file; its other modules stay in agent.js (one copy).
 */
const grpcPackages = ['@grpc/grpc-js', '@grpc/reflection'];
function grpcDepsFile() {
  return {
    name: 'grpc-deps-file',
    setup(b) {
      b.onResolve({ filter: /^@grpc\/(grpc-js|reflection)$/ }, (args) => ({ path: args.path, namespace: 'grpc-deps' }));
      b.onLoad({ filter: /.*/, namespace: 'grpc-deps' }, (args) => ({
        contents: `const path = require('path');\nmodule.exports = require(path.join(__dirname, 'cached-script.js')).requireCached(path.join(__dirname, 'grpc-deps.js'))[${JSON.stringify(args.path)}];`,
        loader: 'js',
      }));
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
  plugins: [grpcDepsFile(), oneProtobufBuild(), builtinsWithoutCopies()],
  define: { __KATA_AGENT_VERSION__: JSON.stringify(pkg.version) },
});
await build({
  stdin: {
    // Getters: a package is evaluated when first used. @grpc/reflection (with protobufjs) is needed
    // only on the first reflection call, not on the first gRPC connection.
    contents: `module.exports = { ${grpcPackages.map((p) => `get ${JSON.stringify(p)}() { return require(${JSON.stringify(p)}); }`).join(', ')} };`,
    resolveDir: repo,
    sourcefile: 'grpc-deps-entry.js',
  },
  outfile: path.join(out, 'grpc-deps.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [reflectionProtos()],
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
// agentVersion reads name and version from a package.json beside the bundle unless built in (define).
fs.writeFileSync(path.join(out, 'package.json'), JSON.stringify({ name: pkg.name, version: pkg.version, private: true }) + '\n');
// The .proto files @grpc/reflection reads at run time sit beside the bundle.
fs.cpSync(path.join(nm, '@grpc', 'reflection', 'build', 'proto', 'grpc'), path.join(out, 'proto', 'grpc'), { recursive: true });

// The loader and the V8 code cache it starts from (see loader.js). The cache is made by running the
// agent briefly on a throwaway unix socket with this machine's node, which is the image's node too.
for (const f of ['loader.js', 'cached-script.js']) fs.copyFileSync(path.join(repo, 'rootfs-builder', f), path.join(out, f));

function copy(rel, filter = () => true) {
  const src = path.join(nm, rel);
  const dst = path.join(out, 'node_modules', rel);
  fs.cpSync(src, dst, { recursive: true, dereference: true, filter: (s) => filter(path.relative(src, s)) });
}
// koffi: its JS loader plus the glibc x64 build only (doc/, vendor/ and C sources are not needed).
copy('koffi', (r) => !/^(doc|vendor|lib)(\/|$)/.test(r));
copy('@koromix/koffi-linux-x64', (r) => !r.startsWith('musl_x64'));
// node-pty: lib/ and the addon built for this Node; no prebuilds for other systems, no tests.
copy(
  'node-pty',
  (r) =>
    r === '' ||
    r === 'package.json' ||
    r === 'lib' ||
    (r.startsWith('lib/') && !r.endsWith('.map') && !r.includes('.test.')) ||
    r === 'build' ||
    r === 'build/Release' ||
    r === 'build/Release/pty.node',
);

// One cache per way node is started (cached-script.js cacheFileFor): plain on the host, and with the
// guest's flags and environment as the image's /usr/bin/kata-agent starts it. While the cache is
// made, one ttrpc Check is answered, so the code a host's first call runs (ttrpc framing, dispatch,
// the Health codec) is cached too instead of compiled on that call (slow under TCG).
// V8 writes a different cache on every run (its string hash seed is random per process; a fixed
// --hash-seed would change the flag hash and the guest would refuse the cache), so the caches are
// the one part of the image that differs between builds. KATA_REPRODUCIBLE=1 leaves them out: the
// image is then identical for the same inputs and the agent compiles from source at boot.
const guestNode = JSON.parse(fs.readFileSync(path.join(repo, 'rootfs-builder', 'guest-node.json'), 'utf8'));
const flagSets = process.env.KATA_REPRODUCIBLE === '1' ? [] : [...new Map([[], guestNode.flags].map((f) => [f.join(' '), f])).values()];
if (flagSets.length === 0) console.error('bundle: KATA_REPRODUCIBLE=1: no V8 code caches (reproducible, slower start)');
for (const flags of flagSets) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-cache-'));
  const sock = path.join(tmp, 'a.sock');
  const child = spawn(process.execPath, [...flags, path.join(out, 'loader.js')], {
    env: { ...process.env, ...guestNode.env, KATA_AGENT_MAKE_CODE_CACHE: '1500', KATA_AGENT_SERVER_ADDR: `unix://${sock}`, KATA_AGENT_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const answered = await ttrpcCheck(sock, 1200);
  const status = await exited;
  fs.rmSync(tmp, { recursive: true, force: true });
  if (status !== 0) throw new Error(`making the V8 code cache for node ${flags.join(' ')} failed (status ${status})`);
  if (!answered) throw new Error(`making the V8 code cache: the agent did not answer a ttrpc Check within 1.2 s`);
}

/** Sends one ttrpc grpc.Health/Check (frame header + ttrpc.Request by hand) once the socket exists. */
async function ttrpcCheck(sock, withinMs) {
  const deadline = Date.now() + withinMs;
  const str = (no, v) => Buffer.concat([Buffer.from([(no << 3) | 2, v.length]), Buffer.from(v)]);
  const request = Buffer.concat([str(1, 'grpc.Health'), str(2, 'Check')]);
  const header = Buffer.alloc(10);
  header.writeUInt32BE(request.length, 0);
  header.writeUInt32BE(1, 4);
  header[8] = 1; // request
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(sock);
      c.once('error', () => resolve(false));
      c.once('connect', () => c.write(Buffer.concat([header, request])));
      c.once('data', (d) => {
        c.destroy();
        resolve(d.length >= 10 && d[8] === 2); // a response frame
      });
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

let total = 0;
const walk = (d) =>
  fs.readdirSync(d, { withFileTypes: true }).forEach((e) => {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else total += fs.statSync(p).size;
  });
walk(out);
console.log(`bundle: ${(total / 1048576).toFixed(1)} MiB in ${out}`);
