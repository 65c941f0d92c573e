// kata-containers.img laid out as kata's osbuilder lays it out, so a kata host can boot it with
// `image =` either way it attaches an image:
//  - as a virtio-blk disk (`disable_image_nvdimm`, root=/dev/vda1): the file's first sector is an
//    MBR whose partition 1 is the ext4 root, 3 MiB in;
//  - as an nvdimm (the default, root=/dev/pmem0p1 rootflags=dax): the kernel finds a PFN info
//    block 4 KiB into the namespace (DAX metadata: the first 2 MiB are reserved, the page structs
//    live in guest RAM) and exposes what follows as /dev/pmem0; there a second MBR puts partition 1
//    1 MiB in, i.e. at the same 3 MiB of the file.
// The total size is a multiple of 128 MiB (kata's memory-hotplug boundary for x86, which the nvdimm
// backend must respect). Written here rather than with parted, loop devices and kata's nsdax tool:
// no root, no mounts, and the same bytes from the same inputs.
import crypto from 'node:crypto';
import fs from 'node:fs';

const MiB = 1024 * 1024;
const SECTOR = 512;
/** Reserved at the start of the namespace for the MBR #1 and the DAX metadata. */
export const DAX_HEADER = 2 * MiB;
/** Where partition 1 starts inside the disk the guest sees as /dev/pmem0 (osbuilder's rootfs_start). */
export const ROOTFS_START = 1 * MiB;
/** The rootfs partition's offset in the file: what both MBRs point at. */
export const ROOTFS_OFFSET = DAX_HEADER + ROOTFS_START;
/** Image sizes are rounded up to this (x86_64). */
export const MEM_BOUNDARY = 128 * MiB;
/** The pages are 2 MiB-aligned for DAX huge pages. */
const DAX_ALIGN = 2 * MiB;
/** The kernel's info-block offset in a namespace (drivers/nvdimm: SZ_4K). */
export const PFN_INFO_OFFSET = 4096;
const PFN_SIGNATURE = 'NVDIMM_PFN_INFO\0';
/** enum nd_pfn_mode: NONE 0, RAM 1 (struct pages in system RAM), PMEM 2 (in the reserved area). */
const PFN_MODE_RAM = 1;

/** One MBR with a single Linux (0x83) partition from `startSector`, `sectors` long. */
export function mbr(startSector: number, sectors: number, diskSignature: number): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.writeUInt32LE(diskSignature >>> 0, 440);
  const e = 446;
  b[e] = 0x00; // not bootable: nothing boots from it, the kernel is given to QEMU
  // CHS fields are past their range for any real disk; LBA-only tools use 0xFE 0xFF 0xFF there.
  b.set([0xfe, 0xff, 0xff], e + 1);
  b[e + 4] = 0x83;
  b.set([0xfe, 0xff, 0xff], e + 5);
  b.writeUInt32LE(startSector, e + 8);
  b.writeUInt32LE(sectors, e + 12);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** The kernel's nd_fletcher64 over little-endian 32-bit words. */
export function fletcher64(data: Buffer): bigint {
  let lo = 0n;
  let hi = 0n;
  const mask32 = 0xffffffffn;
  for (let i = 0; i + 4 <= data.length; i += 4) {
    lo = (lo + BigInt(data.readUInt32LE(i))) & mask32;
    hi = (hi + lo) & mask32;
  }
  return (hi << 32n) | lo;
}

export interface PfnInfo {
  /** The namespace's size: the whole image file. */
  namespaceSize: number;
  /** 16 bytes naming this pfn device. */
  uuid: Buffer;
}

/**
 * struct nd_pfn_sb (4096 bytes, version 1.4): signature, uuid, parent uuid (zero: a label-less
 * namespace has none), flags, version, dataoff, npfns, mode, start_pad, end_trunc, align,
 * page_size, page_struct_size, padding, checksum (fletcher64 of the block with the checksum zeroed).
 */
