// The v2 device filter program, run by a small interpreter of the opcodes it uses, against the
// access decisions the v1 devices files would make for the same rules. No root needed; the kernel
// verifier and real enforcement are covered in v2-real.test.ts.
import t from 'tap';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { LinuxDeviceCgroupSchema } from '../../protos/gen/oci_pb.js';
import {
  deviceFilterProgram,
  OP,
  BPF_DEVCG_ACC_MKNOD,
  BPF_DEVCG_ACC_READ,
  BPF_DEVCG_ACC_WRITE,
  BPF_DEVCG_DEV_BLOCK,
  BPF_DEVCG_DEV_CHAR,
} from '../../agent/src/cgroups/device-filter.js';

/** Executes the program on one request; throws on anything the filter should never contain. */
function run(prog: Uint8Array, type: 'c' | 'b', major: number, minor: number, access: string): boolean {
  const buf = Buffer.from(prog);
  const acc = [...access].reduce((m, ch) => m | (ch === 'r' ? BPF_DEVCG_ACC_READ : ch === 'w' ? BPF_DEVCG_ACC_WRITE : BPF_DEVCG_ACC_MKNOD), 0);
  const ctx = Buffer.alloc(12);
  ctx.writeUInt32LE(((acc << 16) | (type === 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK)) >>> 0, 0);
  ctx.writeUInt32LE(major, 4);
  ctx.writeUInt32LE(minor, 8);
  const r = new Array<bigint>(11).fill(0n);
  const CTX = 1n << 40n; // r1 is a pointer; loads must be relative to it
  r[1] = CTX;
  for (let pc = 0, steps = 0; steps < 10_000; steps++) {
    if (pc < 0 || pc * 8 >= buf.length) throw new Error(`pc ${pc} out of the program`);
    const op = buf[pc * 8];
    const dst = buf[pc * 8 + 1] & 0xf;
    const src = buf[pc * 8 + 1] >> 4;
    const off = buf.readInt16LE(pc * 8 + 2);
    const imm = BigInt(buf.readInt32LE(pc * 8 + 4));
    const u64 = (v: bigint) => BigInt.asUintN(64, v);
    pc++;
    switch (op) {
      case OP.LDXW:
        if (src !== 1 || r[1] !== CTX) throw new Error('load not from the context');
        r[dst] = BigInt(ctx.readUInt32LE(off));
        break;
      case OP.MOV64_REG:
        r[dst] = r[src];
        break;
      case OP.MOV64_IMM:
        r[dst] = u64(imm);
        break;
      case OP.AND64_IMM:
        r[dst] = r[dst] & u64(imm);
        break;
      case OP.RSH64_IMM:
        r[dst] = r[dst] >> imm;
        break;
      case OP.JNE_IMM:
        if (r[dst] !== u64(imm)) pc += off;
        break;
      case OP.JEQ_IMM:
        if (r[dst] === u64(imm)) pc += off;
        break;
      case OP.EXIT:
        return r[0] === 1n;
      default:
        throw new Error(`unexpected opcode 0x${op.toString(16)}`);
    }
  }
  throw new Error('program did not exit');
}

/** The kernel verifier refuses unreachable instructions; so does this check. */
function allReachable(prog: Uint8Array): boolean {
  const buf = Buffer.from(prog);
  const n = buf.length / 8;
  const seen = new Set<number>();
  const todo = [0];
  while (todo.length) {
    const pc = todo.pop()!;
    if (pc >= n || seen.has(pc)) continue;
    seen.add(pc);
    const op = buf[pc * 8];
    if (op === OP.EXIT) continue;
    todo.push(pc + 1);
    if (op === OP.JNE_IMM || op === OP.JEQ_IMM) todo.push(pc + 1 + buf.readInt16LE(pc * 8 + 2));
  }
  return seen.size === n;
}

