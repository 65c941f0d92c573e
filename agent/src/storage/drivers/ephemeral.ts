// ephemeral: a tmpfs (or hugetlbfs) volume, the pod's /dev/shm and memory-backed emptyDirs; and
// UpdateEphemeralMounts, which resizes one when the pod's memory changed.
import type { Storage } from '../../../../protos/gen/agent_pb.js';
import { invalidArgument } from '../../errors.js';
import { MS_REMOUNT } from '../../linux/libc.js';
import { parseMountOptions } from '../../mount/options.js';
import { about, applyFsGid, plainMount, splitFsGid, type DriverEnv, type StorageDriver, type Undo } from './common.js';

/** A tmpfs (or hugetlbfs) volume: the pod's /dev/shm and memory-backed emptyDirs. */
export function mountEphemeral(env: DriverEnv, s: Storage): Undo {
  const { options, fsGid } = splitFsGid(s.options, `storage ephemeral ${s.mountPoint}`);
  const undo = plainMount(env, { ...s, source: s.source || 'tmpfs' } as Storage, s.fstype || 'tmpfs', options);
  if (fsGid !== undefined) {
    try {
      applyFsGid(env.fs, s.mountPoint, fsGid);
    } catch (err) {
      undo();
      throw about(`storage ephemeral ${s.mountPoint} fsgid`, err);
    }
  }
  return undo;
}

/** UpdateEphemeralMounts: a tmpfs already mounted gets new options (size=<N>M when memory grew). */
export function remountEphemeral(env: DriverEnv, s: Storage): void {
  const what = `UpdateEphemeralMounts ${s.mountPoint}`;
  if (s.driver !== 'ephemeral') throw invalidArgument(`${what}: storage driver ${s.driver}: only ephemeral storages can be updated`);
  if (!s.mountPoint.startsWith('/') || s.mountPoint.split('/').includes('..')) {
    throw invalidArgument(`${what}: mount point must be an absolute path without ".."`);
  }
  // The fsgid was applied when the volume was made; it is no mount option.
  const { options } = splitFsGid(s.options, what);
  if (options.length === 0) return;
  const o = parseMountOptions(options);
  try {
    env.libc.mount(s.source || 'tmpfs', s.mountPoint, s.fstype || 'tmpfs', o.flags | MS_REMOUNT, o.data || null);
  } catch (err) {
    throw about(what, err);
  }
}

export const ephemeralDriver = (env: DriverEnv): StorageDriver => ({ names: ['ephemeral'], setUp: (s) => mountEphemeral(env, s) });
