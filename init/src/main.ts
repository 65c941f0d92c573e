// Entry point of the guest bundle (/init, /sbin/init, /usr/bin/kata-agent in the image). As PID 1 it
// does the boot duties and then runs the agent in the same process; otherwise it is the plain agent
// (standalone mode), so one binary serves both.
import fs from 'node:fs';
import { libc } from '../../agent/src/linux/index.js';
import { main as agentMain } from '../../agent/src/main.js';
import { bootFilesystems, bootServices, defaultBootPaths } from './boot.js';
import { moveLogsToConsole, startedWithoutConsole, toKernelLog, type ConsoleMove } from './console.js';
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
    toKernelLog(`init: ${(err as Error).message}`);
    powerOff(c);
  }
  // Before the agent reads its config, so that every log line of the agent reaches kata's console.
  let consoleMove: ConsoleMove | undefined;
  if (startedWithoutConsole()) {
    try {
      consoleMove = await moveLogsToConsole(c, { cmdline: fs.readFileSync('/proc/cmdline', 'utf8'), modulesDir: defaultBootPaths().modulesDir });
    } catch (err) {
      consoleMove = { reason: (err as Error).message, waitedMs: 0 };
    }
    if (!consoleMove.console) toKernelLog(`no console for the agent's logs yet: ${consoleMove.reason}`);
  }
  // Signals with the default disposition never reach PID 1; these are the ones that mean "stop".
  await agentMain(argv, {
    beforeStart: (config, log) => {
      if (consoleMove) {
        const { late, ...result } = consoleMove;
        log.debug({ step: 'console', result, ms: consoleMove.waitedMs }, 'boot step done');
        // Logged once the logs are on the console, so the host sees which of its lines are missing.
        late?.then((m) => {
          if (m.console) log.warn({ console: m.console, waited_ms: m.waitedMs }, 'console appeared late: earlier log lines went to /dev/null');
          else toKernelLog(`no console for the agent's logs: ${m.reason}`);
        });
      }
      return bootServices(c, config, log);
    },
    exit: () => powerOff(c),
    stopAfterDestroySandbox: true,
  });
}

void run();
