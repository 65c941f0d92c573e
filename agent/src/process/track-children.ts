// Registers every child_process child with the reaper's owned set (process/children.ts) while it
// lives, whoever in the agent spawns it, so the orphan reaper never takes an exit libuv waits for.
import child_process from 'node:child_process';
import { trackChild } from './children.js';

let patched = false;

export function trackAllChildProcesses(): void {
  if (patched) return;
  patched = true;
  const proto = child_process.ChildProcess.prototype as unknown as { spawn: (...a: unknown[]) => unknown };
  const original = proto.spawn;
  proto.spawn = function (this: child_process.ChildProcess, ...args: unknown[]) {
    const r = original.apply(this, args);
    trackChild(this as never);
    return r;
  };
}
