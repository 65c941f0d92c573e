import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const repoRoot = path.resolve(__dirname, '../../..');
export const agentBin = path.join(repoRoot, 'bin/kata-agent');
export const ctlBin = path.join(repoRoot, 'bin/kata-agent-ctl');

export interface AgentProcess {
  pid: number;
  address: string;
  socketPath: string;
  /** Everything the agent wrote on stderr so far (JSON log lines). */
  logs(): string;
  stop(): Promise<void>;
  child: ChildProcess;
}

/** A temp dir removed at process exit; sockets live here so parallel test files never collide. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts bin/kata-agent on a fresh unix socket and resolves once it logs that it listens. The
 * returned stop() kills it by pid and waits for it to exit.
 */
export async function startAgentProcess(opts: { env?: NodeJS.ProcessEnv; args?: string[]; address?: string } = {}): Promise<AgentProcess> {
  const socketPath = path.join(tempDir('kata-agent-test-'), 'agent.sock');
  const address = opts.address ?? `unix://${socketPath}`;
  // A temp state root: a test must never create or remove sandboxes under the real /run/kata-containers.
  const stateRoot = path.join(path.dirname(socketPath), 'state');
  const child = spawn(process.execPath, [agentBin, '--state-root', stateRoot, ...(opts.args ?? [])], {
    env: { ...process.env, KATA_AGENT_SERVER_ADDR: address, KATA_AGENT_LOG_LEVEL: 'debug', ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (stderr.includes('"msg":"agent listening"')) {
        clearInterval(timer);
        resolve();
      }
    }, 20);
    child.once('exit', (code) => {
      clearInterval(timer);
      reject(new Error(`agent exited with ${code} before listening: ${stderr}`));
    });
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid!,
    address,
    socketPath,
    child,
    logs: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM');
      await exited;
    },
  };
}

/** Runs a command to completion, collecting its output. */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
