// Block devices a kata host hot-plugs, found by how the host names them: virtio-blk by PCI path
// ("blk"), virtio-blk on virtio-mmio by its /dev name ("mmioblk"), a SCSI disk by target and LUN
// ("scsi"), an nvdimm by its /dev/pmemN name ("nvdimm"). Each is a DeviceMatcher for the uevent
// listener: recognised in an event, or in sysfs if it was there before anyone listened. The /dev
// node itself is devtmpfs's.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgument } from '../errors.js';
import type { DeviceMatcher } from '../uevent/listener.js';
import type { Uevent } from '../uevent/uevent.js';
import { readDevNumbers } from './dev-numbers.js';
import { formatPciPath, parsePciPath, pciRelativePath, type PciPath } from './pci-path.js';

export interface BlockDevice {
  /** "/dev/vda". */
  path: string;
  major: number;
  minor: number;
}

function fromBlockEvent(ev: Uevent): BlockDevice | undefined {
  if (ev.subsystem !== 'block' || ev.devname === '' || ev.action === 'remove') return undefined;
  // A partition's event comes after its disk's; the disk is the device.
  if (ev.env.DEVTYPE && ev.env.DEVTYPE !== 'disk') return undefined;
  if (ev.major === undefined || ev.minor === undefined) return undefined;
  return { path: `/dev/${ev.devname}`, major: ev.major, minor: ev.minor };
}

/** The disk in sysfs directory `blockDir` (a ".../block" directory): its one entry and its dev numbers. */
function diskIn(blockDir: string): BlockDevice | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(blockDir);
  } catch {
    return undefined;
  }
  for (const name of names) {
    const n = readDevNumbers(path.join(blockDir, name, 'dev'));
    if (n) return { path: `/dev/${name}`, ...n };
  }
  return undefined;
}

/** virtio-blk over PCI: the disk below the PCI function `pciPath` names ("02/01"). */
export function virtioBlkPci(sysfs: string, pciPath: string): DeviceMatcher<BlockDevice> {
  const p: PciPath = parsePciPath(pciPath, 'virtio-blk PCI path');
  const what = `virtio-blk PCI path ${formatPciPath(p)}`;
  const devDir = () => {
    const rel = pciRelativePath(sysfs, p);
    return rel === undefined ? undefined : `/devices/pci0000:${p.rootComplex}${rel}`;
  };
  return {
    what,
    fromEvent(ev) {
      const dev = fromBlockEvent(ev);
      const dir = dev && devDir();
      if (!dir) return undefined;
      const rest = ev.devpath.startsWith(`${dir}/`) ? ev.devpath.slice(dir.length + 1) : undefined;
      return rest !== undefined && /^virtio\d+\/block\/[^/]+$/.test(rest) ? dev : undefined;
    },
    present() {
      const dir = devDir();
      if (!dir) return undefined;
      let entries: string[];
      try {
        entries = fs.readdirSync(path.join(sysfs, dir));
      } catch {
        return undefined;
      }
      for (const e of entries.filter((n) => /^virtio\d+$/.test(n))) {
        const d = diskIn(path.join(sysfs, dir, e, 'block'));
        if (d) return d;
      }
      return undefined;
    },
  };
}

/** virtio-blk on virtio-mmio (Firecracker): named by its node, "/dev/vdb". */
export function virtioBlkMmio(sysfs: string, devPath: string): DeviceMatcher<BlockDevice> {
  const name = devPath.startsWith('/dev/') ? devPath.slice('/dev/'.length) : '';
  if (!/^[a-z0-9]+$/.test(name)) throw new InvalidArgument(`mmioblk device "${devPath}": a /dev/<disk> path expected`);
  return {
    what: `virtio-mmio block device ${devPath}`,
    fromEvent(ev) {
      const dev = fromBlockEvent(ev);
      return dev && ev.devname === name && ev.devpath.endsWith(`/block/${name}`) ? dev : undefined;
    },
    present() {
      const n = readDevNumbers(path.join(sysfs, 'class', 'block', name, 'dev'));
      return n && { path: devPath, ...n };
    },
  };
}

export interface ScsiAddress {
  target: number;
  lun: number;
}

