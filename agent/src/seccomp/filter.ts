// Builds a libseccomp filter from a checked plan. The agent builds it once at CreateContainer and
// throws it away (libseccomp's own refusals, e.g. two actions for one syscall, then fail the RPC);
// the container-init helper builds it again and loads it just before execve.
import { SyscallError } from '../linux/errno.js';
import { SCMP_FLTATR_API_SYSRAWRC, SCMP_FLTATR_CTL_NNP, type FilterContext, type Libseccomp } from './libseccomp.js';
import type { SeccompPlan } from './profile.js';

function build(lib: Libseccomp, plan: SeccompPlan): FilterContext {
  const ctx = lib.init(plan.defaultAction);
  try {
    // no_new_privs is the helper's decision (applyAndExec), made before the load: libseccomp must not set it.
    lib.attrSet(ctx, SCMP_FLTATR_CTL_NNP, 0);
    // A refused load then reports the kernel's errno rather than libseccomp's generic ECANCELED.
    lib.attrSet(ctx, SCMP_FLTATR_API_SYSRAWRC, 1);
    for (const f of plan.flags) {
      try {
        lib.attrSet(ctx, f.attr, 1);
      } catch (err) {
        throw new SyscallError('seccomp_attr_set', (err as SyscallError).errno ?? 22, `${f.name} (this libseccomp or kernel lacks it)`);
      }
    }
    for (const a of plan.architectures) {
      try {
        lib.archAdd(ctx, a.token);
      } catch (err) {
        if ((err as SyscallError).code !== 'EEXIST') throw err;
      }
    }
    for (const r of plan.rules) {
      try {
        lib.ruleAdd(
          ctx,
          r.action,
          r.nr,
          r.args.map((a) => ({ index: a.index, op: a.op, a: BigInt(a.a), b: BigInt(a.b) })),
        );
      } catch (err) {
        const e = err as SyscallError;
        throw new SyscallError('seccomp_rule_add', e.errno ?? 22, `${r.name}, action 0x${r.action.toString(16)}, ${r.args.length} condition(s)`);
      }
    }
    return ctx;
  } catch (err) {
    lib.release(ctx);
    throw err;
  }
}

/** Builds the filter and releases it: every refusal libseccomp would make at load time, but now. */
export function checkFilter(lib: Libseccomp, plan: SeccompPlan): void {
  lib.release(build(lib, plan));
}

/** Builds the filter and installs it on the calling thread. */
export function loadFilter(lib: Libseccomp, plan: SeccompPlan): void {
  const ctx = build(lib, plan);
  try {
    lib.load(ctx);
  } catch (err) {
    lib.release(ctx);
    throw err;
  }
  // Not released once loaded: free() may munmap, which the filter may now forbid, and execve
  // follows at once and takes the memory with it.
}
