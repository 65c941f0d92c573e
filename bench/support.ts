import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

// The agent binary and temp dirs exactly as the tests use them.
export { agentBin, repoRoot, tempDir } from '../test/support/agent-process.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wall time of `fn` in ms. */
export async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Runs a command to exit; rejects on a non-zero status. */
export function runToExit(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env }, cwd: opts.cwd });
    let err = '';
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-500)}`))));
  });
}

/** Connects to a unix socket, retrying while it does not exist or refuses. */
export async function connectWhenReady(socketPath: string, deadlineMs: number): Promise<net.Socket> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(socketPath);
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
    } catch (err) {
      if (Date.now() > end) throw err;
      await sleep(2);
    }
  }
}

/** RssAnon, RssFile (from /proc/PID/status) and Pss (smaps_rollup), in MB. */
export function memoryOf(pid: number): { rssAnon: number; rssFile: number; pss: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (re: RegExp, text: string) => Number(re.exec(text)?.[1] ?? NaN);
  const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return {
    rssAnon: kb(/RssAnon:\s+(\d+)/, status) / 1024,
    rssFile: kb(/RssFile:\s+(\d+)/, status) / 1024,
    pss: kb(/^Pss:\s+(\d+)/m, rollup) / 1024,
  };
}
