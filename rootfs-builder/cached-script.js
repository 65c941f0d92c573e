// Compiles a bundle file (agent.js, grpc-deps.js) as a CommonJS module from V8 bytecode cached at
// build time. Node 20 has no built-in compile cache, and compiling is a large share of the agent's
// start-up under TCG emulation, where every boot pays it. If V8 rejects a cache (another node build,
// other V8 flags or CPU features) the file compiles from source as usual.
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
// The CommonJS Module class without require('module'), which loads the ES module loader too.
const Module = module.constructor;

/**
 * V8 rejects a cache made under other flags (its flag hash differs), so there is one cache per set
 * of node flags: the host runs node plain, the guest with rootfs-builder/guest-node.json's flags.
 */
function cacheFileFor(jsFile, execArgv = process.execArgv) {
  const flags = execArgv
    .filter((a) => a.startsWith('--'))
    .map((a) => a.slice(2).replace(/[^\w.=-]/g, '_'))
    .sort();
  return [jsFile, ...flags, 'cache'].join('.');
}

/** `file` compiled, not yet run. `fresh`: ignore any cache (the build step that makes them). */
function compile(file, parent, fresh = false) {
  let cachedData;
  if (!fresh) {
    try {
      cachedData = fs.readFileSync(cacheFileFor(file));
    } catch {
      // no cache for these flags: plain compile
    }
  }
  const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData });
  // V8 keeps what it took from the cache; the file's bytes need not live as long as the agent.
  const cacheUse = cachedData ? (script.cachedDataRejected ? 'rejected' : 'used') : 'none';
  const mod = new Module(file, parent);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  return {
    cacheUse,
    exports: () => mod.exports,
    run() {
      script.runInThisContext().call(mod.exports, mod.exports, (id) => mod.require(id), mod, file, path.dirname(file));
      mod.loaded = true;
      return mod.exports;
    },
    /** Writes the bytecode of every function compiled so far (run the code first). */
    writeCache() {
      fs.writeFileSync(cacheFileFor(file), script.createCachedData());
    },
  };
}

const compiled = new Map();

/** require() for a bundle file beside this one, from its cache; the agent's lazy gRPC part uses it. */
function requireCached(file) {
  let c = compiled.get(file);
  if (!c) {
    c = compile(file, module, Boolean(process.env.KATA_AGENT_MAKE_CODE_CACHE));
    compiled.set(file, c);
    c.run();
  }
  return c.exports();
}

module.exports = { compile, requireCached, compiled };
