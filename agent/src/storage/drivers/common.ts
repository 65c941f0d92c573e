// What every storage driver module shares: the environment it acts through (the libc seam, the
// storage filesystem, the log), the driver shape the registry looks drivers up by, and the mount,
// unmount and directory steps most drivers are made of. Each driver returns how to undo what it did.
import type { Storage } from '../../../../protos/gen/agent_pb.js';
import type { BlockDevice } from '../../device/block.js';
import type { Libc } from '../../linux/libc.js';
import { MNT_DETACH } from '../../linux/libc.js';
import type { Logger } from '../../log/logger.js';
import { parseMountOptions } from '../../mount/options.js';
import { invalidArgument, withContext } from '../../errors.js';
import type { StorageFs } from '../storage-fs.js';

export type Undo = () => void;

export interface DriverEnv {
  libc: Libc;
  fs: StorageFs;
  log: Logger;
  ensureFilesystem: (fstype: string) => void;
  /** How often watchable-bind sources are compared with their copies (kata: 2 s). */
  watchIntervalMs: number;
  /** The agent's state root (/run/kata-containers on the guest): where drivers keep their own dirs. */
  stateRoot: string;
}

export interface SetUpContext {
  /** The container the storage comes with ('' for the sandbox's own storages). */
  containerId: string;
  /** The disk found for it (drivers with `needsDevice`), by StorageRegistry.findDevices. */
  device?: BlockDevice;
}

/** One storage driver: the Storage.driver names it serves and how it sets one up. */
export interface StorageDriver {
  readonly names: readonly string[];
  /** It mounts a disk the host hot-plugs: served only where the agent waits for devices (the guest). */
  readonly needsDevice?: boolean;
  setUp(s: Storage, ctx: SetUpContext): Undo;
  /** Periodic work between set-ups (watchable-bind's comparison); tests call it directly. */
  poll?(): void;
  /** Agent shutdown: timers stopped; mounts are undone by their own undos. */
  close?(): void;
}

/** Drivers are made once per registry, with its environment (a driver may keep state, e.g. watchers). */
export type DriverFactory = (env: DriverEnv) => StorageDriver;

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
export function about(what: string, err: unknown): unknown {
  return withContext(err, (m) => `${what}: ${m}`);
}

/** The directory to mount on; `created` says whether we made it (and so remove it after). */
export function mountDir(fs: StorageFs, mp: string): boolean {
  if (fs.exists(mp)) return false;
  fs.mkdirs(mp);
  return true;
}

export function unmount(env: DriverEnv, mp: string): void {
  try {
    env.libc.umount2(mp, MNT_DETACH);
  } catch (err) {
    env.log.debug({ mount_point: mp, err: (err as Error).message }, 'storage already unmounted');
  }
}

export function removeDir(fs: StorageFs, mp: string): void {
  try {
    fs.rmdir(mp);
  } catch {
    // Something was left in it: keep the directory rather than lose the files.
  }
}

/** mount(2) of `s` with its options split into flags and data; `extraFlags` are or-ed in. */
export function plainMount(env: DriverEnv, s: Storage, fstype: string, options: readonly string[], extraFlags = 0, source = s.source): Undo {
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

/** Gives the volume's root to group `gid` with setgid, as kubelet does for fsGroup. */
export function applyFsGid(fs: StorageFs, mp: string, gid: number, mode?: number): void {
  fs.chown(mp, -1, gid);
  fs.chmod(mp, (mode ?? fs.stat(mp).mode & 0o7777) | MODE_SETGID);
}
