import type { Libc } from './libc.js';

let real: Libc | undefined;

/** The process-wide real Libc, loaded on first use so commands that never need FFI never load koffi. */
export function libc(): Libc {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- koffi loads only for commands that use FFI
  real ??= (require('./koffi-libc.js') as typeof import('./koffi-libc.js')).koffiLibc;
  return real;
}
