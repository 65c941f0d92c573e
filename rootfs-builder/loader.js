// Starts the bundled agent (agent.js beside this file) from V8 bytecode cached at build time.
// Node 20 has no built-in compile cache, and compiling the 1.5 MB bundle is a large share of the
// agent's start-up, several times larger under TCG emulation where every boot pays it. If V8
// rejects the cache (another node build or CPU flags), it compiles the source as usual.
// With KATA_AGENT_MAKE_CODE_CACHE=<ms> it runs the agent that long, so the functions start-up uses
// are compiled, writes agent.js.cache and exits: the build step that makes the cache.
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const Module = require('module');

const file = path.join(__dirname, 'agent.js');
const cacheFile = file + '.cache';
const makeCacheAfterMs = Number(process.env.KATA_AGENT_MAKE_CODE_CACHE || 0);
let cachedData;
if (!makeCacheAfterMs) {
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    // no cache shipped: plain compile
  }
}
const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData });
const mod = new Module(file, module);
mod.filename = file;
mod.paths = Module._nodeModulePaths(__dirname);
process.env.KATA_AGENT_CODE_CACHE = cachedData ? (script.cachedDataRejected ? 'rejected' : 'used') : 'none';
if (makeCacheAfterMs) {
  setTimeout(() => {
    fs.writeFileSync(cacheFile, script.createCachedData());
    process.exit(0);
  }, makeCacheAfterMs);
}
script.runInThisContext().call(mod.exports, mod.exports, (id) => mod.require(id), mod, file, __dirname);
