// GetIPTables / SetIPTables (kata 3.x, `kata-runtime iptables get|set`): the guest's rule set as
// iptables-save text, read with iptables-save and replaced with iptables-restore. The rules are
// Debian's tools' business, not ours: parsing and applying them (legacy or nft backend, whichever the
// guest's alternatives point at) is exactly what those two programs do, so the agent runs them rather
// than speak nfnetlink itself. v6 uses ip6tables-save / ip6tables-restore.
import fs from 'node:fs';
import path from 'node:path';
import type { GetIPTablesRequest, SetIPTablesRequest } from '../../../protos/gen/agent_pb.js';
import { DeadlineExceeded, failedPrecondition, invalidArgument } from '../errors.js';
import { spawnOwned } from '../process/spawn.js';

/** Where Debian (and kata's guest images) install them; looked up in this order. */
export const IPTABLES_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
/** A rule set larger than this is not a pod's: refused rather than buffered without bound. */
export const MAX_RULES_BYTES = 16 << 20;

export interface IptablesDeps {
  /** Directories searched for the programs (tests use a folder of wrappers). */
  dirs?: string[];
  /** How long one program may run (iptables waits for the xtables lock, which a stuck user holds). */
  timeoutMs?: number;
}

interface RunResult {
  stdout: Buffer;
  stderr: string;
}

function find(name: string, dirs: string[], rpc: string): string {
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next directory
    }
  }
  throw failedPrecondition(`${rpc}: ${name} is not installed in the guest (looked in ${dirs.join(', ')})`);
}

function run(file: string, args: string[], input: Uint8Array | undefined, timeoutMs: number, rpc: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawnOwned(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(() => reject(new DeadlineExceeded(`${rpc}: ${path.basename(file)} did not finish within ${timeoutMs} ms`)));
    }, timeoutMs);
    child.stdout!.on('data', (c: Buffer) => {
      outBytes += c.length;
      if (outBytes > MAX_RULES_BYTES) {
        child.kill('SIGKILL');
        finish(() => reject(failedPrecondition(`${rpc}: ${path.basename(file)} printed more than ${MAX_RULES_BYTES} bytes`)));
      } else out.push(c);
    });
    let errBytes = 0;
    child.stderr!.on('data', (c: Buffer) => {
      // The first 64 KiB say why; the rest is not kept.
      if (errBytes < 64 << 10) err.push(c);
      errBytes += c.length;
    });
    child.on('error', (e) => finish(() => reject(new Error(`${rpc}: starting ${file}: ${e.message}`))));
    child.on('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString('utf8').trim();
      if (code === 0) finish(() => resolve({ stdout: Buffer.concat(out), stderr }));
      else {
        const why = `${path.basename(file)} ended with ${signal ?? `status ${code}`}${stderr ? `: ${stderr}` : ''}`;
        // iptables-restore fails on the rules it was given (a parse error, an unknown target): the
        // request is what is wrong. iptables-save has no input, so its failure is the guest's.
        finish(() => reject(input !== undefined ? invalidArgument(`${rpc}: ${why}`) : new Error(`${rpc}: ${why}`)));
      }
    });
    // The program may exit before reading everything (a parse error on line 1): EPIPE then.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input);
  });
}

export function iptablesHandlers(deps: IptablesDeps = {}) {
  const dirs = deps.dirs ?? IPTABLES_DIRS;
  const timeoutMs = deps.timeoutMs ?? 30_000;
  return {
    async getIPTables(req: GetIPTablesRequest) {
      const file = find(req.isIpv6 ? 'ip6tables-save' : 'iptables-save', dirs, 'GetIPTables');
      const { stdout } = await run(file, [], undefined, timeoutMs, 'GetIPTables');
      return { data: stdout };
    },
    async setIPTables(req: SetIPTablesRequest) {
      if (req.data.length > MAX_RULES_BYTES) throw invalidArgument(`SetIPTables: ${req.data.length} bytes of rules, more than ${MAX_RULES_BYTES}`);
      const file = find(req.isIpv6 ? 'ip6tables-restore' : 'iptables-restore', dirs, 'SetIPTables');
      // --noflush is not given: the host sends a whole rule set, which replaces what its tables held.
      const { stdout } = await run(file, [], req.data, timeoutMs, 'SetIPTables');
      return { data: stdout };
    },
  };
}
