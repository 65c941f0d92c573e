// Kernel ABI facts the real Libc needs beside the C prototypes: syscall numbers glibc 2.36 has no
// wrapper for, flag values, and the byte layouts of the structs passed by pointer (64-bit Linux).
// Pure data and Buffer builders, apart from koffi-libc.ts so that file stays about the calls.
import { SyscallError } from './errno.js';
import { AF_NETLINK, AF_VSOCK, type Winsize } from './libc.js';

export const AT_EMPTY_PATH = 0x1000;
export const STATX_TYPE = 0x1;
export const STATX_MODE = 0x2;
/** struct statx is 256 bytes on every architecture (unlike struct stat, whose layout differs). */
export const STATX_SIZE = 256;

// Calls glibc 2.36 has no wrapper for. pivot_root's number is per architecture; close_range is
// one of the syscalls numbered alike on every architecture since 5.x.
const SYS_pivot_root_by_arch: Partial<Record<string, number>> = { x64: 155, arm64: 41, s390x: 217, ppc64: 203, riscv64: 41 };
export const SYS_close_range = 436;
/** openat2 is numbered alike on every architecture too (5.6+). */
export const SYS_openat2 = 437;

export function sysPivotRoot(): number {
  const nr = SYS_pivot_root_by_arch[process.arch];
  if (nr === undefined) throw new SyscallError('pivot_root', 38 /* ENOSYS */, `no pivot_root syscall number for ${process.arch}`);
  return nr;
}

/** glibc's makedev(). */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}
// glibc has no finit_module() wrapper either.
export const SYS_finit_module: Partial<Record<string, number>> = { x64: 313, arm64: 273 };

/** struct winsize: ws_row, ws_col, ws_xpixel, ws_ypixel, all unsigned short. */
export function winsize(size: Winsize): Buffer {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(size.rows, 0);
  ws.writeUInt16LE(size.cols, 2);
  return ws;
}

/** struct sockaddr_nl: family u16, pad u16, port id u32, multicast groups u32. */
export function sockaddrNl(portId: number, groups: number): Buffer {
  const sa = Buffer.alloc(12);
  sa.writeUInt16LE(AF_NETLINK, 0);
  sa.writeUInt32LE(portId >>> 0, 4);
  sa.writeUInt32LE(groups >>> 0, 8);
  return sa;
}

/** struct sockaddr_vm: family u16, reserved u16, port u32, cid u32, flags u8, zero[3]. */
export function sockaddrVm(cid: number, port: number): Buffer {
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(AF_VSOCK, 0);
  sa.writeUInt32LE(port >>> 0, 4);
  sa.writeUInt32LE(cid >>> 0, 8);
  return sa;
}

export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;
export const MSG_CTRUNC = 0x8;
/** struct cmsghdr (cmsg_len size_t, cmsg_level int, cmsg_type int) before its data, on 64-bit. */
export const CMSG_HDR = 16;
/** CMSG_SPACE(sizeof(int)): the header, one int, padded to 8. */
export const CMSG_SPACE_FD = 24;

// glibc has no bpf() wrapper; the syscall number is per architecture.
export const SYS_bpf: Partial<Record<string, number>> = { x64: 321, arm64: 280, s390x: 351, ppc64: 361, riscv64: 280 };
export const BPF_PROG_LOAD = 5;
export const BPF_PROG_ATTACH = 8;
export const BPF_PROG_DETACH = 9;
/** Larger than every bpf_attr variant used here; the kernel requires the unused tail to be zero. */
export const BPF_ATTR_SIZE = 128;
