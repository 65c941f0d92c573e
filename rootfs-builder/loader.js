// Starts the bundled agent (agent.js beside this file) from V8 bytecode cached at build time
// (cached-script.js). With KATA_AGENT_MAKE_CODE_CACHE=<ms> it runs the agent that long, so the
// functions start-up and a first call use are compiled, writes the caches for its own node flags
// (agent.js, and grpc-deps.js after loading it, as a host's first gRPC connection would) and exits:
// the build step (bundle.mjs).
'use strict';
const path = require('path');
const { compile, requireCached, compiled } = require('./cached-script.js');

const makeCacheAfterMs = Number(process.env.KATA_AGENT_MAKE_CODE_CACHE || 0);
const agent = compile(path.join(__dirname, 'agent.js'), module, makeCacheAfterMs > 0);
process.env.KATA_AGENT_CODE_CACHE = agent.cacheUse;
// Milliseconds since the process started, once the bundle is compiled: the agent logs it at
// "agent listening" so a slow boot can be split into node, compile and the agent's own steps.
process.env.KATA_AGENT_COMPILED_MS = (process.uptime() * 1000).toFixed(1);
if (makeCacheAfterMs) {
  setTimeout(() => {
    // agent.js first: its cache must hold what start-up and a Check use, not the gRPC part.
    agent.writeCache();
    const grpcDeps = path.join(__dirname, 'grpc-deps.js');
    requireCached(grpcDeps);
    compiled.get(grpcDeps).writeCache();
    process.exit(0);
  }, makeCacheAfterMs);
}
agent.run();
