// watchable-bind storages (kata 3.x: configmaps, secrets, downward API). 9p and virtio-fs carry no
// inotify from the host, so instead of a bind mount that would never show the host's updates, the
// agent copies the source into a tmpfs and compares it every 2 s, copying what changed and deleting
// what went. The copies are the guest's own: the host cannot change a file in place under a reader.
// A source over 16 entries or 1 MiB is not worth copying (kata's limits): it becomes a plain bind
// mount and is no longer compared.
import path from 'node:path';
import type { Storage } from '../../../../protos/gen/agent_pb.js';
import { MNT_DETACH, MS_BIND, MS_NODEV, MS_NOSUID } from '../../linux/libc.js';
import type { DriverEnv, StorageDriver, Undo } from './common.js';
import type { FileInfo, StorageFs } from '../storage-fs.js';

export const WATCHABLE_MAX_ENTRIES = 16;
export const WATCHABLE_MAX_BYTES = 1024 * 1024;

interface Watched {
  source: string;
  target: string;
  containerId: string;
  /** Relative path ('' = the source itself) → what it was when last copied. */
  seen: Map<string, string>;
  /** True once it fell back to a bind mount. */
  bound: boolean;
}

class TooBig extends Error {}

/** The ancestor named "watchable" (kata puts one tmpfs there for all of a pod's watchable storages). */
export function watchableRoot(mountPoint: string): string | undefined {
  const parts = mountPoint.split('/');
  for (let i = parts.length - 2; i > 0; i--) if (parts[i] === 'watchable') return parts.slice(0, i + 1).join('/');
  return undefined;
}

function stamp(st: FileInfo): string {
  return `${st.mode}:${st.ino}:${st.size}:${st.mtimeMs}:${st.uid}:${st.gid}`;
}

/** Every entry of the source in walk order (parents first), or TooBig past kata's limits. */
function walk(fs: StorageFs, source: string): [string, FileInfo][] {
  const out: [string, FileInfo][] = [];
  let bytes = 0;
  const visit = (rel: string) => {
    const st = fs.lstat(rel === '' ? source : path.join(source, rel));
    out.push([rel, st]);
    if (out.length > WATCHABLE_MAX_ENTRIES) throw new TooBig(`more than ${WATCHABLE_MAX_ENTRIES} entries`);
    if (!st.isDirectory()) {
      bytes += st.size;
      if (bytes > WATCHABLE_MAX_BYTES) throw new TooBig(`more than ${WATCHABLE_MAX_BYTES} bytes`);
      return;
    }
    for (const name of fs.readdir(rel === '' ? source : path.join(source, rel)).sort()) visit(rel === '' ? name : path.join(rel, name));
  };
  visit('');
  return out;
}

function copyEntry(fs: StorageFs, w: Watched, rel: string, st: FileInfo): void {
  const from = rel === '' ? w.source : path.join(w.source, rel);
  const to = rel === '' ? w.target : path.join(w.target, rel);
  if (st.isDirectory()) {
    fs.mkdirs(to);
    fs.chmod(to, st.mode & 0o7777);
    fs.chown(to, st.uid, st.gid);
    return;
  }
  fs.mkdirs(path.dirname(to));
  // Written beside and renamed over, so a reader sees the old file or the new one, never half.
  const tmp = path.join(path.dirname(to), `.${path.basename(to)}.kata-copy`);
  fs.remove(tmp);
  if (st.isSymbolicLink()) {
    fs.symlink(fs.readlink(from), tmp);
    fs.lchown(tmp, st.uid, st.gid);
  } else {
    fs.copyFile(from, tmp);
    fs.chmod(tmp, st.mode & 0o7777);
    fs.chown(tmp, st.uid, st.gid);
  }
  if (fs.exists(to) && fs.lstat(to).isDirectory()) fs.remove(to);
  fs.rename(tmp, to);
}

