// 9p (kata 1.x) and virtio-fs (2.x/3.x): the pod's shared directory, tag kataShared, that the host
// exports with the containers' rootfs and volumes in it.
import type { Storage } from '../../../../protos/gen/agent_pb.js';
import { about, plainMount, type DriverEnv, type StorageDriver, type Undo } from './common.js';

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

export const sharedFsDriver = (env: DriverEnv): StorageDriver => ({ names: ['9p', 'virtio-fs'], setUp: (s) => mountSharedFs(env, s) });
