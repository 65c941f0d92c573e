import { SyscallError } from '../../agent/src/linux/errno.js';
import type { CapSets, FileStat, Libc, ReceivedFd, WaitResult, Winsize } from '../../agent/src/linux/libc.js';

export interface RecordedCall {
  name: keyof Libc;
  args: unknown[];
}

type Script = { [K in keyof Libc]?: (...args: Parameters<Libc[K]>) => ReturnType<Libc[K]> };

/**
 * A Libc for unit tests: records every call in order and answers from a script. A call with no
 * script entry returns a neutral value (0 / undefined) so tests only script what they assert on;
 * `fail(name, errno)` makes a call throw the SyscallError the real one would.
 */
export class RecordingLibc implements Libc {
  readonly calls: RecordedCall[] = [];
  private readonly failures = new Map<keyof Libc, number>();
  private nextFd = 100;

  constructor(private readonly script: Script = {}) {}

  fail(name: keyof Libc, errno: number): this {
    this.failures.set(name, errno);
    return this;
  }

  private run<K extends keyof Libc>(name: K, args: Parameters<Libc[K]>, neutral: ReturnType<Libc[K]>): ReturnType<Libc[K]> {
    this.calls.push({ name, args });
    const errno = this.failures.get(name);
    if (errno !== undefined) throw new SyscallError(name, errno, args.map(String).join(', '));
    const f = this.script[name] as ((...a: Parameters<Libc[K]>) => ReturnType<Libc[K]>) | undefined;
    return f ? f(...args) : neutral;
  }

