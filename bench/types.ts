// Shape every benchmark module returns, so one runner (npm run bench) prints one table of ratios.
// A module is bench/<name>.bench.ts exporting `measure(opts): Promise<BenchRow[]>`.

export interface BenchOptions {
  /** ~2-minute smoke run when true; full run otherwise. */
  quick: boolean;
  /** Progress lines for the person watching. */
  progress: (msg: string) => void;
}

export interface Samples {
  name: string;
  /** Raw samples in `unit`; the runner reports min/median/max and p99 from them. */
  samples: number[];
}

export interface BenchRow {
  measure: string;
  /** e.g. "ms", "MB/s", "MB". */
  unit: string;
  /** true when more is better (throughput), false when less is better (latency, memory). */
  higherIsBetter: boolean;
  ours: Samples;
  /** Peer measured in the same run (runc, crun, a shell init, the other wire...). */
  peer?: Samples;
  /** The figure the issue sets as target, for the report (never asserted in tests). */
  target?: string;
}

export type MeasureFn = (opts: BenchOptions) => Promise<BenchRow[]>;
