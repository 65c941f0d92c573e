// File access for cgroup trees. Every cgroup setting is a small text file; these helpers make a
// failed read or write say which file and value it was, with the errno name kept as `code` so
// toRpcError maps it like any other fs error. The fs operations sit behind `CgroupFs` because a real
// cgroupfs differs from a plain directory in one way tests must emulate: rmdir of a group succeeds
// while the kernel's own files are still listed in it.
import fs from 'node:fs';

export interface CgroupFs {
  readFile(path: string): string;
  writeFile(path: string, value: string): void;
  exists(path: string): boolean;
  mkdir(path: string): void;
  rmdir(path: string): void;
  readdir(path: string): string[];
  isSymlink(path: string): boolean;
  /** inotify on one file (the kernel signals cgroup event files this way); returns the stop. */
  watch(path: string, onChange: () => void, onError: (err: Error) => void): () => void;
}

export const realCgroupFs: CgroupFs = {
  readFile: (p) => fs.readFileSync(p, 'utf8'),
  // One write() per value: cgroup files parse each write on its own, and a stream could split it.
  writeFile: (p, v) => fs.writeFileSync(p, v),
  exists: (p) => fs.existsSync(p),
  mkdir: (p) => fs.mkdirSync(p),
  rmdir: (p) => fs.rmdirSync(p),
  readdir: (p) => fs.readdirSync(p),
  isSymlink: (p) => fs.lstatSync(p).isSymbolicLink(),
  watch: (p, onChange, onError) => {
    const w = fs.watch(p, { persistent: false });
    w.on('change', onChange);
    w.on('error', onError);
    return () => w.close();
  },
};

/** An fs failure on a cgroup file, naming the operation, the file and (for writes) the value. */
export class CgroupFileError extends Error {
  readonly code: string;
  constructor(op: string, path: string, cause: unknown, value?: string) {
    const errno = (cause as NodeJS.ErrnoException)?.code ?? 'EIO';
    super(`${op} ${value !== undefined ? `"${value}" to ` : ''}${path}: ${errno}`);
    this.name = 'CgroupFileError';
    this.code = errno;
  }
}

export class CgroupFiles {
  constructor(readonly fs: CgroupFs = realCgroupFs) {}

  read(path: string): string {
    try {
      return this.fs.readFile(path);
    } catch (err) {
      throw new CgroupFileError('read', path, err);
    }
  }

  /** The file's content without the trailing newline, or undefined when the file does not exist. */
  readOptional(path: string): string | undefined {
    if (!this.fs.exists(path)) return undefined;
    return this.read(path).trim();
  }

  write(path: string, value: string): void {
    try {
      this.fs.writeFile(path, value);
    } catch (err) {
      throw new CgroupFileError('write', path, err, value);
    }
  }

  exists(path: string): boolean {
    return this.fs.exists(path);
  }
}

/** "max" (no limit) as undefined, any other value as a number; absent files also give undefined. */
export function parseLimit(text: string | undefined): bigint | undefined {
  if (text === undefined || text === '' || text === 'max') return undefined;
  return BigInt(text);
}

/** Lines of "key value" (memory.stat, cpu.stat, memory.events) as a map; other lines are skipped. */
export function parseFlatKeyed(text: string | undefined): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\S+)\s+(\d+)$/.exec(line.trim());
    if (m) out.set(m[1], BigInt(m[2]));
  }
  return out;
}

/** Whitespace-separated numbers (cpuacct.usage_percpu). */
export function parseNumberList(text: string | undefined): bigint[] {
  return (text ?? '')
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map((s) => BigInt(s));
}

/** The pids of a cgroup.procs file. */
export function parsePids(text: string): number[] {
  return text
    .split('\n')
    .filter((s) => s.trim() !== '')
    .map((s) => Number(s));
}