export function pfnInfoBlock(o: PfnInfo): Buffer {
  if (o.uuid.length !== 16) throw new Error('pfn uuid: 16 bytes expected');
  if (o.namespaceSize % DAX_ALIGN !== 0) throw new Error(`namespace size ${o.namespaceSize} is not a multiple of 2 MiB`);
  const b = Buffer.alloc(4096);
  b.write(PFN_SIGNATURE, 0, 'latin1');
  o.uuid.copy(b, 16);
  // parent_uuid at 32..47 stays zero; flags at 48 zero.
  b.writeUInt16LE(1, 52); // version_major
  b.writeUInt16LE(4, 54); // version_minor: page_size and page_struct_size recorded
  const dataoff = DAX_HEADER;
  b.writeBigUInt64LE(BigInt(dataoff), 56);
  b.writeBigUInt64LE(BigInt((o.namespaceSize - dataoff) / 4096), 64); // npfns
  b.writeUInt32LE(PFN_MODE_RAM, 72);
  // start_pad (76) and end_trunc (80): zero, the namespace is aligned at both ends.
  b.writeUInt32LE(DAX_ALIGN, 84);
  b.writeUInt32LE(4096, 88); // page_size
  b.writeUInt16LE(64, 92); // page_struct_size: sizeof(struct page) on x86_64
  b.writeBigUInt64LE(fletcher64(b), 4088);
  return b;
}

/** The image size for a root filesystem of `rootfsBytes`: both headers added, rounded to 128 MiB. */
export function imageSize(rootfsBytes: number): number {
  return Math.ceil((rootfsBytes + ROOTFS_OFFSET) / MEM_BOUNDARY) * MEM_BOUNDARY;
}

/** A fixed 32-bit signature and uuid from `seed`, so the same inputs give the same bytes. */
function fromSeed(seed: string, what: string, n: number): Buffer {
  return crypto.createHash('sha256').update(`${what}:${seed}`).digest().subarray(0, n);
}

/**
 * Writes `dest`: MBR #1 + PFN info block, MBR #2 at 2 MiB, then the ext4 filesystem `ext4File`
 * (exactly `imageSize - 3 MiB` bytes, made for this) at 3 MiB.
 */
export function assembleImage(ext4File: string, dest: string, seed: string): { size: number } {
  const fsBytes = fs.statSync(ext4File).size;
  const size = fsBytes + ROOTFS_OFFSET;
  if (size % MEM_BOUNDARY !== 0) throw new Error(`${ext4File}: ${fsBytes} bytes do not fill an image of a multiple of 128 MiB`);
  const partSectors = fsBytes / SECTOR;
  const sig = fromSeed(seed, 'mbr', 4).readUInt32LE(0);
  const fd = fs.openSync(dest, 'w');
  try {
    fs.writeSync(fd, mbr(ROOTFS_OFFSET / SECTOR, partSectors, sig), 0, SECTOR, 0);
    fs.writeSync(fd, pfnInfoBlock({ namespaceSize: size, uuid: fromSeed(seed, 'pfn', 16) }), 0, 4096, PFN_INFO_OFFSET);
    fs.writeSync(fd, mbr(ROOTFS_START / SECTOR, partSectors, sig), 0, SECTOR, DAX_HEADER);
    const src = fs.openSync(ext4File, 'r');
    try {
      const buf = Buffer.alloc(4 * MiB);
      for (let off = 0; off < fsBytes;) {
        const n = fs.readSync(src, buf, 0, Math.min(buf.length, fsBytes - off), off);
        if (n === 0) throw new Error(`${ext4File}: short read at ${off}`);
        // All-zero chunks are skipped: the file stays sparse where the filesystem is empty.
        if (buf.subarray(0, n).some((x) => x !== 0)) fs.writeSync(fd, buf, 0, n, ROOTFS_OFFSET + off);
        off += n;
      }
    } finally {
      fs.closeSync(src);
    }
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
  return { size };
}
