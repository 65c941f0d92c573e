// The agent's V8 heap, tuned for what a guest agent is: idle most of the time, then bursts of small
// RPCs, paid for per pod in the VM's memory. By default V8 doubles the young generation whenever a
// scavenge finds many survivors, up to 16 MiB per semi-space, grows the old space by large steps,
// and keeps both: after 2,000 ttrpc + 2,000 gRPC calls the agent held ~64 MB RssAnon, still 64 MB
// 10 s later (bench/memory.bench.ts). With the semi-space growth factor at 1 the young generation
// stays at its first size (1 MiB semi-spaces), and with the old space grown by 10% steps V8's memory
// reducer gives memory back once the agent is idle: 28 MB after the same burst, 19 MB 10 s later.
// The price, measured with bench/rpc-roundtrip.bench.ts: ~10 µs more per ttrpc Check (more, smaller
// scavenges), a p99 of ~0.5 ms instead of ~0.2 ms; gRPC's p99 improved. Set at run time, once the
// agent listens: V8 ignores --semi-space-growth-factor on the command line, and start-up flags were
// measured to slow the boot. --single-threaded-gc, tried as well, crashes when set at run time.
import v8 from 'node:v8';
import type { Logger } from '../log/logger.js';

export const heapFlags = ['--semi-space-growth-factor=1', '--heap-growing-percent=10'];

/** Applies heapFlags, unless KATA_AGENT_HEAP_TUNING=0 (the benchmarks' untuned baseline). */
export function tuneHeap(log: Logger, env: NodeJS.ProcessEnv = process.env): void {
  if (env.KATA_AGENT_HEAP_TUNING === '0') {
    log.debug({ flags: [] }, 'heap tuning off (KATA_AGENT_HEAP_TUNING=0)');
    return;
  }
  for (const f of heapFlags) v8.setFlagsFromString(f);
  log.debug({ flags: heapFlags }, 'heap tuned for an idle agent');
}
