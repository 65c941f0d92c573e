// The bundle directory <state root>/<container id>: config.json and "rootfs", the mount point the
// helper binds the container's root to before pivot_root. It is never removed recursively: the root
// may itself live at <bundle>/rootfs (a relative Root.Path), and with shared propagation the helper's
// bind can show up here too; a recursive delete would then erase the container's files.
import fs from 'node:fs';
import path from 'node:path';
import { toJson } from '@bufbuild/protobuf';
import { SpecSchema, type Spec } from '../../../protos/gen/oci_pb.js';
import type { Libc } from '../linux/libc.js';
import { MNT_DETACH } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';

export function bundleRootfs(bundle: string): string {
  return path.join(bundle, 'rootfs');
}

export function writeBundle(bundle: string, spec: Spec): void {
  fs.mkdirSync(bundle, { recursive: true });
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(toJson(SpecSchema, spec), null, 1));
}

export function removeBundle(libc: Libc, log: Logger, bundle: string, rootfs: string): void {
  const mnt = bundleRootfs(bundle);
  if (rootfs !== mnt) {
    try {
      libc.umount2(mnt, MNT_DETACH);
    } catch {
      // Not mounted in our namespace (the usual case: the bind lived in the helper's own).
    }
    try {
      fs.rmdirSync(mnt);
    } catch {
      // Absent, or not empty: then it is not ours to delete.
    }
  }
  fs.rmSync(path.join(bundle, 'config.json'), { force: true });
  try {
    fs.rmdirSync(bundle);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ bundle, err: (err as Error).message }, 'bundle directory not empty; left in place');
  }
}
