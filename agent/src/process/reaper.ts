// Reaps orphans re-parented to us (PID 1 or a child subreaper) without stealing Node's own children.
// waitpid(-1) would also collect libuv's children, so instead the reaper lists our children from
// /proc/self/task/*/children, skips those Node owns (children.ts) and waits for the rest one by one
// with WNOHANG (measured: 31 orphans reaped, 0 zombies, every 'exit' event kept — docs/facts/platform.md).
import fs from 'node:fs';
import path from 'node:path';
import { WNOHANG, type Libc } from '../linux/libc.js';
import { isOwnedChild } from './children.js';

export interface ReapedChild {
  pid: number;
  /** Exit code, or 128 + signal number for a killed process (the convention kata reports). */
  code: number;
}

/** Decodes a raw wait status the way WIFEXITED/WEXITSTATUS/WTERMSIG do. */
export function exitCode(status: number): number {
  const sig = status & 0x7f;
  return sig === 0 ? (status >> 8) & 0xff : 128 + sig;
}

/** Children of every thread of this process (re-parented orphans land on whichever thread). */
export function listChildren(procSelf = '/proc/self'): number[] {
  const pids = new Set<number>();
  let tasks: string[];
  try {
    tasks = fs.readdirSync(path.join(procSelf, 'task'));
  } catch {
    return [];
  }
  for (const task of tasks) {
    let text: string;
    try {
      text = fs.readFileSync(path.join(procSelf, 'task', task, 'children'), 'utf8');
    } catch {
      continue; // the thread ended between readdir and read
    }
    for (const word of text.split(/\s+/)) if (word) pids.add(Number(word));
  }
  return [...pids];
}

export interface ReaperOptions {
  libc: Pick<Libc, 'waitpid'>;
  listChildren?: () => number[];
  isOwned?: (pid: number) => boolean;
  onReaped?: (child: ReapedChild) => void;
}

export class OrphanReaper {
  private readonly list: () => number[];
  private readonly owned: (pid: number) => boolean;
  private readonly handler = () => this.reap();

  constructor(private readonly opts: ReaperOptions) {
    this.list = opts.listChildren ?? (() => listChildren());
    this.owned = opts.isOwned ?? isOwnedChild;
  }

  /** One pass: waits for every exited child that Node does not own. Returns what was reaped. */
  reap(): ReapedChild[] {
    const reaped: ReapedChild[] = [];
    for (const pid of this.list()) {
      if (this.owned(pid)) continue;
      let r;
      try {
        r = this.opts.libc.waitpid(pid, WNOHANG);
      } catch (err) {
        // ECHILD: someone else (libuv) reaped it between the listing and now.
        if ((err as { code?: string }).code === 'ECHILD') continue;
        throw err;
      }
      if (r.pid === pid) {
        const child = { pid, code: exitCode(r.status) };
        reaped.push(child);
        this.opts.onReaped?.(child);
      }
    }
    return reaped;
  }

  /**
   * Reaps on every SIGCHLD, and once now for orphans that arrived before the handler existed, unless
   * the caller knows there can be none (PID 1 at boot: ~15 ms of /proc reads under TCG).
   */
  start(pastOrphans = true): void {
    process.on('SIGCHLD', this.handler);
    if (pastOrphans) this.reap();
  }

  stop(): void {
    process.off('SIGCHLD', this.handler);
  }
}
