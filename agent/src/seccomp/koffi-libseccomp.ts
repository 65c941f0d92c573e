// The real Libseccomp: libseccomp.so.2 opened through koffi (the one koffi-libc.ts loads) on first
// use, each function bound when first called, as koffi-libc.ts does for libc.
import type { LibraryHandle } from 'koffi';
import { SyscallError } from '../linux/errno.js';
import { koffiModule } from '../linux/koffi-libc.js';
import { lazyTable, lazyValue } from '../linux/lazy-table.js';
import { ARG_CMP_SIZE, type ArgCompare, type FilterContext, type Libseccomp } from './libseccomp.js';

/** The soname of Debian's libseccomp2 (and every distribution's libseccomp 2.x). */
export const LIBSECCOMP_SONAME = 'libseccomp.so.2';

const lib = lazyValue((): LibraryHandle => koffiModule().load(LIBSECCOMP_SONAME));

const prototypes = {
  seccomp_version: 'const void *seccomp_version()',
  seccomp_api_get: 'unsigned int seccomp_api_get()',
  seccomp_syscall_resolve_name: 'int seccomp_syscall_resolve_name(const char *)',
  seccomp_arch_resolve_name: 'uint32_t seccomp_arch_resolve_name(const char *)',
  seccomp_init: 'void *seccomp_init(uint32_t)',
  seccomp_release: 'void seccomp_release(void *)',
  seccomp_arch_add: 'int seccomp_arch_add(void *, uint32_t)',
  seccomp_attr_set: 'int seccomp_attr_set(void *, int, uint32_t)',
  seccomp_rule_add_array: 'int seccomp_rule_add_array(void *, uint32_t, int, unsigned int, const void *)',
  seccomp_load: 'int seccomp_load(void *)',
};

const c = lazyTable(prototypes, (prototype) => lib().func(prototype));

/** libseccomp returns -errno (not -1 and errno) from every function that can fail. */
function check(name: string, detail: string, rc: number): void {
  if (rc < 0) throw new SyscallError(name, -rc, detail);
}

/** __NR_SCMP_ERROR: what seccomp_syscall_resolve_name answers for a name it does not know. */
const NR_SCMP_ERROR = -1;

function argArray(args: ArgCompare[]): Buffer | null {
  if (args.length === 0) return null;
  const buf = Buffer.alloc(ARG_CMP_SIZE * args.length);
  args.forEach((a, i) => {
    const o = i * ARG_CMP_SIZE;
    buf.writeUInt32LE(a.index, o);
    buf.writeUInt32LE(a.op, o + 4);
    buf.writeBigUInt64LE(BigInt.asUintN(64, a.a), o + 8);
    buf.writeBigUInt64LE(BigInt.asUintN(64, a.b), o + 16);
  });
  return buf;
}

export const koffiLibseccomp: Libseccomp = {
  version() {
    // struct scmp_version { unsigned int major, minor, micro; }
    const [major, minor, micro] = koffiModule().decode(c.seccomp_version(), 'unsigned int', 3) as number[];
    return { major, minor, micro, api: c.seccomp_api_get() };
  },
  resolveSyscall(name) {
    const nr = c.seccomp_syscall_resolve_name(name) as number;
    return nr === NR_SCMP_ERROR ? undefined : nr;
  },
  resolveArch(name) {
    const token = c.seccomp_arch_resolve_name(name) as number;
    return token === 0 ? undefined : token;
  },
  init(defaultAction) {
    const ctx = c.seccomp_init(defaultAction) as FilterContext | null;
    // NULL without an errno: the action is one this libseccomp or kernel does not know.
    if (ctx === null) throw new SyscallError('seccomp_init', 22 /* EINVAL */, `default action 0x${defaultAction.toString(16)}`);
    return ctx;
  },
  archAdd(ctx, token) {
    check('seccomp_arch_add', `0x${token.toString(16)}`, c.seccomp_arch_add(ctx, token));
  },
  attrSet(ctx, attr, value) {
    check('seccomp_attr_set', `${attr}, ${value}`, c.seccomp_attr_set(ctx, attr, value));
  },
  ruleAdd(ctx, action, syscall, args) {
    check('seccomp_rule_add', `0x${action.toString(16)}, ${syscall}`, c.seccomp_rule_add_array(ctx, action, syscall, args.length, argArray(args)));
  },
  load(ctx) {
    check('seccomp_load', '', c.seccomp_load(ctx));
  },
  release(ctx) {
    c.seccomp_release(ctx);
  },
};
