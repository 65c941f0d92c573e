// Entry point of the guest bundle (/init, /sbin/init, /usr/bin/kata-agent in the image). As PID 1 it
// does the boot duties and then runs the agent in the same process; otherwise it is the plain agent
// (standalone mode), so one binary serves both.
import { libc } from '../../agent/src/linux/index.js';
import { main as agentMain } from '../../agent/src/main.js';
import { bootFilesystems, bootServices } from './boot.js';
import { powerOff } from './power.js';

async function run(): Promise<void> {
  const argv = process.argv.slice(2);
  if (process.pid !== 1) {
    await agentMain(argv);
    return;
  }
  const c = libc();
  try {
    bootFilesystems(c);
  } catch (err) {
    process.stderr.write(`kata-agent init: ${(err as Error).message}\n`);
    powerOff(c);
  }
  // Signals with the default disposition never reach PID 1; these are the ones that mean "stop".
  await agentMain(argv, {
    beforeStart: (config, log) => bootServices(c, config, log),
    exit: () => powerOff(c),
    stopAfterDestroySandbox: true,
  });
}

void run();
