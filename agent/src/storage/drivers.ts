// The storage drivers that need no hot-plugged device: the pod's shared directory (9p, virtio-fs),
// tmpfs volumes (ephemeral), guest directories (local) and bind mounts of shared-dir paths (bind).
// Each returns how to undo what it did.
import path from 'node:path';
import type { Storage } from '../../../protos/gen/agent_pb.js';
import { FSGroupChangePolicy } from '../../../protos/gen/types_pb.js';
import type { BlockDevice } from '../device/block.js';
import { applyFsGroup } from './fs-group.js';
import type { Libc } from '../linux/libc.js';
import { MNT_DETACH, MS_BIND, MS_REC, MS_REMOUNT } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';
import { parseMountOptions } from '../mount/options.js';
import { invalidArgument, withContext } from '../errors.js';
import type { FileInfo, StorageFs } from './storage-fs.js';

export type Undo = () => void;

export interface DriverEnv {
  libc: Libc;
  fs: StorageFs;
  log: Logger;
  ensureFilesystem: (fstype: string) => void;
}

const MODE_SETGID = 0o2000;
/** kata's own option (not a mount option): the volume's group, for a pod's fsGroup. */
const FS_GID = 'fsgid=';

/** Splits kata's fsgid=N out of the mount options. */
export function splitFsGid(options: readonly string[], what: string): { options: string[]; fsGid?: number } {
  let fsGid: number | undefined;
  const rest: string[] = [];
  for (const o of options) {
    if (!o.startsWith(FS_GID)) {
      rest.push(o);
      continue;
    }
    const v = o.slice(FS_GID.length);
    if (!/^\d+$/.test(v)) throw invalidArgument(`${what}: bad option "${o}"`);
    fsGid = Number(v);
  }
  return { options: rest, fsGid };
}

/** `err` with the storage it concerns in front of its message. */
function about(what: string, err: unknown): unknown {
  return withContext(err, (m) => `${what}: ${m}`);
}

/** The directory to mount on; `created` says whether we made it (and so remove it after). */
function mountDir(fs: StorageFs, mp: string): boolean {
  if (fs.exists(mp)) return false;
  fs.mkdirs(mp);
  return true;
}

function unmount(env: DriverEnv, mp: string): void {
  try {
    env.libc.umount2(mp, MNT_DETACH);
  } catch (err) {
    env.log.debug({ mount_point: mp, err: (err as Error).message }, 'storage already unmounted');
  }
}

function removeDir(fs: StorageFs, mp: string): void {
  try {
    fs.rmdir(mp);
  } catch {
    // Something was left in it: keep the directory rather than lose the files.
  }
}

/** mount(2) of `s` with its options split into flags and data; `extraFlags` are or-ed in. */
function plainMount(env: DriverEnv, s: Storage, fstype: string, options: readonly string[], extraFlags = 0, source = s.source): Undo {
  const what = `storage ${s.driver} ${s.mountPoint}`;
  const created = mountDir(env.fs, s.mountPoint);
  const o = parseMountOptions(options);
  try {
    env.libc.mount(source, s.mountPoint, fstype, o.flags | extraFlags, o.data || null);
  } catch (err) {
    if (created) removeDir(env.fs, s.mountPoint);
    throw about(what, err);
  }
  return () => {
    unmount(env, s.mountPoint);
    if (created) removeDir(env.fs, s.mountPoint);
  };
}

/** The kataShared tag: 9p (kata 1.x) or virtio-fs (2.x/3.x); the module is loaded first if need be. */
export function mountSharedFs(env: DriverEnv, s: Storage): Undo {
  const fstype = s.fstype || (s.driver === '9p' ? '9p' : 'virtiofs');
  try {
    env.ensureFilesystem(fstype);
  } catch (err) {
    throw about(`storage ${s.driver} ${s.mountPoint}`, err);
  }
  return plainMount(env, s, fstype, s.options);
}

/**
 * A disk kata hot-plugged (blk, mmioblk, scsi) or gave as an nvdimm, once the device is found: its
 * filesystem mounted at the mount point (options such as nvdimm's "dax" go to the filesystem as data); with a 3.x fsGroup, the volume's files given to that group (fs-group.ts).
 */
