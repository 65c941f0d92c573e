// Waiting for what the host hot-plugged, by the names kata gives it (storage sources, Device ids).
import { InvalidArgument } from '../errors.js';
import type { DeviceMatcher, UeventListener } from '../uevent/listener.js';
import { nvdimmPmem, scsiDisk, virtioBlkMmio, virtioBlkPci, type BlockDevice } from './block.js';
import { attachVfio, type VfioDevice, type VfioKind } from './vfio.js';

/** Storage drivers and Device types naming a disk. */
export const blockKinds = ['blk', 'mmioblk', 'scsi', 'nvdimm'] as const;
export type BlockKind = (typeof blockKinds)[number];
export const isBlockKind = (k: string): k is BlockKind => (blockKinds as readonly string[]).includes(k);

export interface HotplugDeps {
  uevents: UeventListener;
  /** Root of sysfs: /sys, or a test's tree. */
  sysfs: string;
  /** agent.hotplug_timeout. */
  timeoutMs: number;
  /** Loads kernel modules by name (vfio_pci for VFIO devices); absent: the kernel has them built in. */
  loadModules?: (names: string[]) => void;
}

export class HotplugDevices {
  constructor(private readonly deps: HotplugDeps) {}

  /**
   * The disk `source` names: for blk a PCI path ("02/01"; kata 1.x may send the /dev path instead),
   * for mmioblk and nvdimm its /dev path ("/dev/pmem0"), for scsi "target:lun".
   */
  matcher(kind: BlockKind, source: string): DeviceMatcher<BlockDevice> {
    const { sysfs } = this.deps;
    if (source === '') throw new InvalidArgument(`${kind} device: no source (PCI path, /dev path or SCSI address)`);
    switch (kind) {
      case 'blk':
        return source.startsWith('/dev/') ? virtioBlkMmio(sysfs, source) : virtioBlkPci(sysfs, source);
      case 'mmioblk':
        return virtioBlkMmio(sysfs, source);
      case 'scsi':
        return scsiDisk(sysfs, source);
      case 'nvdimm':
        return nvdimmPmem(sysfs, source);
    }
  }

  async block(kind: BlockKind, source: string, signal?: AbortSignal): Promise<BlockDevice> {
    return this.deps.uevents.waitFor(this.matcher(kind, source), this.deps.timeoutMs, signal);
  }

  /** A VFIO PCI device by its options ("<host BDF>=<guest PCI path>" per function): see vfio.ts. */
  async vfio(kind: VfioKind, id: string, options: readonly string[], signal?: AbortSignal): Promise<VfioDevice> {
    return attachVfio(this.deps, kind, id, options, signal);
  }
}
