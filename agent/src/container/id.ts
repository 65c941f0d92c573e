import { invalidArgument } from '../errors.js';

// kata's rule for container and exec ids; also keeps ids usable as path components.
const idPattern = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

/**
 * kata's rule has no length limit, but an id becomes a path component (the bundle directory) and a
 * cgroup directory name behind a short prefix; 250 leaves room for that prefix within NAME_MAX (255),
 * so a long id fails here with the limit named instead of deep inside a syscall with ENAMETOOLONG.
 * Real ids are 64 hex digits (CRI) or a UUID.
 */
export const MAX_ID_LENGTH = 250;

export function checkId(kind: 'container' | 'exec' | 'sandbox', id: string): string {
  if (id.length > MAX_ID_LENGTH) {
    throw invalidArgument(`invalid ${kind} id "${id.slice(0, 32)}…": ${id.length} characters, at most ${MAX_ID_LENGTH}`);
  }
  if (!idPattern.test(id) || id.includes('..')) {
    throw invalidArgument(`invalid ${kind} id "${id}": must match ${idPattern.source} and not contain ".."`);
  }
  return id;
}
