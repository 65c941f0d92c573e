// An in-memory StorageFs for unit tests: a tree of directories, files and symlinks with owners and
// modes, so storage code that chowns, chmods and copies runs without root and without a real /run.
// Every change is recorded in order (`changes`), and `fail(op, path, code)` makes one operation on one
// path throw the error node would (Error with the errno name as `code`).
import path from 'node:path';
import type { FileInfo, FsUsage, StorageFs } from '../../agent/src/storage/storage-fs.js';

type Node =
  | { kind: 'dir'; mode: number; uid: number; gid: number; ino: number; mtimeMs: number; children: Map<string, Node> }
  | { kind: 'file'; mode: number; uid: number; gid: number; ino: number; mtimeMs: number; data: Buffer }
  | { kind: 'symlink'; mode: number; uid: number; gid: number; ino: number; mtimeMs: number; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const UMASK = 0o022;

function errno(code: string, op: string, p: string): Error {
  return Object.assign(new Error(`${code}: ${op} '${p}'`), { code });
}

export class MemoryFs implements StorageFs {
  readonly changes: string[] = [];
  private readonly root: Node;
  private nextIno = 2;
  private clock = 1_000;
  private readonly failures = new Map<string, string>();
  usage: FsUsage = { bsize: 4096, blocks: 1000, bfree: 600, bavail: 500, files: 100, ffree: 90 };

  constructor() {
    this.root = { kind: 'dir', mode: 0o755, uid: 0, gid: 0, ino: 1, mtimeMs: 0, children: new Map() };
  }

  /** Makes `op` on `p` throw an Error with `code` (e.g. fail('chown', '/v', 'EPERM')). */
  fail(op: keyof StorageFs, p: string, code: string): this {
    this.failures.set(`${op} ${p}`, code);
    return this;
  }

  // --- test set-up: missing parents are made 0755 root; no change is recorded ---
  private parents(p: string): void {
    const parts = path.posix.resolve('/', p).split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const sub = '/' + parts.slice(0, i).join('/');
      if (!this.find(sub, true)) this.make(sub, { kind: 'dir', mode: 0o755, uid: 0, gid: 0, children: new Map() });
    }
  }
  addDir(p: string, mode = 0o755, uid = 0, gid = 0): void {
    this.parents(p);
    this.make(p, { kind: 'dir', mode, uid, gid, children: new Map() });
  }
  addFile(p: string, content: string, mode = 0o644, uid = 0, gid = 0): void {
    this.parents(p);
    this.make(p, { kind: 'file', mode, uid, gid, data: Buffer.from(content) });
  }
  addSymlink(p: string, target: string, uid = 0, gid = 0): void {
    this.parents(p);
    this.make(p, { kind: 'symlink', mode: 0o777, uid, gid, target });
  }
  /** The file's content (following links), or undefined when there is none. */
  content(p: string): string | undefined {
    const n = this.find(p, true);
    return n?.kind === 'file' ? n.data.toString() : undefined;
  }

  private make(p: string, n: Omit<Extract<Node, { kind: string }>, 'ino' | 'mtimeMs'> & Record<string, unknown>): void {
    const { dir, name } = this.parentOf(p, 'make');
    dir.children.set(name, { ...n, ino: this.nextIno++, mtimeMs: this.clock++ } as Node);
  }

  private check(op: keyof StorageFs, p: string): void {
    const code = this.failures.get(`${op} ${p}`);
    if (code) throw errno(code, op, p);
  }

  /** The node at `p`; symlinks followed in every component, the last one only when `follow`. */
  private find(p: string, follow: boolean, depth = 0): Node | undefined {
    if (depth > 40) throw errno('ELOOP', 'lookup', p);
    const parts = path.posix.resolve('/', p).split('/').filter(Boolean);
    let cur: Node = this.root;
    let at = '/';
    for (let i = 0; i < parts.length; i++) {
      if (cur.kind !== 'dir') throw errno('ENOTDIR', 'lookup', p);
      const next = cur.children.get(parts[i]);
      if (!next) return undefined;
      const last = i === parts.length - 1;
      if (next.kind === 'symlink' && (!last || follow)) {
        const rest = parts.slice(i + 1).join('/');
        const target = path.posix.resolve(at, next.target);
        return this.find(rest ? `${target}/${rest}` : target, follow, depth + 1);
      }
      cur = next;
      at = path.posix.join(at, parts[i]);
    }
    return cur;
  }

  private must(op: string, p: string, follow: boolean): Node {
    const n = this.find(p, follow);
    if (!n) throw errno('ENOENT', op, p);
    return n;
  }

  private parentOf(p: string, op: string): { dir: Extract<Node, { kind: 'dir' }>; name: string } {
    const abs = path.posix.resolve('/', p);
    const dir = this.must(op, path.posix.dirname(abs), true);
    if (dir.kind !== 'dir') throw errno('ENOTDIR', op, p);
    return { dir, name: path.posix.basename(abs) };
  }

  private info(n: Node): FileInfo {
    const type = n.kind === 'dir' ? S_IFDIR : n.kind === 'file' ? S_IFREG : S_IFLNK;
    const size = n.kind === 'file' ? n.data.length : n.kind === 'symlink' ? n.target.length : 4096;
    return {
      mode: type | n.mode,
      uid: n.uid,
      gid: n.gid,
      size,
      ino: n.ino,
      mtimeMs: n.mtimeMs,
      isDirectory: () => n.kind === 'dir',
      isSymbolicLink: () => n.kind === 'symlink',
    };
  }

  private record(change: string): void {
    this.changes.push(change);
  }

  stat(p: string): FileInfo {
    this.check('stat', p);
    return this.info(this.must('stat', p, true));
  }
  lstat(p: string): FileInfo {
    this.check('lstat', p);
    return this.info(this.must('lstat', p, false));
  }
  exists(p: string): boolean {
    try {
      return this.find(p, true) !== undefined;
    } catch {
      return false;
    }
  }
  mkdirs(p: string, mode = 0o777): void {
    this.check('mkdirs', p);
    const parts = path.posix.resolve('/', p).split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const sub = '/' + parts.slice(0, i).join('/');
      const n = this.find(sub, true);
      if (n && n.kind !== 'dir') throw errno('ENOTDIR', 'mkdir', sub);
      if (n) continue;
      this.make(sub, { kind: 'dir', mode: mode & ~UMASK, uid: 0, gid: 0, children: new Map() });
      this.record(`mkdir ${sub} ${(mode & ~UMASK).toString(8)}`);
    }
  }
  rmdir(p: string): void {
    this.check('rmdir', p);
    const n = this.must('rmdir', p, false);
    if (n.kind !== 'dir') throw errno('ENOTDIR', 'rmdir', p);
    if (n.children.size > 0) throw errno('ENOTEMPTY', 'rmdir', p);
    const { dir, name } = this.parentOf(p, 'rmdir');
    dir.children.delete(name);
    this.record(`rmdir ${p}`);
  }
  remove(p: string): void {
    this.check('remove', p);
    if (!this.find(p, false)) return;
    const { dir, name } = this.parentOf(p, 'rm');
    dir.children.delete(name);
    this.record(`rm ${p}`);
  }
  chown(p: string, uid: number, gid: number): void {
    this.check('chown', p);
    this.own(this.must('chown', p, true), uid, gid);
    this.record(`chown ${p} ${uid}:${gid}`);
  }
  lchown(p: string, uid: number, gid: number): void {
    this.check('lchown', p);
    this.own(this.must('lchown', p, false), uid, gid);
    this.record(`lchown ${p} ${uid}:${gid}`);
  }
  private own(n: Node, uid: number, gid: number): void {
    if (uid !== -1) n.uid = uid;
    if (gid !== -1) n.gid = gid;
  }
  chmod(p: string, mode: number): void {
    this.check('chmod', p);
    this.must('chmod', p, true).mode = mode & 0o7777;
    this.record(`chmod ${p} ${(mode & 0o7777).toString(8)}`);
  }
  readdir(p: string): string[] {
    this.check('readdir', p);
    const n = this.must('readdir', p, true);
    if (n.kind !== 'dir') throw errno('ENOTDIR', 'readdir', p);
    return [...n.children.keys()];
  }
  readlink(p: string): string {
    const n = this.must('readlink', p, false);
    if (n.kind !== 'symlink') throw errno('EINVAL', 'readlink', p);
    return n.target;
  }
  symlink(target: string, p: string): void {
    this.check('symlink', p);
    if (this.find(p, false)) throw errno('EEXIST', 'symlink', p);
    this.make(p, { kind: 'symlink', mode: 0o777, uid: 0, gid: 0, target });
    this.record(`symlink ${p} -> ${target}`);
  }
  copyFile(from: string, to: string): void {
    this.check('copyFile', to);
    const src = this.must('copyfile', from, true);
    if (src.kind !== 'file') throw errno('EISDIR', 'copyfile', from);
    // Like copy_file_range into a new file: content and mode bits, owner is the caller (root).
    this.make(to, { kind: 'file', mode: src.mode & ~UMASK, uid: 0, gid: 0, data: Buffer.from(src.data) });
    this.record(`copy ${from} ${to}`);
  }
  writeFile(p: string, data: string | Uint8Array): void {
    this.check('writeFile', p);
    const n = this.find(p, true);
    if (n?.kind === 'file') Object.assign(n, { data: Buffer.from(data), mtimeMs: this.clock++ });
    else if (n) throw errno('EISDIR', 'open', p);
    else this.make(p, { kind: 'file', mode: 0o644, uid: 0, gid: 0, data: Buffer.from(data) });
    this.record(`write ${p} ${Buffer.byteLength(data)}`);
  }
  rename(from: string, to: string): void {
    this.check('rename', to);
    const a = this.parentOf(from, 'rename');
    const n = a.dir.children.get(a.name);
    if (!n) throw errno('ENOENT', 'rename', from);
    const b = this.parentOf(to, 'rename');
    const old = b.dir.children.get(b.name);
    if (old?.kind === 'dir' && n.kind !== 'dir') throw errno('EISDIR', 'rename', to);
    a.dir.children.delete(a.name);
    b.dir.children.set(b.name, n);
    this.record(`rename ${from} ${to}`);
  }
  readText(p: string): string {
    const n = this.must('open', p, true);
    if (n.kind !== 'file') throw errno('EISDIR', 'read', p);
    return n.data.toString();
  }
  statfs(p: string): FsUsage {
    this.must('statfs', p, true);
    return this.usage;
  }
  writeAt(): void {
    throw new Error('MemoryFs has no file descriptors: CopyFile is tested on real files');
  }
  fchown(): void {
    throw new Error('MemoryFs has no file descriptors');
  }
  fchmod(): void {
    throw new Error('MemoryFs has no file descriptors');
  }

  /** Owner and mode as "uid:gid mode" (lstat), for assertions. */
  owner(p: string): string {
    const n = this.must('lstat', p, false);
    return `${n.uid}:${n.gid} ${n.mode.toString(8)}`;
  }
}
