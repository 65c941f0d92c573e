// Turns a container's OCI seccomp profile into the numeric filter plan the container-init helper
// loads. Pure given the name lookups (libseccomp's, in the agent), so every refusal happens at
// CreateContainer with a clear status and the helper only loads what was already checked.
import { InvalidArgument } from '../errors.js';
import {
  MAX_ARGS,
  SCMP_ACT_ALLOW,
  SCMP_ACT_ERRNO,
  SCMP_ACT_KILL_PROCESS,
  SCMP_ACT_KILL_THREAD,
  SCMP_ACT_LOG,
  SCMP_ACT_TRACE,
  SCMP_ACT_TRAP,
  SCMP_CMP_EQ,
  SCMP_CMP_GE,
  SCMP_CMP_GT,
  SCMP_CMP_LE,
  SCMP_CMP_LT,
  SCMP_CMP_MASKED_EQ,
  SCMP_CMP_NE,
  SCMP_FLTATR_CTL_LOG,
  SCMP_FLTATR_CTL_SSB,
  SCMP_FLTATR_CTL_WAITKILL,
} from './libseccomp.js';

const EPERM = 1;

/** The OCI profile as the kata protos carry it (grpc.LinuxSeccomp satisfies this). */
export interface SeccompProfile {
  DefaultAction: string;
  /** OCI's defaultErrnoRet. Neither kata generation's proto has the field, so from the wire it is absent (EPERM). */
  DefaultErrnoRet?: number;
  Architectures: string[];
  Flags: string[];
  Syscalls: {
    Names: string[];
    Action: string;
    ErrnoRet?: { case: 'errnoret'; value: number } | { case: undefined; value?: undefined };
    Args: { Index: bigint; Value: bigint; ValueTwo: bigint; Op: string }[];
  }[];
}

/** What libseccomp knows, asked by name. */
export interface SeccompNames {
  syscall(name: string): number | undefined;
  arch(name: string): number | undefined;
}

export interface SeccompRule {
  /** The syscall's name, for messages. */
  name: string;
  nr: number;
  action: number;
  /** Datums as decimal strings: JSON has no 64-bit integers. */
  args: { index: number; op: number; a: string; b: string }[];
}

/** The helper's part of the plan: everything numeric, nothing left to look up. */
export interface SeccompPlan {
  defaultAction: number;
  architectures: { name: string; token: number }[];
  /** libseccomp attributes set to 1 for the profile's SECCOMP_FILTER_FLAG_* flags. */
  flags: { name: string; attr: number }[];
  rules: SeccompRule[];
}

const operators: Record<string, number> = {
  SCMP_CMP_NE,
  SCMP_CMP_LT,
  SCMP_CMP_LE,
  SCMP_CMP_EQ,
  SCMP_CMP_GE,
  SCMP_CMP_GT,
  SCMP_CMP_MASKED_EQ,
};

const flagAttrs: Record<string, number | null> = {
  SECCOMP_FILTER_FLAG_LOG: SCMP_FLTATR_CTL_LOG,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: SCMP_FLTATR_CTL_SSB,
  SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: SCMP_FLTATR_CTL_WAITKILL,
  // The filter is loaded by the thread that then execs, and execve ends every other thread: there
  // is nothing to synchronise (runc ignores it for the same reason).
  SECCOMP_FILTER_FLAG_TSYNC: null,
};

function errnoValue(value: number | undefined, what: string): number {
  if (value === undefined) return EPERM;
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new InvalidArgument(`seccomp: ${what} errnoRet ${value} is not a 16-bit value`);
  return value;
}

