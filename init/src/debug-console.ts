// Debug console: `agent.debug_console` puts a shell on /dev/console; `agent.debug_console_vport=N`
// gives each vsock connection on port N its own pty shell (what `kata-runtime exec` connects to).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../agent/src/log/logger.js';
import { VMADDR_CID_ANY, type Libc } from '../../agent/src/linux/libc.js';
import { trackChild, trackPid, untrackPid } from '../../agent/src/process/children.js';
import { VsockListener } from '../../agent/src/transport/vsock-listener.js';

const shells = ['/bin/bash', '/bin/sh'];
const shellEnv = { PATH: '/bin:/sbin:/usr/bin:/usr/sbin', TERM: 'vt100', HOME: '/root' };

export function findShell(candidates = shells): string | undefined {
  return candidates.find((s) => {
    try {
      fs.accessSync(s, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export interface Stoppable {
  stop(): Promise<void>;
}

/** A shell on the console, started again (after a pause, so a broken shell cannot spin) when it exits. */
export function startConsoleShell(log: Logger, consolePath = '/dev/console'): Stoppable {
  const shell = findShell();
  if (!shell) {
    log.warn({ tried: shells }, 'debug console: no shell in the image');
    return { stop: async () => undefined };
  }
  let stopped = false;
  let current: ReturnType<typeof spawn> | undefined;
  const run = () => {
    if (stopped) return;
    const fd = fs.openSync(consolePath, 'r+');
    // detached: the shell leads its own session, so the console's signals reach it, not the agent.
    current = spawn(shell, ['-i'], { stdio: [fd, fd, fd], detached: true, env: shellEnv, cwd: '/' });
    fs.closeSync(fd);
    trackChild(current);
    current.once('exit', () => setTimeout(run, 1000).unref());
    current.once('error', (err) => log.warn({ err: err.message }, 'debug console: shell failed'));
  };
  run();
  log.info({ shell, console: consolePath }, 'debug console on the console');
  return {
    async stop() {
      stopped = true;
      current?.kill('SIGKILL');
    },
  };
}

interface PtyProcess {
  pid: number;
  write(data: string | Buffer): void;
  onData(cb: (d: string) => void): void;
  onExit(cb: (e: { exitCode: number; signal?: number }) => void): void;
  kill(signal?: string): void;
}

/** One pty shell per connection on vsock port `port`. */
export async function startVportConsole(libc: Libc, log: Logger, port: number): Promise<Stoppable> {
  const shell = findShell();
  if (!shell) throw new Error(`debug console vport ${port}: no shell in the image (tried ${shells.join(', ')})`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- node-pty loads only when a debug console is asked for
  const pty = require('node-pty') as { spawn(file: string, args: string[], opts: object): PtyProcess };
  const listener = new VsockListener(libc, VMADDR_CID_ANY, port, (err) => log.warn({ err: err.message }, 'debug console: accept failed'));
  await listener.listen((conn: Duplex) => {
    const p = pty.spawn(shell, ['-i'], { name: 'vt100', cols: 80, rows: 24, cwd: '/', env: shellEnv });
    trackPid(p.pid);
    p.onData((d) => conn.write(d));
    p.onExit(() => {
      untrackPid(p.pid);
      conn.end();
    });
    conn.on('data', (d: Buffer) => p.write(d));
    conn.on('error', () => undefined);
    conn.on('close', () => p.kill('SIGHUP'));
  });
  log.info({ address: listener.address }, 'debug console listening');
  return { stop: () => listener.close() };
}
