// Seccomp profiles for tests: OCI JSON (as config.json holds it) turned into the kata protos' message
// shapes, in the 3.x numbering (ttrpc) or the 1.x one (gRPC), which has no Flags and no errnoret.
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from './agent-process.js';

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: { names: string[]; action: string; errnoRet?: number; args?: { index: number; value: number; valueTwo?: number; op: string }[] }[];
}

/** The profile as grpc.LinuxSeccomp (3.x). defaultErrnoRet has no field in the kata protos and is dropped. */
export function seccomp3x(p: OciSeccomp) {
  return {
    DefaultAction: p.defaultAction,
    Architectures: p.architectures ?? [],
    Flags: p.flags ?? [],
    Syscalls: (p.syscalls ?? []).map((s) => ({
      Names: s.names,
      Action: s.action,
      ErrnoRet: s.errnoRet === undefined ? undefined : { case: 'errnoret' as const, value: s.errnoRet },
      Args: (s.args ?? []).map((a) => ({ Index: BigInt(a.index), Value: BigInt(a.value), ValueTwo: BigInt(a.valueTwo ?? 0), Op: a.op })),
    })),
  };
}

/** The profile as grpc.compat1x.LinuxSeccomp: what a kata 1.x host can express of it. */
export function seccomp1x(p: OciSeccomp) {
  const { DefaultAction, Architectures, Syscalls } = seccomp3x(p);
  return { DefaultAction, Architectures, Syscalls: Syscalls.map((s) => ({ Names: s.Names, Action: s.Action, Args: s.Args })) };
}

/** Docker's default profile, resolved for x86_64 and Docker's default capabilities (test/fixtures/seccomp). */
export function dockerDefaultProfile(): OciSeccomp {
  return JSON.parse(fs.readFileSync(path.join(repoRoot, 'test/fixtures/seccomp/docker-default.json'), 'utf8')) as OciSeccomp;
}

/** Docker's default capability set (the one the fixture is resolved for). */
export const dockerDefaultCaps = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];
