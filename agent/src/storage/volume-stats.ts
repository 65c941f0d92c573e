// GetVolumeStats (3.x): the capacity of a volume mounted in the guest, as kubelet asks for it through
// the CSI node stats of a direct-assigned volume (`kata-runtime direct-volume stats`). The numbers are
// statfs(2)'s, counted the way df does: total = all blocks, available = what an unprivileged writer
// may still use, used = total minus free (so reserved blocks count neither as used nor available).
import path from 'node:path';
import { create } from '@bufbuild/protobuf';
import { VolumeUsage_Unit, VolumeUsageSchema, type VolumeUsage } from '../../../protos/gen/csi_pb.js';
import { invalidArgument, notFound } from '../errors.js';
import { realStorageFs, type FsUsage } from './storage-fs.js';

export interface VolumeStats {
  usage: VolumeUsage[];
  volumeCondition: { abnormal: boolean; message: string };
}

export function volumeStats(guestPath: string, statfs: (p: string) => FsUsage = realStorageFs.statfs): VolumeStats {
  if (!path.isAbsolute(guestPath) || path.normalize(guestPath) !== guestPath || guestPath.includes('\0')) {
    throw invalidArgument(`GetVolumeStats: volume_guest_path "${guestPath}" is not a normalized absolute path`);
  }
  let st: FsUsage;
  try {
    st = statfs(guestPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw notFound(`GetVolumeStats: no volume at ${guestPath} (${code})`);
    throw Object.assign(new Error(`GetVolumeStats: statfs(${guestPath}): ${code ?? (err as Error).message}`), { code });
  }
  const bsize = BigInt(st.bsize);
  const blocks = BigInt(st.blocks);
  const bfree = BigInt(st.bfree);
  const files = BigInt(st.files);
  const ffree = BigInt(st.ffree);
  return {
    usage: [
      create(VolumeUsageSchema, { unit: VolumeUsage_Unit.BYTES, total: blocks * bsize, available: BigInt(st.bavail) * bsize, used: (blocks - bfree) * bsize }),
      create(VolumeUsageSchema, { unit: VolumeUsage_Unit.INODES, total: files, available: ffree, used: files - ffree }),
    ],
    volumeCondition: { abnormal: false, message: '' },
  };
}
