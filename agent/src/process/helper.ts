// The agent's side of a container-init helper: spawn it in the right pid namespace with the
// process's stdio, give it its plan, and turn its status lines into results.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { spawnOwned } from './spawn.js';
import { PLAN_FD, START_FD, STATUS_FD, TERMINAL_FD, type HelperStatus, type InitPlan } from '../container/init/plan.js';
import { AF_UNIX, MSG_CMSG_CLOEXEC, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_SEQPACKET, type Libc } from '../linux/libc.js';
import { spawnInPidNamespace, type PidNamespaceChoice } from '../namespace/pid-namespace.js';
import { errorOfKind } from '../errors.js';
import type { ProcessIO } from '../io/process-io.js';

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

  private constructor(
    readonly child: ChildProcess,
    private readonly libc: Libc,
    /** The agent's end of the helper's TERMINAL_FD socket; -1 once closed. */
    private terminalChannel: number,
  ) {
    if (child.pid === undefined) {
      this.closeTerminalChannel();
      throw new Error('cannot start the container-init helper');
    }
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.closeTerminalChannel();
        // Node closes a child's extra pipes only once they end: the plan and start pipes are ours to
        // write, and a helper that died before either was used would keep their fds open for good.
        // (The status pipe ends by itself at EOF, after its last line has been read.)
        for (const fd of [PLAN_FD, START_FD]) this.pipe(fd).destroy();
        resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0));
      });
    });
    const status = this.pipe(STATUS_FD) as Readable;
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
          status = { state: 'error', message: `unreadable status from the container-init helper: ${line.slice(0, 200)}` };
        }
        this.push(status);
        this.buf = this.buf.slice(nl + 1);
      }
    });
    status.on('end', () => this.push(null));
    status.on('error', () => this.push(null));
    for (const i of [PLAN_FD, START_FD]) this.pipe(i).on('error', () => undefined);
  }

  /**
   * `stdio` null: /dev/null for now; the real pipes come with the plan (a pooled helper), and a
   * terminal is opened by the helper itself. Every helper gets a terminal socket at TERMINAL_FD, since
   * a pooled one is spawned before anyone knows whether its process has a terminal.
   */
  static spawn(libc: Libc, pidns: PidNamespaceChoice, stdio: [number, number, number] | null): Helper {
    const std: (number | 'ignore')[] = stdio ?? ['ignore', 'ignore', 'ignore'];
    // Close-on-exec both: only the helper gets its end, as its fd 6 (spawn's dup2 clears the flag).
    const [mine, theirs] = libc.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    let child: ChildProcess;
    try {
      const fds: (number | 'ignore' | 'pipe')[] = [std[0], std[1], std[2]];
      fds[PLAN_FD] = fds[STATUS_FD] = fds[START_FD] = 'pipe';
      fds[TERMINAL_FD] = theirs;
      child = spawnInPidNamespace(libc, pidns, () => spawnOwned(process.execPath, [helperEntry], { stdio: fds, env: {} }));
    } catch (err) {
      libc.close(mine);
      throw err;
    } finally {
      libc.close(theirs);
    }
    child.on('error', () => undefined);
    return new Helper(child, libc, mine);
  }

  private closeTerminalChannel(): void {
    if (this.terminalChannel < 0) return;
    const fd = this.terminalChannel;
    this.terminalChannel = -1;
    this.libc.close(fd);
  }

  /**
   * The pty master the helper sent before it reported "ready". The message is queued by then (the
   * helper's sendmsg returned before it wrote its status line), so this never waits: a missing one
   * is an error, not a hang.
   */
  private receiveTerminal(what: string): number {
    let fd: number | undefined;
    try {
      fd = this.libc.recvFd(this.terminalChannel, Buffer.alloc(1), MSG_DONTWAIT | MSG_CMSG_CLOEXEC).fd;
    } catch (err) {
      throw new Error(`${what}: receiving the terminal from container-init helper ${this.pid}: ${(err as Error).message}`, { cause: err });
    }
    if (fd === undefined) throw new Error(`${what}: container-init helper ${this.pid} sent no pty master`);
    return fd;
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
    (this.pipe(PLAN_FD) as Writable).end(JSON.stringify(plan));
  }

  /** Waits until node has started in the helper (before it reads its plan). */
  async booted(what: string): Promise<void> {
    const s = await this.next();
    if (s?.state === 'booted') return;
    throw await this.failure(s, what);
  }

  /**
   * Waits for "ready"; throws the helper's own error as a status. A terminal `io` gets the pty master
   * the helper opened inside the container. The terminal socket has no use after this.
   */
  async ready(what: string, io?: Pick<ProcessIO, 'terminal' | 'attachPty'>): Promise<void> {
    const s = await this.next();
    if (s?.state !== 'ready') throw await this.failure(s, what);
    try {
      if (io?.terminal) io.attachPty(this.receiveTerminal(what));
    } finally {
      this.closeTerminalChannel();
    }
  }

  /** Lets an init helper go on to execve, and waits until it did. */
  async start(what: string): Promise<void> {
    (this.pipe(START_FD) as Writable).end(Buffer.from([1]));
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

  /** True once the helper reported an error of its own: that error stands, whatever became of the helper since. */
  reportedError = false;

  /** What a failed rootfs setup made under the rootfs (from the helper's error report). */
  created: { path: string; kind: 'dir' | 'file' }[] = [];

  private async failure(s: HelperStatus | null, what: string): Promise<Error> {
    if (s?.state === 'error') {
      this.reportedError = true;
      this.created = s.created ?? [];
      return errorOfKind(s.kind, `${what}: ${s.message}`);
    }
    const status = await this.exited;
    this.silentExit = true;
    return new Error(`${what}: container-init helper exited with status ${status} before it was ready`);
  }

  /** Closes the start pipe so an init that never started exits on its own. */
  abandon(): void {
    this.pipe(START_FD).destroy();
  }
}
