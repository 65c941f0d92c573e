// Starts the bundled agent (agent.js beside this file) from V8 bytecode cached at build time.
// Node 20 has no built-in compile cache, and compiling the 1.5 MB bundle is a large share of the
// agent's start-up, several times larger under TCG emulation where every boot pays it. If V8
// rejects the cache (another node build or CPU flags), it compiles the source as usual.
// With KATA_AGENT_MAKE_CODE_CACHE=<ms> it runs the agent that long, so the functions start-up uses
// are compiled, writes the cache for its own node flags (cacheFileFor) and exits: the build step.
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const Module = require('module');

const file = path.join(__dirname, 'agent.js');
const cacheFile = cacheFileFor(file, process.execArgv);
const makeCacheAfterMs = Number(process.env.KATA_AGENT_MAKE_CODE_CACHE || 0);
let cachedData;
if (!makeCacheAfterMs) {
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    // no cache for these flags: plain compile
  }
}
const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData });
const cacheUse = cachedData ? (script.cachedDataRejected ? 'rejected' : 'used') : 'none';
// V8 keeps what it took from the cache; the file's bytes (~4 MB) need not live as long as the agent.
cachedData = undefined;
const mod = new Module(file, module);
mod.filename = file;
mod.paths = Module._nodeModulePaths(__dirname);
process.env.KATA_AGENT_CODE_CACHE = cacheUse;
// Milliseconds since the process started, once the bundle is compiled: the agent logs it at
// "agent listening" so a slow boot can be split into node, compile and the agent's own steps.
process.env.KATA_AGENT_COMPILED_MS = performance.now().toFixed(1);
if (makeCacheAfterMs) {
  setTimeout(() => {
    fs.writeFileSync(cacheFile, script.createCachedData());
    process.exit(0);
  }, makeCacheAfterMs);
}
/**
 * V8 rejects a cache made under other flags (its flag hash differs), so there is one cache per set
 * of node flags: the host runs node plain, the guest with rootfs-builder/guest-node.json's flags.
 */
function cacheFileFor(jsFile, execArgv) {
  const flags = execArgv.filter((a) => a.startsWith('--')).map((a) => a.slice(2).replace(/[^\w.=-]/g, '_')).sort();
  return [jsFile, ...flags, 'cache'].join('.');
}

script.runInThisContext().call(mod.exports, mod.exports, (id) => mod.require(id), mod, file, __dirname);
