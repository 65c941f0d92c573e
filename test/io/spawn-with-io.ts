import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { constants as osConstants } from 'node:os';
import type { ProcessIO } from '../../agent/src/io/process-io.js';
import { openPty } from '../../agent/src/io/pty.js';
import { libc } from '../../agent/src/linux/index.js';

export interface Spawned {
  child: ChildProcess;
  /** Resolves with the exit code (or 128+signal) once the child exited. */
  exited: Promise<number>;
}

/**
 * Spawns `file args` on the ProcessIO as the container helper does: on its pipes' child ends (then
 * closed here), or, for a terminal, on the slave of a pty opened here whose master the ProcessIO
 * then takes, as it takes the one a helper sends.
 */
export function spawnOnIO(io: ProcessIO, file: string, args: string[]): ChildProcess {
  if (io.childFds) {
    const child = spawn(file, args, { stdio: io.childFds });
    io.closeChildEnds();
    return child;
  }
  const pty = openPty(libc());
  try {
    return spawn(file, args, { stdio: [pty.slave, pty.slave, pty.slave] });
  } finally {
    libc().close(pty.slave);
    io.attachPty(pty.master);
  }
}

/** Runs `sh -c script` through spawnOnIO. The child is killed by pid at teardown if still running. */
export function spawnWithIO(t: { teardown(fn: () => unknown): void }, io: ProcessIO, script: string): Spawned {
  const child = spawnOnIO(io, 'sh', ['-c', script]);
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
  return osConstants.signals[name as NodeJS.Signals] ?? 0;
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
