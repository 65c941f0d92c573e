import { MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SHARED, MS_SLAVE } from '../linux/libc.js';

const MS_SYNCHRONOUS = 16;
const MS_MANDLOCK = 64;
const MS_DIRSYNC = 128;
const MS_NOATIME = 1024;
const MS_NODIRATIME = 2048;
const MS_UNBINDABLE = 1 << 17;
const MS_RELATIME = 1 << 21;
const MS_STRICTATIME = 1 << 24;

// [flag, set?]: "ro" sets MS_RDONLY, "rw" clears it, and so on, as mount(8) reads them.
const flagOptions: Record<string, [number, boolean]> = {
  ro: [MS_RDONLY, true],
  rw: [MS_RDONLY, false],
  nosuid: [MS_NOSUID, true],
  suid: [MS_NOSUID, false],
  nodev: [MS_NODEV, true],
  dev: [MS_NODEV, false],
  noexec: [MS_NOEXEC, true],
  exec: [MS_NOEXEC, false],
  sync: [MS_SYNCHRONOUS, true],
  async: [MS_SYNCHRONOUS, false],
  dirsync: [MS_DIRSYNC, true],
  mand: [MS_MANDLOCK, true],
  nomand: [MS_MANDLOCK, false],
  noatime: [MS_NOATIME, true],
  atime: [MS_NOATIME, false],
  nodiratime: [MS_NODIRATIME, true],
  diratime: [MS_NODIRATIME, false],
  relatime: [MS_RELATIME, true],
  norelatime: [MS_RELATIME, false],
  strictatime: [MS_STRICTATIME, true],
  nostrictatime: [MS_STRICTATIME, false],
  bind: [MS_BIND, true],
  rbind: [MS_BIND | MS_REC, true],
  remount: [MS_REMOUNT, true],
  defaults: [0, true],
};

const propagationOptions: Record<string, number> = {
  private: MS_PRIVATE,
  rprivate: MS_PRIVATE | MS_REC,
  shared: MS_SHARED,
  rshared: MS_SHARED | MS_REC,
  slave: MS_SLAVE,
  rslave: MS_SLAVE | MS_REC,
  unbindable: MS_UNBINDABLE,
  runbindable: MS_UNBINDABLE | MS_REC,
};

export interface ParsedOptions {
  flags: number;
  propagation: number;
  /** Options the filesystem itself reads (mode=755, size=64m, newinstance...). */
  data: string;
}

/** Splits OCI mount options into mount(2) flags, a propagation change and the fs data string. */
export function parseMountOptions(options: readonly string[]): ParsedOptions {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = flagOptions[o];
    if (f) flags = f[1] ? flags | f[0] : flags & ~f[0];
    else if (propagationOptions[o] !== undefined) propagation = propagationOptions[o];
    else if (o !== '') data.push(o);
  }
  return { flags, propagation, data: data.join(',') };
}

/** rootfsPropagation of an OCI spec → flags for "/"; private by default as runc does. */
export function rootPropagation(value: string): number {
  if (value === '') return MS_PRIVATE | MS_REC;
  const p = propagationOptions[value];
  if (p === undefined) throw new Error(`rootfsPropagation "${value}" is not one of ${Object.keys(propagationOptions).join(', ')}`);
  return p | MS_REC;
}
