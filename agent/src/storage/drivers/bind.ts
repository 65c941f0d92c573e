// bind: a path of the shared directory bind-mounted elsewhere in the guest (kata 3.x volumes).
import path from 'node:path';
import type { Storage } from '../../../../protos/gen/agent_pb.js';
import { MS_BIND, MS_REC, MS_REMOUNT } from '../../linux/libc.js';
import { parseMountOptions } from '../../mount/options.js';
import type { FileInfo } from '../storage-fs.js';
import { about, removeDir, unmount, type DriverEnv, type StorageDriver, type Undo } from './common.js';

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

export const bindDriver = (env: DriverEnv): StorageDriver => ({ names: ['bind'], setUp: (s) => mountBind(env, s) });