/** kata's "target:lun" ("0:0"); also a full "host:channel:target:lun", whose host and channel must be 0. */
export function parseScsiAddress(text: string): ScsiAddress {
  const parts = text.split(':');
  const bad = (why: string) => new InvalidArgument(`SCSI address "${text}": ${why}`);
  if (!parts.every((p) => /^\d{1,5}$/.test(p))) throw bad('numbers separated by ":" expected');
  if (parts.length === 2) return { target: Number(parts[0]), lun: Number(parts[1]) };
  if (parts.length === 4) {
    if (parts[0] !== '0' || parts[1] !== '0') throw bad('kata guests have one SCSI controller: host and channel are 0');
    return { target: Number(parts[2]), lun: Number(parts[3]) };
  }
  throw bad('"target:lun" expected');
}

/**
 * A SCSI disk on the guest's (one) virtio-scsi controller. A hot-plugged LUN is found only by a
 * scan, which this asks every SCSI host for, as kata's agents do, before the wait.
 */
export function scsiDisk(sysfs: string, address: string, scan = true): DeviceMatcher<BlockDevice> {
  const a = parseScsiAddress(address);
  const id = `0:0:${a.target}:${a.lun}`;
  if (scan) {
    const hosts = path.join(sysfs, 'class', 'scsi_host');
    let names: string[] = [];
    try {
      names = fs.readdirSync(hosts);
    } catch {
      // No SCSI host yet (virtio_scsi still loading): the add events will bring the disk.
    }
    for (const h of names) {
      try {
        fs.writeFileSync(path.join(hosts, h, 'scan'), `0 ${a.target} ${a.lun}`);
      } catch {
        // A host that refuses the scan is not ours.
      }
    }
  }
  return {
    what: `SCSI disk ${id}`,
    fromEvent(ev) {
      const dev = fromBlockEvent(ev);
      return dev && new RegExp(`/target\\d+:0:${a.target}/${id}/block/[^/]+$`).test(ev.devpath) ? dev : undefined;
    },
    present: () => diskIn(path.join(sysfs, 'bus', 'scsi', 'devices', id, 'block')),
  };
}

/**
 * The devpath of a pmem disk on the ACPI NFIT's nvdimm bus, up to "/block/": the region, then the
 * namespace (raw or fsdax mode) or a btt/pfn device claiming it. A /dev/pmemN of another nd bus
 * (virtio-pmem) is not what a kata host hands over as "nvdimm".
 */
const nfitPmemDir = /\/ACPI0012:[0-9a-f]+\/ndbus\d+\/region\d+\/(?:[^/]+\/)+$/;

/**
 * An nvdimm (QEMU `-device nvdimm`): the host names it by the node the guest kernel gives it,
 * "/dev/pmem0" (kata numbers its nvdimms in the order it adds them, as the kernel does).
 */
export function nvdimmPmem(sysfs: string, devPath: string): DeviceMatcher<BlockDevice> {
  const name = devPath.startsWith('/dev/') ? devPath.slice('/dev/'.length) : '';
  // pmem<region>[.<namespace>], "s" when a BTT sits on it.
  if (!/^pmem\d+(?:\.\d+)?s?$/.test(name)) throw new InvalidArgument(`nvdimm device "${devPath}": a /dev/pmem<N> path expected`);
  const suffix = `/block/${name}`;
  const underNfit = (devpath: string) => devpath.endsWith(suffix) && nfitPmemDir.test(devpath.slice(0, -suffix.length + 1));
  return {
    what: `nvdimm ${devPath}`,
    fromEvent(ev) {
      const dev = fromBlockEvent(ev);
      return dev && ev.devname === name && underNfit(ev.devpath) ? dev : undefined;
    },
    present() {
      // /sys/class/block/<name> links to the device's directory below /sys/devices.
      const link = path.join(sysfs, 'class', 'block', name);
      let devpath: string;
      try {
        devpath = path.relative(fs.realpathSync(sysfs), fs.realpathSync(link));
      } catch {
        return undefined;
      }
      const n = readDevNumbers(path.join(link, 'dev'));
      return n && underNfit(`/${devpath}`) ? { path: devPath, ...n } : undefined;
    },
  };
}
