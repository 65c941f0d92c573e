// Shared by the cgroup tests: unique names (several test runs share this machine), and processes
// that wait on stdin until the test has moved them into a group.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { once } from 'node:events';

export const isRoot = process.getuid?.() === 0;
export const notRootReason = 'needs root: creates real cgroups';

export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** A shell that runs `script` once a line arrives on its stdin (after it was placed in a group). */
export function gatedShell(script: string): { child: ChildProcess; release: () => void } {
  const child = spawn('sh', ['-c', `read _go; ${script}`], { stdio: ['pipe', 'ignore', 'ignore'] });
  return { child, release: () => child.stdin!.end('go\n') };
}

export async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/** utime+stime of a process, in clock ticks. */
export function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (without a time limit of its own: tap's test timeout bounds it) until `cond` holds. */
export async function eventually(cond: () => boolean): Promise<void> {
  while (!cond()) await sleep(10);
}
