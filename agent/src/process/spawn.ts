// The only way the agent starts a child process. The PID-1 orphan reaper must never waitpid() a
// child that Node waits for itself (docs/facts/platform.md: its 'exit' would never fire), so each
// child is marked owned (children.ts) the moment spawn() returns, before the event loop can run the
// reaper. Lint refuses node:child_process anywhere else in agent/src, which keeps this true without
// patching ChildProcess.prototype.
import child_process, { type ChildProcess, type ExecFileOptions, type SpawnOptions } from 'node:child_process';
import { trackChild } from './children.js';

export function spawnOwned(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  const child = child_process.spawn(command, args, options);
  trackChild(child);
  return child;
}

/** execFile with string output; the callback gets what execFile gives. */
export function execFileOwned(
  file: string,
  args: readonly string[],
  options: ExecFileOptions,
  callback: (err: child_process.ExecFileException | null, stdout: string, stderr: string) => void,
): ChildProcess {
  const child = child_process.execFile(file, args, { ...options, encoding: 'utf8' }, (err, out, errOut) => callback(err, String(out), String(errOut)));
  trackChild(child);
  return child;
}
