// kata-containers.img's layout (rootfs-builder/src/disk-image.ts): the two MBRs and the PFN info
// block the kernel validates before it exposes the nvdimm as /dev/pmem0, checked field by field.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { assembleImage, DAX_HEADER, fletcher64, imageSize, mbr, PFN_INFO_OFFSET, pfnInfoBlock, ROOTFS_OFFSET } from '../../rootfs-builder/src/disk-image.js';
import { tempDir } from '../support/unit.js';

const MiB = 1024 * 1024;

t.test('mbr: one Linux partition by LBA, boot signature', async (t) => {
  const b = mbr(6144, 100000, 0x12345678);
  t.equal(b.length, 512);
  t.equal(b.readUInt32LE(440), 0x12345678, 'disk signature');
  t.equal(b[446 + 4], 0x83, 'type Linux');
  t.equal(b.readUInt32LE(446 + 8), 6144, 'first LBA');
  t.equal(b.readUInt32LE(446 + 12), 100000, 'sectors');
  t.same([b[510], b[511]], [0x55, 0xaa]);
  t.equal(
    b.subarray(462, 510).every((x) => x === 0),
    true,
    'partitions 2-4 empty',
  );
});

t.test('fletcher64 as the kernel computes it (sums of 32-bit LE words)', async (t) => {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(1, 0);
  b.writeUInt32LE(2, 4);
  // lo = 1, then 3; hi = 1, then 4.
  t.equal(fletcher64(b), (4n << 32n) | 3n);
  const wrap = Buffer.alloc(8, 0xff);
  t.equal(fletcher64(wrap) & 0xffffffffn, 0xfffffffen, 'the low sum wraps at 32 bits');
});

t.test('pfnInfoBlock: the fields nd_pfn_validate reads, and a checksum that verifies', async (t) => {
  const uuid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const size = 256 * MiB;
  const b = pfnInfoBlock({ namespaceSize: size, uuid });
  t.equal(b.length, 4096);
  t.equal(b.subarray(0, 16).toString('latin1'), 'NVDIMM_PFN_INFO\0');
  t.same(b.subarray(16, 32), uuid);
  t.ok(
    b.subarray(32, 48).every((x) => x === 0),
    'parent uuid zero (label-less namespace)',
  );
  t.equal(b.readUInt32LE(48), 0, 'flags');
  t.same([b.readUInt16LE(52), b.readUInt16LE(54)], [1, 4], 'version 1.4');
  t.equal(b.readBigUInt64LE(56), BigInt(DAX_HEADER), 'dataoff: the 2 MiB header');
  t.equal(b.readBigUInt64LE(64), BigInt((size - DAX_HEADER) / 4096), 'npfns');
  t.equal(b.readUInt32LE(72), 1, 'mode RAM: struct pages in guest memory');
  t.same([b.readUInt32LE(76), b.readUInt32LE(80)], [0, 0], 'no start pad, no end truncation');
  t.equal(b.readUInt32LE(84), 2 * MiB, 'align');
  t.equal(b.readUInt32LE(88), 4096, 'page size');
  t.equal(b.readUInt16LE(92), 64, 'struct page size');
  const stored = b.readBigUInt64LE(4088);
  const zeroed = Buffer.from(b);
  zeroed.writeBigUInt64LE(0n, 4088);
  t.equal(fletcher64(zeroed), stored, 'checksum over the block with its checksum field zeroed');
  t.throws(() => pfnInfoBlock({ namespaceSize: size + 4096, uuid }), /multiple of 2 MiB/);
});

t.test('imageSize: both headers added, rounded up to 128 MiB', async (t) => {
  t.equal(imageSize(100 * MiB), 128 * MiB);
  t.equal(imageSize(125 * MiB), 128 * MiB);
  t.equal(imageSize(125 * MiB + 1), 256 * MiB, 'the 3 MiB of headers push it over');
});

t.test('assembleImage: MBR #1 and the info block, MBR #2 at 2 MiB, the filesystem at 3 MiB', async (t) => {
  const dir = tempDir(t, 'disk-image-');
  const part = path.join(dir, 'root.ext4');
  const fsBytes = 128 * MiB - ROOTFS_OFFSET;
  fs.writeFileSync(part, '');
  fs.truncateSync(part, fsBytes);
  const fd = fs.openSync(part, 'r+');
  fs.writeSync(fd, Buffer.from('FIRST-BLOCK'), 0, 11, 0);
  fs.writeSync(fd, Buffer.from('LAST'), 0, 4, fsBytes - 4);
  fs.closeSync(fd);
  const img = path.join(dir, 'kata-containers.img');
  t.same(assembleImage(part, img, 'seed'), { size: 128 * MiB });
  const b = fs.readFileSync(img);
  t.equal(b.length, 128 * MiB);
  t.equal(b.readUInt32LE(446 + 8), ROOTFS_OFFSET / 512, 'MBR #1 (virtio-blk): partition 1 at 3 MiB of the file');
  t.equal(b.readUInt32LE(446 + 12), fsBytes / 512);
  t.equal(b.subarray(PFN_INFO_OFFSET, PFN_INFO_OFFSET + 16).toString('latin1'), 'NVDIMM_PFN_INFO\0', 'info block 4 KiB in');
  t.equal(b.readUInt32LE(DAX_HEADER + 446 + 8), (ROOTFS_OFFSET - DAX_HEADER) / 512, 'MBR #2 (/dev/pmem0 starts at 2 MiB): partition 1 1 MiB in');
  t.equal(b.readUInt32LE(DAX_HEADER + 446 + 12), fsBytes / 512, 'the same partition');
  t.same([b[DAX_HEADER + 510], b[DAX_HEADER + 511]], [0x55, 0xaa]);
  t.equal(b.subarray(ROOTFS_OFFSET, ROOTFS_OFFSET + 11).toString(), 'FIRST-BLOCK', 'filesystem at 3 MiB');
  t.equal(b.subarray(b.length - 4).toString(), 'LAST', 'to the last byte');
  t.equal(b.readUInt32LE(440), b.readUInt32LE(DAX_HEADER + 440), 'one disk signature, from the seed');
  const again = path.join(dir, 'again.img');
  assembleImage(part, again, 'seed');
  t.ok(fs.readFileSync(again).equals(b), 'same inputs, same bytes');

  fs.truncateSync(part, fsBytes - 4096);
  t.throws(() => assembleImage(part, img, 'seed'), /multiple of 128 MiB/);
});
