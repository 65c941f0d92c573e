import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { ProcessIO } from '../../agent/src/io/process-io.js';

export interface Spawned {
  child: ChildProcess;
  /** Resolves with the exit code (or 128+signal) once the child exited. */
  exited: Promise<number>;
}

/**
 * Runs `sh -c script` on the ProcessIO's child fds, as the container helper will, and closes the
 * agent's copies of the child ends. The child is killed by pid at teardown if still running.
 */
export function spawnWithIO(t: { teardown(fn: () => unknown): void }, io: ProcessIO, script: string): Spawned {
  const child = spawn('sh', ['-c', script], { stdio: io.childFds });
  io.closeChildEnds();
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? 128 + (signal ? osSignal(signal as string) : 0)) as number);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    io.dispose();
  });
  return { child, exited };
}

function osSignal(name: string): number {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:os') as typeof import('node:os')).constants.signals[name as NodeJS.Signals] ?? 0;
}

export const never = new AbortController().signal;

/** Reads a stream to its end; returns everything read. */
export async function readAll(io: ProcessIO, stream: 'stdout' | 'stderr', len = 32 * 1024): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for (;;) {
    const d = await io.read(stream, len, never);
    if (d === null) return Buffer.concat(parts);
    parts.push(d);
  }
}
