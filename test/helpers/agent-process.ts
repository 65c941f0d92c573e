// Starts the real agent (bin/kata-agent, as built) on a unique unix socket and stops it by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const repoRoot = path.resolve(__dirname, '../../..');

export interface AgentProcess {
  socket: string;
  child: ChildProcess;
  /** Everything the agent logged so far. */
  log(): string;
  stop(): Promise<void>;
}

export async function startAgent(tag: string): Promise<AgentProcess> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kata-${tag}-`));
  const socket = path.join(dir, 'agent.sock');
  // A temp state root: a test must never create or remove sandboxes under the real /run/kata-containers.
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/kata-agent'), '--server-addr', `unix://${socket}`, '--log-level', 'info', '--state-root', path.join(dir, 'state')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, KATA_AGENT_SERVER_ADDR: '' },
  });
  let log = '';
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const onData = () => {
      if (log.includes('agent listening')) {
        child.stderr!.off('data', onData);
        resolve();
      }
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`agent exited (${code}) before listening: ${log}`)));
  });
  return {
    socket,
    child,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