/** The SCMP_ACT_* value of an OCI action name; `errnoRet` only matters to ERRNO and TRACE, as in runc. */
export function seccompAction(name: string, errnoRet: number | undefined, what: string): number {
  switch (name) {
    case 'SCMP_ACT_ALLOW':
      return SCMP_ACT_ALLOW;
    case 'SCMP_ACT_ERRNO':
      return SCMP_ACT_ERRNO(errnoValue(errnoRet, what));
    case 'SCMP_ACT_TRACE':
      return SCMP_ACT_TRACE(errnoValue(errnoRet, what));
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return SCMP_ACT_KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return SCMP_ACT_KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return SCMP_ACT_TRAP;
    case 'SCMP_ACT_LOG':
      return SCMP_ACT_LOG;
    case 'SCMP_ACT_NOTIFY':
      // A notify filter needs a supervisor holding its fd (OCI's listenerPath); the kata protos carry none.
      throw new InvalidArgument(`seccomp: ${what} action SCMP_ACT_NOTIFY is not supported (no listener can be given through the kata API)`);
    default:
      throw new InvalidArgument(`seccomp: ${what} has unknown action "${name}"`);
  }
}

/** "SCMP_ARCH_X86_64" → libseccomp's "x86_64". */
function archName(arch: string): string | undefined {
  return arch.startsWith('SCMP_ARCH_') && arch.length > 10 ? arch.slice(10).toLowerCase() : undefined;
}

function args(call: SeccompProfile['Syscalls'][number], what: string): SeccompRule['args'] {
  return call.Args.map((a) => {
    const op = operators[a.Op];
    if (op === undefined) throw new InvalidArgument(`seccomp: ${what} has unknown operator "${a.Op}"`);
    if (a.Index >= BigInt(MAX_ARGS)) throw new InvalidArgument(`seccomp: ${what} compares argument ${a.Index} (a syscall has ${MAX_ARGS})`);
    return { index: Number(a.Index), op, a: a.Value.toString(), b: a.ValueTwo.toString() };
  });
}

/**
 * libseccomp ANDs the conditions of one rule and takes one condition per argument. Conditions on
 * the same argument twice cannot be ANDed, so (as runc does) each becomes a rule of its own, ORed.
 */
function splitConditions(list: SeccompRule['args']): SeccompRule['args'][] {
  const indexes = list.map((a) => a.index);
  return new Set(indexes).size === indexes.length ? [list] : list.map((a) => [a]);
}

export interface Translated {
  plan: SeccompPlan;
  /** Names libseccomp does not know (newer than it, or misspelt): skipped, as runc does. */
  unknownSyscalls: string[];
}

/** Checks `profile` and resolves every name; throws InvalidArgument naming the first thing wrong. */
export function translateProfile(profile: SeccompProfile, names: SeccompNames): Translated {
  if (profile.DefaultAction === '') throw new InvalidArgument('seccomp: the profile has no DefaultAction');
  const defaultAction = seccompAction(profile.DefaultAction, profile.DefaultErrnoRet, 'DefaultAction');
  const architectures = profile.Architectures.map((arch) => {
    const name = archName(arch);
    const token = name === undefined ? undefined : names.arch(name);
    if (token === undefined) throw new InvalidArgument(`seccomp: unknown architecture "${arch}"`);
    return { name: arch, token };
  });
  const flags: SeccompPlan['flags'] = [];
  for (const flag of profile.Flags) {
    const attr = flagAttrs[flag];
    if (attr === undefined) throw new InvalidArgument(`seccomp: unknown flag "${flag}"`);
    if (attr !== null) flags.push({ name: flag, attr });
  }
  const rules: SeccompRule[] = [];
  const unknownSyscalls: string[] = [];
  profile.Syscalls.forEach((call, i) => {
    const what = `syscall rule ${i} (${call.Names.join(',')})`;
    const errnoRet = call.ErrnoRet?.case === 'errnoret' ? call.ErrnoRet.value : undefined;
    const action = seccompAction(call.Action, errnoRet, what);
    const conditions = args(call, what);
    // libseccomp refuses a rule whose action is the default one; it would change nothing (runc skips it too).
    if (action === defaultAction) return;
    for (const name of call.Names) {
      const nr = names.syscall(name);
      if (nr === undefined) {
        if (!unknownSyscalls.includes(name)) unknownSyscalls.push(name);
        continue;
      }
      for (const set of splitConditions(conditions)) rules.push({ name, nr, action, args: set });
    }
  });
  return { plan: { defaultAction, architectures, flags, rules }, unknownSyscalls };
}
