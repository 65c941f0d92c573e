import { invalidArgument } from '../rpc/status.js';

// kata's rule for container and exec ids; also keeps ids usable as path components.
const idPattern = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function checkId(kind: 'container' | 'exec' | 'sandbox', id: string): string {
  if (!idPattern.test(id) || id.includes('..')) {
    throw invalidArgument(`invalid ${kind} id "${id}": must match ${idPattern.source} and not contain ".."`);
  }
  return id;
}
