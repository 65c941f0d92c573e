// Sandbox and container storages. Only the drivers that need no device or host share are here yet:
// "ephemeral" (a tmpfs, e.g. the pod's /dev/shm) and "local" (a directory in the guest).
import fs from 'node:fs';
import type { Storage } from '../../../protos/gen/agent_pb.js';
import type { Libc } from '../linux/libc.js';
import { MNT_DETACH } from '../linux/libc.js';
import { parseMountOptions } from '../mount/options.js';
import { invalidArgument } from '../rpc/status.js';

export const storageDrivers = ['ephemeral', 'local'];

export interface MountedStorage {
  mountPoint: string;
  /** Undoes the mount/directory; never throws. */
  release(): void;
}

function checkStorage(s: Storage): void {
  if (!storageDrivers.includes(s.driver)) throw invalidArgument(`storage driver ${s.driver} not supported`);
  if (!s.mountPoint.startsWith('/') || s.mountPoint.split('/').includes('..')) {
    throw invalidArgument(`storage mount point "${s.mountPoint}" must be an absolute path without ".."`);
  }
}

function mountOne(libc: Libc, s: Storage): MountedStorage {
  const existed = fs.existsSync(s.mountPoint);
  fs.mkdirSync(s.mountPoint, { recursive: true });
  const removeDir = () => {
    if (!existed) fs.rmSync(s.mountPoint, { recursive: true, force: true });
  };
  if (s.driver === 'local') {
    const mode = s.options.find((o) => o.startsWith('mode='));
    fs.chmodSync(s.mountPoint, mode ? parseInt(mode.slice(5), 8) : 0o777);
    return { mountPoint: s.mountPoint, release: () => removeDir() };
  }
  const opts = parseMountOptions(s.options);
  try {
    libc.mount(s.source || 'tmpfs', s.mountPoint, s.fstype || 'tmpfs', opts.flags, opts.data || null);
  } catch (err) {
    removeDir();
    throw err;
  }
  return {
    mountPoint: s.mountPoint,
    release() {
      try {
        libc.umount2(s.mountPoint, MNT_DETACH);
      } catch {
        // Already gone: nothing left to undo.
      }
      try {
        if (!existed) fs.rmdirSync(s.mountPoint);
      } catch {
        // Someone left files in it; keep the directory rather than lose them.
      }
    },
  };
}

/** Mounts all or none: on a failure the ones already mounted are released before the error surfaces. */
export function mountStorages(libc: Libc, storages: readonly Storage[]): MountedStorage[] {
  storages.forEach(checkStorage);
  const done: MountedStorage[] = [];
  try {
    for (const s of storages) done.push(mountOne(libc, s));
  } catch (err) {
    releaseStorages(done);
    throw err;
  }
  return done;
}

export function releaseStorages(list: readonly MountedStorage[]): void {
  for (const s of [...list].reverse()) s.release();
}
