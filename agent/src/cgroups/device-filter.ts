// cgroup v2 has no devices.allow/deny files: device access is decided by an eBPF program of type
// BPF_PROG_TYPE_CGROUP_DEVICE attached to the group. This builds that program from OCI device rules.
// Hand-written because no maintained npm package assembles eBPF; the program only compares the
// three context fields against constants, so it needs eight opcodes.
//
// Semantics (those of the v1 devices files the rules were written for): rules apply in order, a
// later rule overriding earlier ones, so the program checks them last to first and the first match
// decides. A request no rule matches is allowed, as in a new v1 group (specs start with "deny all").
// An allow rule matches when it grants every access asked for; a deny rule when it forbids any.
import type { LinuxDeviceCgroup } from '../../../protos/gen/oci_pb.js';

/** struct bpf_cgroup_dev_ctx: access_type (access << 16 | type) u32 @0, major u32 @4, minor u32 @8. */
export const DEV_CTX = { accessType: 0, major: 4, minor: 8 } as const;
export const BPF_DEVCG_DEV_BLOCK = 1;
export const BPF_DEVCG_DEV_CHAR = 2;
export const BPF_DEVCG_ACC_MKNOD = 1;
export const BPF_DEVCG_ACC_READ = 2;
export const BPF_DEVCG_ACC_WRITE = 4;
const ACC_ALL = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;

// Opcodes (class | op | source) from linux/bpf.h.
export const OP = {
  LDXW: 0x61, // dst = *(u32 *)(src + off)
  MOV64_REG: 0xbf,
  MOV64_IMM: 0xb7,
  AND64_IMM: 0x57,
  RSH64_IMM: 0x77,
  JNE_IMM: 0x55, // if dst != imm: pc += off
  JEQ_IMM: 0x15,
  EXIT: 0x95,
} as const;

interface Insn {
  op: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

const ins = (op: number, dst = 0, src = 0, off = 0, imm = 0): Insn => ({ op, dst, src, off, imm });

// Registers: r1 = context; r2 = access bits; r3 = device type; r4 = major; r5 = minor; r6 = scratch.
const R0 = 0,
  R1 = 1,
  R2 = 2,
  R3 = 3,
  R4 = 4,
  R5 = 5,
  R6 = 6;

export function accessMask(access: string): number {
  const a = access || 'rwm';
  let mask = 0;
  for (const ch of a) {
    if (ch === 'r') mask |= BPF_DEVCG_ACC_READ;
    else if (ch === 'w') mask |= BPF_DEVCG_ACC_WRITE;
    else if (ch === 'm') mask |= BPF_DEVCG_ACC_MKNOD;
    else throw new RangeError(`device rule access "${access}": only r, w and m are allowed`);
  }
  return mask;
}

/** One rule's block: jumps (patched to the block's end) that skip it unless it matches, then the verdict. */
function ruleBlock(rule: LinuxDeviceCgroup): Insn[] {
  const block: Insn[] = [];
  const skips: number[] = [];
  const skipIf = (op: number, reg: number, imm: number) => {
    skips.push(block.length);
    block.push(ins(op, reg, 0, 0, imm));
  };
  const type = rule.Type || 'a';
  if (type !== 'a') {
    if (type !== 'c' && type !== 'b') throw new RangeError(`device rule type "${rule.Type}": use a, b or c`);
    skipIf(OP.JNE_IMM, R3, type === 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK);
    const mask = accessMask(rule.Access);
    if (mask !== ACC_ALL) {
      block.push(ins(OP.MOV64_REG, R6, R2));
      if (rule.Allow) {
        // Asked-for bits outside what the rule grants: not this rule.
        block.push(ins(OP.AND64_IMM, R6, 0, 0, ~mask & ACC_ALL));
        skipIf(OP.JNE_IMM, R6, 0);
      } else {
        // None of the asked-for bits is forbidden: not this rule.
        block.push(ins(OP.AND64_IMM, R6, 0, 0, mask));
        skipIf(OP.JEQ_IMM, R6, 0);
      }
    }
    if (rule.Major >= 0n) skipIf(OP.JNE_IMM, R4, checkedU32(rule.Major, 'major'));
    if (rule.Minor >= 0n) skipIf(OP.JNE_IMM, R5, checkedU32(rule.Minor, 'minor'));
  }
  block.push(ins(OP.MOV64_IMM, R0, 0, 0, rule.Allow ? 1 : 0), ins(OP.EXIT));
  for (const at of skips) block[at].off = block.length - at - 1;
  return block;
}

function checkedU32(n: bigint, what: string): number {
  // Jump immediates are signed 32-bit; device numbers are at most 2^20.
  if (n > 0x7fffffffn) throw new RangeError(`device rule ${what} ${n} is out of range`);
  return Number(n);
}

/** The program's instructions as struct bpf_insn[] bytes. Throws RangeError for malformed rules. */
export function deviceFilterProgram(rules: LinuxDeviceCgroup[]): Uint8Array {
  const prog: Insn[] = [
    ins(OP.LDXW, R2, R1, DEV_CTX.accessType),
    ins(OP.MOV64_REG, R3, R2),
    ins(OP.AND64_IMM, R3, 0, 0, 0xffff),
    ins(OP.RSH64_IMM, R2, 0, 0, 16),
    ins(OP.LDXW, R4, R1, DEV_CTX.major),
    ins(OP.LDXW, R5, R1, DEV_CTX.minor),
  ];
  // Every rule is checked for validity, even those an "a" rule later in the list makes moot.
  const blocks = [...rules].reverse().map((rule) => ({ rule, block: ruleBlock(rule) }));
  let decided = false;
  for (const { rule, block } of blocks) {
    prog.push(...block);
    // An "a" rule matches everything: what comes after it could never run, and the verifier
    // refuses unreachable instructions.
    if ((rule.Type || 'a') === 'a') {
      decided = true;
      break;
    }
  }
  if (!decided) prog.push(ins(OP.MOV64_IMM, R0, 0, 0, 1), ins(OP.EXIT));
  const out = Buffer.alloc(prog.length * 8);
  prog.forEach((p, i) => {
    out.writeUInt8(p.op, i * 8);
    out.writeUInt8((p.src << 4) | p.dst, i * 8 + 1);
    out.writeInt16LE(p.off, i * 8 + 2);
    out.writeInt32LE(p.imm, i * 8 + 4);
  });
  return out;
}
