// The agent's side of a container-init helper: spawn it in the right pid namespace with the
// process's stdio, give it its plan, and turn its status lines into results.
import child_process, { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { HelperStatus, InitPlan } from '../container/init/plan.js';
import type { Libc } from '../linux/libc.js';
import { spawnInPidNamespace, type PidNamespaceChoice } from '../namespace/pid-namespace.js';
import { Code, RpcError } from '../rpc/status.js';

/**
 * The helper program: container-init.js beside the bundle in a guest image (rootfs-builder/bundle.mjs,
 * where __dirname is the bundle's folder), else the compiled entry in dist/.
 */
const bundledHelper = path.join(__dirname, 'container-init.js');
export const helperEntry = fs.existsSync(bundledHelper) ? bundledHelper : path.join(__dirname, '..', 'container', 'init', 'main.js');

export class Helper {
  readonly pid: number;
  /** Resolves with the exit status (code, or 128+signal) once the process (helper or container program) exits. */
  readonly exited: Promise<number>;
  private readonly lines: (HelperStatus | null)[] = [];
  private readonly waiters: ((s: HelperStatus | null) => void)[] = [];
  private buf = '';

  private constructor(readonly child: ChildProcess) {
    if (child.pid === undefined) throw new RpcError(Code.INTERNAL, 'cannot start the container-init helper');
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
    });
    const status = this.pipe(4) as Readable;
    status.setEncoding('utf8');
    status.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        let status: HelperStatus;
        try {
          status = JSON.parse(line) as HelperStatus;
        } catch {
          status = { state: 'error', code: 'INTERNAL', message: `unreadable status from the container-init helper: ${line.slice(0, 200)}` };
        }
        this.push(status);
        this.buf = this.buf.slice(nl + 1);
      }
    });
    status.on('end', () => this.push(null));
    status.on('error', () => this.push(null));
    for (const i of [3, 5]) this.pipe(i).on('error', () => undefined);
  }

  /** `stdio` null: /dev/null for now, the real stdio comes with the plan (a pooled helper). */
  static spawn(libc: Libc, pidns: PidNamespaceChoice, stdio: [number, number, number] | null): Helper {
    const std: (number | 'ignore')[] = stdio ?? ['ignore', 'ignore', 'ignore'];
    const child = spawnInPidNamespace(libc, pidns, () =>
      child_process.spawn(process.execPath, [helperEntry], {
        stdio: [std[0], std[1], std[2], 'pipe', 'pipe', 'pipe'],
        env: {},
      }),
    );
    child.on('error', () => undefined);
    return new Helper(child);
  }

  private pipe(i: number): Readable | Writable {
    return (this.child.stdio as unknown as (Readable | Writable)[])[i];
  }

  private push(s: HelperStatus | null): void {
    const w = this.waiters.shift();
    if (w) w(s);
    else this.lines.push(s);
  }

  /** The next status line; null once the status pipe closed (= execve succeeded, or the helper died). */
  next(): Promise<HelperStatus | null> {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift()!);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Whether the process still runs (a pooled helper may have been killed while idle). */
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  sendPlan(plan: InitPlan): void {
    (this.pipe(3) as Writable).end(JSON.stringify(plan));
  }

  /** Waits until node has started in the helper (before it reads its plan). */
  async booted(what: string): Promise<void> {
    const s = await this.next();
    if (s?.state === 'booted') return;
    throw await this.failure(s, what);
  }

  /** Waits for "ready"; throws the helper's own error as a status. */
  async ready(what: string): Promise<void> {
    const s = await this.next();
    if (s?.state === 'ready') return;
    throw await this.failure(s, what);
  }

  /** Lets an init helper go on to execve, and waits until it did. */
  async start(what: string): Promise<void> {
    (this.pipe(5) as Writable).end(Buffer.from([1]));
    await this.execed(what);
  }

  async execed(what: string): Promise<void> {
    const s = await this.next();
    // The helper writes an error line before it gives up; a clean EOF means the status pipe was closed
    // by execve (close-on-exec), even if the program has exited again since.
    if (s === null) return;
    throw await this.failure(s, what);
  }

  /** True once the helper ended without reporting an error of its own (killed, or it crashed). */
  get diedWithoutReport(): boolean {
    return this.silentExit;
  }

  private silentExit = false;

  private async failure(s: HelperStatus | null, what: string): Promise<RpcError> {
    if (s?.state === 'error') return new RpcError(Code[s.code], `${what}: ${s.message}`);
    const status = await this.exited;
    this.silentExit = true;
    return new RpcError(Code.INTERNAL, `${what}: container-init helper exited with status ${status} before it was ready`);
  }

  /** Closes the start pipe so an init that never started exits on its own. */
  abandon(): void {
    this.pipe(5).destroy();
  }
}
