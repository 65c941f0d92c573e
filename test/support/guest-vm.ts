// One VM for one in-VM test: a temp folder for its sockets and console log, the agent's channel at
// <dir>/agent.sock, QEMU killed by pid and the folder removed at teardown, and a failure reported
// with the end of the guest console (what explains most failures in the VM).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentReady, bootGuest, type BootOptions, type GuestVm } from './qemu.js';

export interface GuestRun {
  vm: GuestVm;
  /** The test's folder: put QMP sockets and disk files here. */
  dir: string;
  /** The agent.channel.0 socket, for GuestRpc.connect. */
  sock: string;
}

interface Teardown {
  teardown(f: () => unknown): void;
  fail(message: string): unknown;
}

/**
 * Boots `options(dir)` (serialSocket and consoleFile are set here), waits for "agent listening",
 * then runs `fn`; an error in either is one failure carrying the guest console.
 */
export async function inGuest(
  t: Teardown,
  prefix: string,
  options: (dir: string) => Omit<BootOptions, 'serialSocket' | 'consoleFile'>,
  fn: (run: GuestRun) => Promise<void>,
): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  const sock = path.join(dir, 'agent.sock');
  const vm = await bootGuest({ ...options(dir), serialSocket: sock, consoleFile: path.join(dir, 'console.log') });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    await vm.waitFor(agentReady, 300_000);
    await fn({ vm, dir, sock });
  } catch (err) {
    t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);
  }
}