export function mountBlock(env: DriverEnv, s: Storage, device: BlockDevice): Undo {
  const what = `storage ${s.driver} ${s.source} (${device.path}) at ${s.mountPoint}`;
  if (s.fstype === '') throw invalidArgument(`${what}: fstype is empty`);
  try {
    env.ensureFilesystem(s.fstype);
  } catch (err) {
    throw about(what, err);
  }
  const undo = plainMount(env, s, s.fstype, s.options, 0, device.path);
  if (s.fsGroup) {
    try {
      applyFsGroup(env.fs, s.mountPoint, s.fsGroup.groupId, s.fsGroup.groupChangePolicy === FSGroupChangePolicy.OnRootMismatch);
    } catch (err) {
      undo();
      throw about(`${what}: fsGroup ${s.fsGroup.groupId}`, err);
    }
  }
  return undo;
}

/** Gives the volume's root to group `gid` with setgid, as kubelet does for fsGroup. */
function applyFsGid(fs: StorageFs, mp: string, gid: number, mode?: number): void {
  fs.chown(mp, -1, gid);
  fs.chmod(mp, (mode ?? fs.stat(mp).mode & 0o7777) | MODE_SETGID);
}

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

function parseMode(v: string, what: string): number {
  if (!/^[0-7]{1,4}$/.test(v)) throw invalidArgument(`${what}: mode "${v}" is not an octal mode`);
  return parseInt(v, 8);
}

/**
 * A directory in the guest (e.g. a disk-backed emptyDir). One the agent creates gets the requested
 * mode (none given: mkdir's 0777 less the umask, as kata) and fsgid, and goes away with its last
 * user. An existing directory is used as it is: chmodding it would widen or change, for good, a
 * directory that is not the pod's (issue 18, item 6b: a 0700 directory became 0777).
 */
export function mountLocal(env: DriverEnv, s: Storage): Undo {
  const what = `storage local ${s.mountPoint}`;
  const { options, fsGid } = splitFsGid(s.options, what);
  const modeOpt = options.find((o) => o.startsWith('mode='));
  const mode = modeOpt === undefined ? undefined : parseMode(modeOpt.slice(5), what);
  let st: FileInfo | undefined;
  try {
    st = env.fs.stat(s.mountPoint);
  } catch {
    // Not there: ours to create.
  }
  if (st) {
    if (!st.isDirectory()) throw invalidArgument(`${what}: exists and is not a directory`);
    if (mode !== undefined || fsGid !== undefined) {
      env.log.warn(
        { mount_point: s.mountPoint, mode: (st.mode & 0o7777).toString(8) },
        'local storage directory exists: its mode and group are left as they are',
      );
    }
    return () => undefined;
  }
  env.fs.mkdirs(s.mountPoint, 0o777);
  try {
    if (fsGid !== undefined) applyFsGid(env.fs, s.mountPoint, fsGid, mode);
    else if (mode !== undefined) env.fs.chmod(s.mountPoint, mode);
  } catch (err) {
    env.fs.remove(s.mountPoint);
    throw about(what, err);
  }
  return () => env.fs.remove(s.mountPoint);
}

/** A bind mount of a path the host shared (a file or a directory), read-only when "ro" is given. */
export function mountBind(env: DriverEnv, s: Storage): Undo {
  const what = `storage bind ${s.source} → ${s.mountPoint}`;
  let src: FileInfo;
  try {
    src = env.fs.stat(s.source);
  } catch (err) {
    throw about(what, err);
  }
  const o = parseMountOptions(s.options.filter((x) => x !== 'bind' && x !== 'rbind'));
  const recursive = s.options.includes('rbind') ? MS_REC : 0;
  let created = false;
  if (!env.fs.exists(s.mountPoint)) {
    env.fs.mkdirs(src.isDirectory() ? s.mountPoint : path.dirname(s.mountPoint));
    if (!src.isDirectory()) env.fs.writeFile(s.mountPoint, '');
    created = true;
  }
  const removeMountPoint = () => {
    if (!created) return;
    if (src.isDirectory()) removeDir(env.fs, s.mountPoint);
    else env.fs.remove(s.mountPoint);
  };
  try {
    env.libc.mount(s.source, s.mountPoint, null, MS_BIND | recursive, null);
  } catch (err) {
    removeMountPoint();
    throw about(what, err);
  }
  // A bind mount takes the source's flags: ro, nosuid… need a remount of the new mount itself.
  if (o.flags !== 0) {
    try {
      env.libc.mount(null, s.mountPoint, null, MS_REMOUNT | MS_BIND | o.flags, null);
    } catch (err) {
      unmount(env, s.mountPoint);
      removeMountPoint();
      throw about(what, err);
    }
  }
  return () => {
    unmount(env, s.mountPoint);
    removeMountPoint();
  };
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
