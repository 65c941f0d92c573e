// Milliseconds since node started, for the start-up figures the agent logs. Node's `performance`
// global loads perf_hooks and ten internal modules on first use, ~20 ms of a boot under TCG;
// process.uptime() counts from the same start without loading anything.
export function uptimeMs(): number {
  return process.uptime() * 1000;
}