  getpid() {
    return this.run('getpid', [], 4242);
  }
  socket(d: number, t: number, p: number) {
    return this.run('socket', [d, t, p], this.nextFd++);
  }
  socketpair(d: number, t: number, p: number) {
    return this.run('socketpair', [d, t, p], [this.nextFd++, this.nextFd++]);
  }
  sendFd(s: number, fd: number, data: Uint8Array) {
    this.run('sendFd', [s, fd, data], undefined);
  }
  recvFd(s: number, buf: Uint8Array, fl: number): ReceivedFd {
    return this.run('recvFd', [s, buf, fl], { bytes: 0, fd: undefined });
  }
  bindVsock(fd: number, cid: number, port: number) {
    this.run('bindVsock', [fd, cid, port], undefined);
  }
  connectVsock(fd: number, cid: number, port: number) {
    this.run('connectVsock', [fd, cid, port], undefined);
  }
  listen(fd: number, backlog: number) {
    this.run('listen', [fd, backlog], undefined);
  }
  bindNetlink(fd: number, port: number, groups: number) {
    this.run('bindNetlink', [fd, port, groups], undefined);
  }
  sendNetlink(fd: number, data: Uint8Array, port: number) {
    return this.run('sendNetlink', [fd, data, port], data.length);
  }
  recv(fd: number, buf: Uint8Array, fl: number) {
    return this.run('recv', [fd, buf, fl], 0);
  }
  setsockoptInt(fd: number, level: number, name: number, value: number) {
    this.run('setsockoptInt', [fd, level, name, value], undefined);
  }
  close(fd: number) {
    this.run('close', [fd], undefined);
  }
  mount(s: string | null, t: string, f: string | null, fl: number, d: string | null) {
    this.run('mount', [s, t, f, fl, d], undefined);
  }
  umount2(t: string, fl: number) {
    this.run('umount2', [t, fl], undefined);
  }
  unshare(fl: number) {
    this.run('unshare', [fl], undefined);
  }
  setns(fd: number, t: number) {
    this.run('setns', [fd, t], undefined);
  }
  sethostname(n: string) {
    this.run('sethostname', [n], undefined);
  }
  setsid() {
    return this.run('setsid', [], 4242);
  }
  prctl(o: number, a2: number, a3?: number) {
    return this.run('prctl', [o, a2, a3], 0);
  }
  capset(sets: CapSets) {
    this.run('capset', [sets], undefined);
  }
  setgroups(gids: number[]) {
    this.run('setgroups', [gids], undefined);
  }
  setresgid(gid: number) {
    this.run('setresgid', [gid], undefined);
  }
  setresuid(uid: number) {
    this.run('setresuid', [uid], undefined);
  }
  setrlimit(r: number, soft: bigint, hard: bigint) {
    this.run('setrlimit', [r, soft, hard], undefined);
  }
  chdir(p: string) {
    this.run('chdir', [p], undefined);
  }
  fchdir(fd: number) {
    this.run('fchdir', [fd], undefined);
  }
  chroot(p: string) {
    this.run('chroot', [p], undefined);
  }
  pivotRoot(n: string, o: string) {
    this.run('pivotRoot', [n, o], undefined);
  }
  mknod(p: string, mode: number, ma: number, mi: number) {
    this.run('mknod', [p, mode, ma, mi], undefined);
  }
  openat(d: number, p: string, fl: number, m: number) {
    return this.run('openat', [d, p, fl, m], this.nextFd++);
  }
  openat2(d: number, p: string, fl: number, m: number, r: number) {
    return this.run('openat2', [d, p, fl, m, r], this.nextFd++);
  }
  mkdirat(d: number, p: string, m: number) {
    this.run('mkdirat', [d, p, m], undefined);
  }
  mknodat(d: number, p: string, mode: number, ma: number, mi: number) {
    this.run('mknodat', [d, p, mode, ma, mi], undefined);
  }
  fchownat(d: number, p: string, u: number, g: number, fl: number) {
    this.run('fchownat', [d, p, u, g, fl], undefined);
  }
  symlinkat(t: string, d: number, p: string) {
    this.run('symlinkat', [t, d, p], undefined);
  }
  unlinkat(d: number, p: string, fl: number) {
    this.run('unlinkat', [d, p, fl], undefined);
  }
  fstat(fd: number): FileStat {
    return this.run('fstat', [fd], { dev: 0, mode: 0 });
  }
  faccessat(d: number, p: string, m: number, fl: number) {
    this.run('faccessat', [d, p, m, fl], undefined);
  }
  write(fd: number, data: Uint8Array) {
    return this.run('write', [fd, data], data.length);
  }
  closeRange(f: number, l: number, fl: number) {
    this.run('closeRange', [f, l, fl], undefined);
  }
  resetSignal(s: number) {
    this.run('resetSignal', [s], undefined);
  }
  execve(p: string, argv: string[], envp: string[]): never {
    this.run('execve', [p, argv, envp], undefined as never);
    throw new SyscallError('execve', 38, p);
  }
  dup3(o: number, n: number, fl: number) {
    this.run('dup3', [o, n, fl], undefined);
  }
  waitpid(pid: number, o: number): WaitResult {
    return this.run('waitpid', [pid, o], { pid: 0, status: 0 });
  }
  reboot(cmd: number) {
    this.run('reboot', [cmd], undefined);
  }
  sync() {
    this.run('sync', [], undefined);
  }
  swapon(p: string, fl: number) {
    this.run('swapon', [p, fl], undefined);
  }
  finitModule(fd: number, p: string, fl: number) {
    this.run('finitModule', [fd, p, fl], undefined);
  }
  ioctlBuf(fd: number, r: number, b: Buffer) {
    return this.run('ioctlBuf', [fd, r, b], 0);
  }
  eventfd(i: number, fl: number) {
    return this.run('eventfd', [i, fl], this.nextFd++);
  }
  bpfProgLoad(t: number, insns: Uint8Array, lic: string) {
    return this.run('bpfProgLoad', [t, insns, lic], this.nextFd++);
  }
  bpfProgAttach(target: number, prog: number, type: number, fl: number) {
    this.run('bpfProgAttach', [target, prog, type, fl], undefined);
  }
  bpfProgDetach(target: number, prog: number, type: number) {
    this.run('bpfProgDetach', [target, prog, type], undefined);
  }
  read(fd: number, buf: Uint8Array) {
    return this.run('read', [fd, buf], 0);
  }
  pipe2(fl: number) {
    return this.run('pipe2', [fl], [this.nextFd++, this.nextFd++]);
  }
  fcntl(fd: number, cmd: number, arg?: number) {
    return this.run('fcntl', [fd, cmd, arg], 0);
  }
  posixOpenpt(fl: number) {
    return this.run('posixOpenpt', [fl], this.nextFd++);
  }
  unlockpt(fd: number) {
    this.run('unlockpt', [fd], undefined);
  }
  ioctlInt(fd: number, req: number, arg: number) {
    return this.run('ioctlInt', [fd, req, arg], 0);
  }
  setWinsize(fd: number, size: Winsize) {
    this.run('setWinsize', [fd, size], undefined);
  }
  getWinsize(fd: number) {
    return this.run('getWinsize', [fd], { rows: 0, cols: 0 });
  }
  poll(fd: number, events: number, timeoutMs: number) {
    return this.run('poll', [fd, events, timeoutMs], 0);
  }
  settimeofday(sec: bigint, usec: bigint) {
    this.run('settimeofday', [sec, usec], undefined);
  }
  mallocTrim(pad: number) {
    return this.run('mallocTrim', [pad], false);
  }
}