const rules = (...r: MessageInitShape<typeof LinuxDeviceCgroupSchema>[]) => r.map((x) => create(LinuxDeviceCgroupSchema, x));

t.test('no rules: nothing restricted (as a new v1 group)', async (t) => {
  const p = deviceFilterProgram([]);
  t.ok(allReachable(p));
  t.ok(run(p, 'c', 1, 3, 'rwm'));
  t.ok(run(p, 'b', 8, 0, 'r'));
});

t.test('deny all, then an allow list (the usual container spec)', async (t) => {
  const p = deviceFilterProgram(
    rules(
      { Allow: false, Type: 'a', Major: -1n, Minor: -1n, Access: 'rwm' },
      { Allow: true, Type: 'c', Major: 1n, Minor: 3n, Access: 'rwm' },
      { Allow: true, Type: 'c', Major: 136n, Minor: -1n, Access: 'rw' },
      { Allow: true, Type: 'b', Major: 8n, Minor: 0n, Access: 'r' },
    ),
  );
  t.ok(allReachable(p));
  t.ok(run(p, 'c', 1, 3, 'rw'), '/dev/null');
  t.ok(run(p, 'c', 1, 3, 'm'), 'mknod of /dev/null');
  t.notOk(run(p, 'c', 1, 5, 'r'), '/dev/zero not listed');
  t.notOk(run(p, 'b', 1, 3, 'r'), 'block 1:3 is another device');
  t.ok(run(p, 'c', 136, 7, 'rw'), 'any pty by wildcard minor');
  t.notOk(run(p, 'c', 136, 7, 'm'), 'mknod not granted for ptys');
  t.notOk(run(p, 'c', 136, 7, 'rwm'), 'a request is allowed only if every access is granted');
  t.ok(run(p, 'b', 8, 0, 'r'));
  t.notOk(run(p, 'b', 8, 0, 'w'));
  t.notOk(run(p, 'b', 8, 1, 'r'));
});

t.test('allow all, then a partial deny: later rules win, deny matches any forbidden access', async (t) => {
  const p = deviceFilterProgram(rules({ Allow: true, Type: 'a', Access: 'rwm' }, { Allow: false, Type: 'c', Major: 1n, Minor: 5n, Access: 'w' }));
  t.ok(run(p, 'c', 1, 5, 'r'));
  t.notOk(run(p, 'c', 1, 5, 'w'));
  t.notOk(run(p, 'c', 1, 5, 'rw'));
  t.ok(run(p, 'c', 1, 3, 'w'));
  // And re-allowing after a deny-all in the middle of the list.
  const q = deviceFilterProgram(
    rules(
      { Allow: true, Type: 'c', Major: 1n, Minor: 3n, Access: 'rwm' },
      { Allow: false, Type: 'a' },
      { Allow: true, Type: 'c', Major: 5n, Minor: 0n, Access: 'rw' },
    ),
  );
  t.notOk(run(q, 'c', 1, 3, 'r'), 'an earlier allow is overridden by the later deny-all');
  t.ok(run(q, 'c', 5, 0, 'r'));
  t.ok(allReachable(p) && allReachable(q), 'no instruction after an all-matching rule');
});

t.test('malformed rules are refused with what is wrong', async (t) => {
  t.throws(() => deviceFilterProgram(rules({ Allow: true, Type: 'x', Major: 1n, Minor: 1n, Access: 'r' })), /type "x"/);
  t.throws(() => deviceFilterProgram(rules({ Allow: true, Type: 'c', Major: 1n, Minor: 1n, Access: 'rq' })), /access "rq"/);
  t.throws(() => deviceFilterProgram(rules({ Allow: true, Type: 'c', Major: 1n << 40n, Minor: 1n, Access: 'r' })), /major .* out of range/);
  t.throws(() => deviceFilterProgram(rules({ Allow: true, Type: 'x' }, { Allow: false, Type: 'a' })), /type "x"/, 'even when a later rule makes it moot');
});
