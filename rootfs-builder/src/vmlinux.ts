// Extracts the uncompressed kernel ELF from a bzImage (what the kernel's scripts/extract-vmlinux
// does): find a compressor's magic inside the image, decompress from there, keep the first output
// that is an ELF file. QEMU boots the ELF through PVH, which skips decompressing the kernel in the
// guest: seconds under TCG. Our own few lines, since no Debian package ships extract-vmlinux.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

interface Format {
  name: string;
  magic: Buffer;
  decompress(data: Buffer): Buffer | undefined;
}

const viaCommand =
  (cmd: string, args: string[]) =>
  (data: Buffer): Buffer | undefined => {
    // The compressed stream is followed by the rest of the image, so the tool complains about
    // trailing garbage after writing all the output: judge by the output, not the exit code.
    // A file rather than a pipe: the tool stops reading at the end of its stream, which would turn
    // into EPIPE on our side.
    const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vmlinux-')), 'tail');
    try {
      fs.writeFileSync(tmp, data);
      const fd = fs.openSync(tmp, 'r');
      const r = spawnSync(cmd, args, { stdio: [fd, 'pipe', 'ignore'], maxBuffer: 1 << 30 });
      fs.closeSync(fd);
      if (r.error) throw new Error(`${cmd}: ${r.error.message} (install ${cmd === 'xz' ? 'xz-utils' : cmd})`);
      return r.stdout?.length ? r.stdout : undefined;
    } finally {
      fs.rmSync(path.dirname(tmp), { recursive: true, force: true });
    }
  };

/** RFC 1952 header: 10 bytes, then the optional extra field, name, comment and header CRC. */
function gzipHeaderLength(d: Buffer): number {
  const flags = d[3];
  let at = 10;
  if (flags & 4) at += 2 + d.readUInt16LE(at);
  if (flags & 8) at = d.indexOf(0, at) + 1;
  if (flags & 16) at = d.indexOf(0, at) + 1;
  if (flags & 2) at += 2;
  return at;
}

const formats: Format[] = [
  { name: 'xz', magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), decompress: viaCommand('xz', ['-dc']) },
  { name: 'zstd', magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), decompress: viaCommand('zstd', ['-dcq']) },
  {
    name: 'gzip',
    magic: Buffer.from([0x1f, 0x8b, 0x08]),
    // gunzip would read the bytes after the member as a second member and fail, so skip the
    // header and inflate the raw deflate stream, which stops at its own end.
    decompress: (d) => {
      try {
        return zlib.inflateRawSync(d.subarray(gzipHeaderLength(d)), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
      } catch {
        return undefined;
      }
    },
  },
];

export function isElf(b: Buffer): boolean {
  return b.length > 4 && b[0] === 0x7f && b.toString('latin1', 1, 4) === 'ELF';
}

export function extractVmlinux(bzImage: Buffer): { elf: Buffer; format: string } {
  if (isElf(bzImage)) return { elf: bzImage, format: 'none' };
  for (const f of formats) {
    for (let at = bzImage.indexOf(f.magic); at >= 0; at = bzImage.indexOf(f.magic, at + 1)) {
      const out = f.decompress(bzImage.subarray(at));
      if (out && isElf(out)) return { elf: out, format: f.name };
    }
  }
  throw new Error('no compressed ELF kernel found in the image (formats tried: xz, zstd, gzip)');
}

export function extractVmlinuxFile(src: string, dst: string): string {
  const { elf, format } = extractVmlinux(fs.readFileSync(src));
  fs.writeFileSync(dst, elf);
  return format;
}
