// ResizeVolume (3.x, `kata-runtime direct-volume resize`): the host grew a direct-assigned block
// volume's disk (the guest kernel sees the new capacity by itself, virtio-blk's config change), and
// asks the guest to grow the filesystem mounted at volume_guest_path to `size` bytes. ext4 grows
// online through EXT4_IOC_RESIZE_FS on its mount point, as resize2fs does, with no binary in the
// image; other filesystems are refused by name. Shrinking is refused by the kernel (EINVAL).
import path from 'node:path';
import { FailedPrecondition, invalidArgument, NotFound, Unimplemented } from '../errors.js';
import { O_DIRECTORY, O_RDONLY, type Libc } from '../linux/libc.js';
import { openPath } from '../linux/paths.js';
import type { Logger } from '../log/logger.js';
import type { AgentHandlers } from '../rpc/service.js';
import { unescapeMountPath } from './stale-share-mounts.js';
import { realStorageFs } from './storage-fs.js';

/** _IOW('f', 16, __u64): the new block count. */
export const EXT4_IOC_RESIZE_FS = 0x40086610;

export interface ResizeDeps {
  libc: Pick<Libc, 'openat' | 'close' | 'ioctlBuf'>;
  log: Logger;
  /** Off the guest no filesystem is grown: the host's are not the agent's. */
  guest: boolean;
  readMountinfo?: () => string;
  statfs?: (p: string) => { bsize: number; blocks: number };
}

/** The filesystem type mounted exactly at `mp` (the last such mount, the one visible), if any. */
export function fstypeAt(mountinfo: string, mp: string): string | undefined {
  let found: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (fields.length < 5 || sep < 0) continue;
    if (unescapeMountPath(fields[4]) === mp) found = fields[sep + 1];
  }
  return found;
}

export function resizeVolumeHandlers(deps: ResizeDeps): AgentHandlers {
  const readMountinfo = deps.readMountinfo ?? (() => realStorageFs.readText('/proc/self/mountinfo'));
  const statfs = deps.statfs ?? realStorageFs.statfs;
  return {
    resizeVolume(req) {
      const p = req.volumeGuestPath;
      const what = `ResizeVolume ${p}`;
      if (!path.isAbsolute(p) || path.normalize(p) !== p || p.includes('\0')) throw invalidArgument(`${what}: not a normalized absolute path`);
      if (!deps.guest) throw new Unimplemented(`${what}: volumes are grown only on the guest (this agent runs with another state root)`);
      const fstype = fstypeAt(readMountinfo(), p);
      if (!fstype) throw new NotFound(`${what}: no volume is mounted there`);
      if (fstype !== 'ext4') throw new Unimplemented(`${what}: growing ${fstype} is not supported (ext4 is)`);
      const st = statfs(p);
      const blocks = req.size / BigInt(st.bsize);
      if (blocks <= BigInt(st.blocks)) {
        throw new FailedPrecondition(
          `${what}: ${req.size} bytes is not more than the filesystem's ${BigInt(st.blocks) * BigInt(st.bsize)} (shrinking is not possible)`,
        );
      }
      const fd = openPath(deps.libc as Libc, p, O_RDONLY | O_DIRECTORY);
      try {
        const count = Buffer.alloc(8);
        count.writeBigUInt64LE(blocks);
        deps.libc.ioctlBuf(fd, EXT4_IOC_RESIZE_FS, count);
      } finally {
        deps.libc.close(fd);
      }
      deps.log.info({ path: p, blocks: Number(blocks), block_size: st.bsize }, 'volume grown');
      return {};
    },
  };
}
