// The stdio contract agent/src/io/process-io.ts implements (owned by the io work); restated here so
// the container code compiles against it on its own. The real module satisfies it structurally.
import type { Libc } from '../linux/libc.js';

export interface ProcessIO {
  readonly childFds: [number, number, number];
  readonly terminal: boolean;
  closeChildEnds(): void;
  read(stream: 'stdout' | 'stderr', len: number, signal: AbortSignal): Promise<Uint8Array | null>;
  write(data: Uint8Array, signal: AbortSignal): Promise<number>;
  closeStdin(): void;
  resize(rows: number, cols: number): void;
  dispose(): void;
}

export type CreateProcessIO = (opts: { terminal: boolean; pipeSize: number; libc: Libc }) => ProcessIO;
