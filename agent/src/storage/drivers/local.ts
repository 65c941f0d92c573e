// local: a directory in the guest (a disk-backed emptyDir), made with the mode and group asked for.
import type { Storage } from '../../../../protos/gen/agent_pb.js';
import { invalidArgument } from '../../errors.js';
import type { FileInfo } from '../storage-fs.js';
import { about, applyFsGid, splitFsGid, type DriverEnv, type StorageDriver, type Undo } from './common.js';

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

export const localDriver = (env: DriverEnv): StorageDriver => ({ names: ['local'], setUp: (s) => mountLocal(env, s) });