export class WatchableBinds {
  private readonly watched = new Set<Watched>();
  /** Watchable root → how many storages use its tmpfs. */
  private readonly roots = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly env: DriverEnv,
    private readonly intervalMs: number,
  ) {}

  add(s: Storage, containerId: string): Undo {
    const root = watchableRoot(s.mountPoint);
    if (root) this.holdRoot(root);
    const w: Watched = { source: s.source, target: s.mountPoint, containerId, seen: new Map(), bound: false };
    try {
      if (this.env.fs.stat(w.source).isDirectory()) this.env.fs.mkdirs(w.target);
      this.sync(w);
    } catch (err) {
      this.drop(w, root);
      throw new Error(`storage watchable-bind ${w.source} → ${w.target}: ${(err as Error).message}`, { cause: err });
    }
    this.watched.add(w);
    this.timer ??= setInterval(() => this.tick(), this.intervalMs).unref();
    return () => this.drop(w, root);
  }

  /** Compares every watched source with its copy now (the poller's step; tests call it directly). */
  tick(): void {
    for (const w of this.watched) {
      if (w.bound) continue;
      try {
        this.sync(w);
      } catch (err) {
        this.env.log.warn({ container_id: w.containerId, source: w.source, err: (err as Error).message }, 'watchable-bind copy');
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private sync(w: Watched): void {
    let entries: [string, FileInfo][];
    try {
      entries = walk(this.env.fs, w.source);
    } catch (err) {
      if (!(err instanceof TooBig)) throw err;
      this.bindInstead(w, err.message);
      return;
    }
    const now = new Map<string, string>();
    for (const [rel, st] of entries) {
      const s = stamp(st);
      now.set(rel, s);
      if (w.seen.get(rel) !== s) copyEntry(this.env.fs, w, rel, st);
    }
    // Deleted after the copies, so a symlink swapped to a new directory never points at nothing.
    for (const rel of w.seen.keys()) {
      if (!now.has(rel) && rel !== '') this.env.fs.remove(path.join(w.target, rel));
    }
    w.seen = now;
  }

  private bindInstead(w: Watched, why: string): void {
    if (!this.env.fs.exists(w.target)) {
      if (this.env.fs.stat(w.source).isDirectory()) this.env.fs.mkdirs(w.target);
      else this.env.fs.writeFile(w.target, '');
    }
    this.env.libc.mount(w.source, w.target, null, MS_BIND, null);
    w.bound = true;
    this.env.log.info({ container_id: w.containerId, source: w.source, why }, 'watchable-bind source too large to copy: bind-mounted instead');
  }

  private holdRoot(root: string): void {
    const n = this.roots.get(root) ?? 0;
    if (n === 0) {
      this.env.fs.mkdirs(root);
      // The shared directory may be read-only (virtio-fs) and is the host's: the copies live in guest memory.
      this.env.libc.mount('tmpfs', root, 'tmpfs', MS_NOSUID | MS_NODEV, null);
    }
    this.roots.set(root, n + 1);
  }

  private drop(w: Watched, root: string | undefined): void {
    this.watched.delete(w);
    if (this.watched.size === 0) this.close();
    try {
      if (w.bound) this.env.libc.umount2(w.target, MNT_DETACH);
      this.env.fs.remove(w.target);
    } catch (err) {
      this.env.log.warn({ target: w.target, err: (err as Error).message }, 'watchable-bind cleanup');
    }
    if (!root) return;
    const n = (this.roots.get(root) ?? 1) - 1;
    if (n > 0) {
      this.roots.set(root, n);
      return;
    }
    this.roots.delete(root);
    try {
      this.env.libc.umount2(root, MNT_DETACH);
    } catch (err) {
      this.env.log.warn({ root, err: (err as Error).message }, 'watchable tmpfs unmount');
    }
  }
}

/** One WatchableBinds per registry: its poller compares all the pod's watchable storages. */
export function watchableBindDriver(env: DriverEnv): StorageDriver {
  const binds = new WatchableBinds(env, env.watchIntervalMs);
  return { names: ['watchable-bind'], setUp: (s, { containerId }) => binds.add(s, containerId), poll: () => binds.tick(), close: () => binds.close() };
}
