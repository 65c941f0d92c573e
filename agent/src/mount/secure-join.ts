import fs from 'node:fs';
import path from 'node:path';

export class PathEscapeError extends Error {
  override name = 'PathEscapeError';
}

const MAX_LINKS = 40;

/**
 * Resolves `unsafe` inside `root` the way the container will see it: symlinks are followed with
 * absolute targets taken relative to `root`. Unlike a chroot lookup, a ".." that would climb above
 * the root is refused rather than clamped, so a spec that tries to escape the rootfs fails loudly.
 * Components that do not exist yet are kept as they are (the helper creates them).
 * Returns the host path.
 */
export function secureJoin(root: string, unsafe: string): string {
  const pending = unsafe.split('/').filter((c) => c !== '' && c !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      if (resolved.length === 0) throw new PathEscapeError(`path "${unsafe}" escapes the container root ${root} through ".."`);
      resolved.pop();
      continue;
    }
    const host = path.join(root, ...resolved, part);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(host);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new PathEscapeError(`path "${unsafe}" has too many symlinks under ${root}`);
      const target = fs.readlinkSync(host);
      if (target.startsWith('/')) {
        // An absolute link must itself stay inside; "/.." style tricks are caught by the ".." rule.
        resolved.length = 0;
      }
      const targetParts = target.split('/').filter((c) => c !== '' && c !== '.');
      // A link whose ".." would climb above the root is an escape, whatever it was reached through.
      let depth = resolved.length;
      for (const c of targetParts) {
        if (c === '..') {
          if (--depth < 0)
            throw new PathEscapeError(
              `path "${unsafe}" escapes the container root ${root} through the symlink ${path.join('/', ...resolved, part)} -> ${target}`,
            );
        } else depth++;
      }
      pending.unshift(...targetParts);
      continue;
    }
    resolved.push(part);
  }
  return path.join(root, ...resolved);
}
