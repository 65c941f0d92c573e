// Disks the host hot-plugs: virtio-blk on PCI (blk), on virtio-mmio (mmioblk), SCSI LUNs (scsi), and
// persistent-memory regions (nvdimm, /dev/pmemN).
// The registry finds the device first (uevents, device/hotplug.ts); this mounts its filesystem.
import type { Storage } from '../../../../protos/gen/agent_pb.js';
import { FSGroupChangePolicy } from '../../../../protos/gen/types_pb.js';
import type { BlockDevice } from '../../device/block.js';
import { invalidArgument } from '../../errors.js';
import { applyFsGroup } from '../fs-group.js';
import { about, plainMount, type DriverEnv, type StorageDriver, type Undo } from './common.js';

/**
 * A disk kata hot-plugged (blk, mmioblk, scsi) or gave as an nvdimm, once the device is found: its
 * filesystem mounted at the mount point (options such as nvdimm's "dax" go to the filesystem as
 * data); with a 3.x fsGroup, the volume's files given to that group (fs-group.ts).
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

export const blockDriver = (env: DriverEnv): StorageDriver => ({
  names: ['blk', 'mmioblk', 'scsi', 'nvdimm'],
  needsDevice: true,
  setUp(s, { device }) {
    if (!device) throw new Error(`storage ${s.driver} ${s.source}: mounted without its device (findDevices first)`);
    return mountBlock(env, s, device);
  },
});
