// The seam over libseccomp (Debian's libseccomp2), in the shape of linux/libc.ts: the real one binds
// each C function through koffi on first use (koffi-libseccomp.ts), unit tests use
// test/support/recording-libseccomp.ts. Numbers below are libseccomp's ABI (seccomp.h), which is
// the same on every architecture.

/** An opaque scmp_filter_ctx. */
export type FilterContext = object;

/** struct scmp_arg_cmp: argument `index` compared by `op` (SCMP_CMP_*); for MASKED_EQ `a` is the mask and `b` the value. */
export interface ArgCompare {
  index: number;
  op: number;
  a: bigint;
  b: bigint;
}

export interface LibseccompVersion {
  major: number;
  minor: number;
  micro: number;
  /** seccomp_api_get(): what the running kernel supports (0: no seccomp filters at all). */
  api: number;
}

/** Every method throws SyscallError (named after the libseccomp function) on a negative return. */
export interface Libseccomp {
  version(): LibseccompVersion;
  /** The native-architecture number of a syscall (negative pseudo numbers for ones only other arches have); undefined if libseccomp does not know the name. */
  resolveSyscall(name: string): number | undefined;
  /** The SCMP_ARCH_* token of libseccomp's name for an architecture ("x86_64"); undefined if unknown. */
  resolveArch(name: string): number | undefined;
  init(defaultAction: number): FilterContext;
  /** Adds an architecture; throws EEXIST when the filter has it already (the native one always). */
  archAdd(ctx: FilterContext, token: number): void;
  attrSet(ctx: FilterContext, attr: number, value: number): void;
  ruleAdd(ctx: FilterContext, action: number, syscall: number, args: ArgCompare[]): void;
  /** Installs the filter on the calling thread. */
  load(ctx: FilterContext): void;
  release(ctx: FilterContext): void;
}

// Actions (SCMP_ACT_*); ERRNO and TRACE carry a 16-bit value in their low bits.
export const SCMP_ACT_KILL_PROCESS = 0x80000000;
export const SCMP_ACT_KILL_THREAD = 0x00000000;
export const SCMP_ACT_TRAP = 0x00030000;
export const SCMP_ACT_NOTIFY = 0x7fc00000;
export const SCMP_ACT_LOG = 0x7ffc0000;
export const SCMP_ACT_ALLOW = 0x7fff0000;
export const SCMP_ACT_ERRNO = (errno: number) => (0x00050000 | (errno & 0xffff)) >>> 0;
export const SCMP_ACT_TRACE = (msg: number) => (0x7ff00000 | (msg & 0xffff)) >>> 0;

// enum scmp_compare.
export const SCMP_CMP_NE = 1;
export const SCMP_CMP_LT = 2;
export const SCMP_CMP_LE = 3;
export const SCMP_CMP_EQ = 4;
export const SCMP_CMP_GE = 5;
export const SCMP_CMP_GT = 6;
export const SCMP_CMP_MASKED_EQ = 7;

// enum scmp_filter_attr.
export const SCMP_FLTATR_CTL_NNP = 3;
export const SCMP_FLTATR_CTL_TSYNC = 4;
export const SCMP_FLTATR_CTL_LOG = 6;
export const SCMP_FLTATR_CTL_SSB = 7;
export const SCMP_FLTATR_API_SYSRAWRC = 9;
/** libseccomp 2.6+ only; older ones refuse the attribute with EINVAL. */
export const SCMP_FLTATR_CTL_WAITKILL = 10;

/** struct scmp_arg_cmp on every 64-bit ABI: unsigned int arg, enum op, u64 datum_a, u64 datum_b. */
export const ARG_CMP_SIZE = 24;
/** Syscalls take at most six arguments. */
export const MAX_ARGS = 6;
