import type { Libseccomp, LibseccompVersion } from './libseccomp.js';

let real: Libseccomp | undefined;

/** The process-wide real Libseccomp, required on first use: a process without a profile never loads it. */
export function libseccomp(): Libseccomp {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- libseccomp's binding loads only for processes that filter
  real ??= (require('./koffi-libseccomp.js') as typeof import('./koffi-libseccomp.js')).koffiLibseccomp;
  return real;
}

export type SeccompSupport = { ok: true; lib: Libseccomp; version: LibseccompVersion } | { ok: false; why: string };

/**
 * Whether seccomp filters can be enforced here: libseccomp opens and reports a kernel that takes
 * filters (API level 1 or more). The caller keeps the answer: it does not change while the agent runs.
 */
export function probeSeccomp(load: () => Libseccomp = libseccomp): SeccompSupport {
  let lib: Libseccomp;
  let version: LibseccompVersion;
  try {
    lib = load();
    version = lib.version();
  } catch (err) {
    return { ok: false, why: `libseccomp cannot be loaded: ${(err as Error).message}` };
  }
  const v = `${version.major}.${version.minor}.${version.micro}`;
  if (version.api < 1) return { ok: false, why: `libseccomp ${v} finds no seccomp filter support in the kernel (API level ${version.api})` };
  return { ok: true, lib, version };
}
