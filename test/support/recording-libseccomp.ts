import { SyscallError } from '../../agent/src/linux/errno.js';
import type { ArgCompare, FilterContext, Libseccomp, LibseccompVersion } from '../../agent/src/seccomp/libseccomp.js';

export interface RecordedSeccompCall {
  name: keyof Libseccomp;
  args: unknown[];
}

/**
 * A Libseccomp for unit tests: records every call in order; names resolve from a table given to it;
 * `fail(name, errno)` makes a call throw as the real one does for a -errno return.
 */
export class RecordingLibseccomp implements Libseccomp {
  readonly calls: RecordedSeccompCall[] = [];
  private readonly failures = new Map<keyof Libseccomp, number>();

  constructor(
    private readonly syscalls: Record<string, number> = {},
    private readonly arches: Record<string, number> = {},
    private readonly ver: LibseccompVersion = { major: 2, minor: 5, micro: 4, api: 6 },
  ) {}

  fail(name: keyof Libseccomp, errno: number): this {
    this.failures.set(name, errno);
    return this;
  }

  private record(name: keyof Libseccomp, args: unknown[]): void {
    this.calls.push({ name, args });
    const errno = this.failures.get(name);
    if (errno !== undefined) throw new SyscallError(name, errno, args.map(String).join(', '));
  }

  version() {
    this.record('version', []);
    return this.ver;
  }
  resolveSyscall(name: string) {
    return this.syscalls[name];
  }
  resolveArch(name: string) {
    return this.arches[name];
  }
  init(defaultAction: number): FilterContext {
    this.record('init', [defaultAction]);
    return { ctx: 1 };
  }
  archAdd(_ctx: FilterContext, token: number) {
    this.record('archAdd', [token]);
  }
  attrSet(_ctx: FilterContext, attr: number, value: number) {
    this.record('attrSet', [attr, value]);
  }
  ruleAdd(_ctx: FilterContext, action: number, syscall: number, args: ArgCompare[]) {
    this.record('ruleAdd', [action, syscall, args]);
  }
  load() {
    this.record('load', []);
  }
  release() {
    this.record('release', []);
  }
}
