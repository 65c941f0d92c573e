// The real Libc. koffi was chosen over ffi-napi: it installs prebuilt on Node 20 and a call costs
// ~1.5 µs instead of ~15 µs (measured in docs/facts/platform.md).
import fs from 'node:fs';
import path from 'node:path';
import type { LibraryHandle } from 'koffi';
import { SyscallError } from './errno.js';
import { lazyTable, lazyValue } from './lazy-table.js';
import {
  AT_EMPTY_PATH,
  STATX_TYPE,
  STATX_MODE,
  STATX_SIZE,
  SYS_close_range,
  SYS_openat2,
  sysPivotRoot,
  makedev,
  SYS_finit_module,
  winsize,
  sockaddrNl,
  sockaddrVm,
  SOL_SOCKET,
  SCM_RIGHTS,
  MSG_CTRUNC,
  CMSG_HDR,
  CMSG_SPACE_FD,
  SYS_bpf,
  BPF_PROG_LOAD,
  BPF_PROG_ATTACH,
  BPF_PROG_DETACH,
  BPF_ATTR_SIZE,
} from './kernel-abi.js';
import { TIOCGWINSZ, TIOCSWINSZ, type CapSets, type Libc } from './libc.js';

// Nothing FFI happens when this module loads: koffi (its native addon), libc.so.6 and each C
// function are loaded on first use. A process binds only what it calls: the container-init helper,
// a fresh node for every container start, calls at most 33 of these 55 functions.
type Koffi = typeof import('koffi');
const bound: { koffi: false | 'addon' | 'entry'; library: boolean; functions: string[] } = { koffi: false, library: false, functions: [] };

/**
 * koffi's entry point finds its addon by probing: it reads node's ELF headers to tell glibc from musl
 * and tries several folders. Measured in the TCG guest, that JavaScript took ~60 ms of the ~85 ms a
 * require('koffi') costs (dlopen of the addon is the rest), paid at boot and by every container-init
 * helper. The prebuilt glibc addon sits at a fixed path in koffi's per-platform package (which koffi
 * pins to its own version), and it is the whole API used here (the entry point only adds deprecated
 * aliases), so load it directly when it is there; anything else (musl, another layout) takes the
 * documented entry point. No version check through package.json: resolving and parsing it cost
 * another ~16 ms in the guest.
 */
export function loadKoffi(pkg = `@koromix/koffi-${process.platform}-${process.arch}`): { k: Koffi; via: 'addon' | 'entry' } {
  try {
    const file = findInNodeModules(`${pkg}/${process.platform}_${process.arch}/koffi.node`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a native addon found at run time
    const addon = (file ? require(file) : {}) as Partial<Koffi>;
    if (typeof addon.load === 'function' && typeof addon.errno === 'function' && typeof addon.address === 'function')
      return { k: addon as Koffi, via: 'addon' };
  } catch {
    // not a glibc system (a musl node cannot dlopen it): koffi's own loader decides
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- koffi's own loader, only when the direct addon is not usable
  return { k: require('koffi') as Koffi, via: 'entry' };
}

/**
 * The file `rel` in the nearest node_modules folder, as require() would find it. require() itself
 * matches a package path against a regular expression (for package.json "exports"), and the first
 * compile of one costs ~10 ms of a boot under TCG; an absolute path skips that.
 */
function findInNodeModules(rel: string, from = __dirname): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'node_modules', rel);
    if (fs.existsSync(file)) return file;
    if (path.dirname(dir) === dir) return undefined;
  }
}

const ffi = lazyValue(() => {
  const { k, via } = loadKoffi();
  bound.koffi = via;
  return k;
});

/** koffi itself, loaded once per process; seccomp/koffi-libseccomp.ts binds libseccomp through it. */
export const koffiModule: () => Koffi = ffi;

const lib = lazyValue((): LibraryHandle => {
  const l = ffi().load('libc.so.6');
  bound.library = true;
  return l;
});

/** The C prototype of every libc function used here, as koffi parses it. */
const prototypes = {
  getpid: 'int getpid()',
  socket: 'int socket(int, int, int)',
  socketpair: 'int socketpair(int, int, int, _Out_ int *sv)',
  sendmsg: 'intptr_t sendmsg(int, const void *, int)',
  recvmsg: 'intptr_t recvmsg(int, void *, int)',
  bind: 'int bind(int, const void *, uint32_t)',
  connect: 'int connect(int, const void *, uint32_t)',
  listen: 'int listen(int, int)',
  sendto: 'intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)',
  recv: 'intptr_t recv(int, void *, size_t, int)',
  setsockopt: 'int setsockopt(int, int, int, const void *, uint32_t)',
  close: 'int close(int)',
  mount: 'int mount(const char *, const char *, const char *, unsigned long, const char *)',
  umount2: 'int umount2(const char *, int)',
  unshare: 'int unshare(int)',
  setns: 'int setns(int, int)',
  sethostname: 'int sethostname(const char *, size_t)',
  pipe2: 'int pipe2(_Out_ int *fds, int flags)',
  waitpid: 'int waitpid(int, _Out_ int *, int)',
  reboot: 'int reboot(int)',
  sync: 'void sync()',
  swapon: 'int swapon(const char *, int)',
  syscall: 'long syscall(long, ...)',
  prctl: 'int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)',
  setsid: 'int setsid()',
  ioctlBuf: 'int ioctl(int, unsigned long, void *)',
  eventfd: 'int eventfd(unsigned int, int)',
  read: 'intptr_t read(int, void *, size_t)',
  fcntl: 'int fcntl(int, int, ...)',
  ioctl: 'int ioctl(int, unsigned long, ...)',
  capset: 'int capset(void *hdr, void *data)',
  setgroups: 'int setgroups(size_t, const uint32_t *)',
  setresgid: 'int setresgid(uint32_t, uint32_t, uint32_t)',
  setresuid: 'int setresuid(uint32_t, uint32_t, uint32_t)',
  setrlimit: 'int setrlimit(int, const void *)',
  chdir: 'int chdir(const char *)',
  fchdir: 'int fchdir(int)',
  chroot: 'int chroot(const char *)',
  mknod: 'int mknod(const char *, uint32_t, uint64_t)',
  openat: 'int openat(int, const char *, int, ...)',
  mkdirat: 'int mkdirat(int, const char *, uint32_t)',
  mknodat: 'int mknodat(int, const char *, uint32_t, uint64_t)',
  fchownat: 'int fchownat(int, const char *, uint32_t, uint32_t, int)',
  symlinkat: 'int symlinkat(const char *, int, const char *)',
  unlinkat: 'int unlinkat(int, const char *, int)',
  statx: 'int statx(int, const char *, int, unsigned int, void *)',
  faccessat: 'int faccessat(int, const char *, int, int)',
  write: 'intptr_t write(int, const void *, size_t)',
  signal: 'void *signal(int, void *)',
  execve: 'int execve(const char *, const char **, const char **)',
  dup3: 'int dup3(int, int, int)',
  posix_openpt: 'int posix_openpt(int)',
  unlockpt: 'int unlockpt(int)',
  poll: 'int poll(void *, unsigned long, int)',
  settimeofday: 'int settimeofday(const void *, const void *)',
  malloc_trim: 'int malloc_trim(size_t)',
};

const c = lazyTable(prototypes, (prototype, name) => {
  const f = lib().func(prototype);
  bound.functions.push(name);
  return f;
});

/**
 * What has been loaded so far: koffi (and how), libc.so.6, and one entry per function definition in
 * the order they happened (a name twice would mean a definition was not reused).
 */
export function boundSoFar(): { koffi: false | 'addon' | 'entry'; library: boolean; functions: readonly string[] } {
  return { koffi: bound.koffi, library: bound.library, functions: [...bound.functions] };
}

/** Defines every function now: checks every prototype at once (a process may also warm up this way). */
export function bindAll(): string[] {
  const names = Object.keys(prototypes) as (keyof typeof prototypes)[];
  for (const n of names) void c[n];
  return names;
}

/**
 * A struct msghdr (64-bit layout: name, namelen, iov, iovlen, control, controllen, flags) over one
 * iovec for `data` and `control`. Every buffer it points to must stay referenced until the call returns.
 */
function msghdr(data: Uint8Array, control: Buffer): { msg: Buffer; keep: Buffer[] } {
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(BigInt(ffi().address(data)), 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  const msg = Buffer.alloc(56);
  msg.writeBigUInt64LE(BigInt(ffi().address(iov)), 16);
  msg.writeBigUInt64LE(1n, 24);
  msg.writeBigUInt64LE(BigInt(ffi().address(control)), 32);
  msg.writeBigUInt64LE(BigInt(control.length), 40);
  return { msg, keep: [iov, control] };
}

function bpf(cmd: number, attr: Buffer): number {
  const nr = SYS_bpf[process.arch];
  if (nr === undefined) throw new SyscallError('bpf', 38 /* ENOSYS */, `no bpf syscall number for ${process.arch}`);
  return Number(c.syscall(nr, 'int', cmd, 'void *', attr, 'uint', attr.length));
}

/** Runs a libc call and turns -1 into a SyscallError that names the call and its arguments. */
function check(name: string, detail: string, ret: number): number {
  if (ret < 0) throw new SyscallError(name, ffi().errno(), detail);
  return ret;
}

export const koffiLibc: Libc = {
  getpid: () => c.getpid(),
  socket(domain, type, protocol) {
    return check('socket', `${domain}, ${type}, ${protocol}`, c.socket(domain, type, protocol));
  },
  socketpair(domain, type, protocol) {
    const sv = new Int32Array(2);
    check('socketpair', `${domain}, ${type}, ${protocol}`, c.socketpair(domain, type, protocol, sv));
    return [sv[0], sv[1]];
  },
  sendFd(sock, fd, data) {
    const control = Buffer.alloc(CMSG_SPACE_FD);
    control.writeBigUInt64LE(BigInt(CMSG_HDR + 4), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    control.writeInt32LE(fd, CMSG_HDR);
    const { msg, keep } = msghdr(data, control);
    check('sendmsg', `fd=${sock}, SCM_RIGHTS ${fd}`, Number(c.sendmsg(sock, msg, 0)));
    void keep;
  },
  recvFd(sock, buf, flags) {
    const control = Buffer.alloc(CMSG_SPACE_FD);
    const { msg, keep } = msghdr(buf, control);
    const bytes = check('recvmsg', `fd=${sock}, 0x${flags.toString(16)}`, Number(c.recvmsg(sock, msg, flags)));
    void keep;
    const len = Number(control.readBigUInt64LE(0));
    const fd =
      len >= CMSG_HDR + 4 && control.readInt32LE(8) === SOL_SOCKET && control.readInt32LE(12) === SCM_RIGHTS ? control.readInt32LE(CMSG_HDR) : undefined;
    // A truncated control message means the kernel dropped fds it could not fit: only one is expected.
    if (msg.readInt32LE(48) & MSG_CTRUNC && fd === undefined) throw new SyscallError('recvmsg', 105 /* ENOBUFS */, `fd=${sock}: control data truncated`);
    return { bytes, fd };
  },
  bindVsock(fd, cid, port) {
    const sa = sockaddrVm(cid, port);
    check('bind', `vsock cid=${cid} port=${port}`, c.bind(fd, sa, sa.length));
  },
  connectVsock(fd, cid, port) {
    const sa = sockaddrVm(cid, port);
    check('connect', `vsock cid=${cid} port=${port}`, c.connect(fd, sa, sa.length));
  },
  listen(fd, backlog) {
    check('listen', `fd=${fd}`, c.listen(fd, backlog));
  },
  bindNetlink(fd, portId, groups) {
    const sa = sockaddrNl(portId, groups);
    check('bind', `netlink fd=${fd} port=${portId} groups=0x${groups.toString(16)}`, c.bind(fd, sa, sa.length));
  },
  sendNetlink(fd, data, portId) {
    const sa = sockaddrNl(portId, 0);
    return check('sendto', `netlink fd=${fd} port=${portId}, ${data.length} bytes`, Number(c.sendto(fd, data, data.length, 0, sa, sa.length)));
  },
  recv(fd, buf, flags) {
    return check('recv', `fd=${fd}, ${buf.length}, 0x${flags.toString(16)}`, Number(c.recv(fd, buf, buf.length, flags)));
  },
  setsockoptInt(fd, level, name, value) {
    const v = Buffer.alloc(4);
    v.writeInt32LE(value, 0);
    check('setsockopt', `fd=${fd}, ${level}, ${name}, ${value}`, c.setsockopt(fd, level, name, v, 4));
  },
  close(fd) {
    check('close', `fd=${fd}`, c.close(fd));
  },
  mount(source, target, fstype, flags, data) {
    check('mount', `${source ?? ''} -> ${target}, ${fstype ?? ''}`, c.mount(source, target, fstype, flags, data));
  },
  umount2(target, flags) {
    check('umount2', target, c.umount2(target, flags));
  },
  unshare(flags) {
    check('unshare', `0x${flags.toString(16)}`, c.unshare(flags));
  },
  setns(fd, nstype) {
    check('setns', `fd=${fd}, 0x${nstype.toString(16)}`, c.setns(fd, nstype));
  },
  sethostname(name) {
    check('sethostname', name, c.sethostname(name, Buffer.byteLength(name)));
  },
  read(fd, buf) {
    return check('read', `fd=${fd}, ${buf.length}`, Number(c.read(fd, buf, buf.length)));
  },
  pipe2(flags) {
    const fds = new Int32Array(2);
    check('pipe2', `0x${flags.toString(16)}`, c.pipe2(fds, flags));
    return [fds[0], fds[1]];
  },
  setsid: () => check('setsid', '', c.setsid()),
  prctl(option, arg2, arg3 = 0) {
    return check('prctl', `${option}, ${arg2}, ${arg3}`, c.prctl(option, arg2, arg3, 0, 0));
  },
  capset(sets: CapSets) {
    // _LINUX_CAPABILITY_VERSION_3, pid 0 = this thread.
    const hdr = Buffer.alloc(8);
    hdr.writeUInt32LE(0x20080522, 0);
    const data = Buffer.alloc(24);
    const words = [sets.effective, sets.permitted, sets.inheritable];
    for (let half = 0; half < 2; half++) {
      words.forEach((w, i) => data.writeUInt32LE(Number((w >> BigInt(32 * half)) & 0xffffffffn), half * 12 + i * 4));
    }
    check('capset', `eff=0x${sets.effective.toString(16)} prm=0x${sets.permitted.toString(16)}`, c.capset(hdr, data));
  },
  setgroups(gids) {
    check('setgroups', gids.join(','), c.setgroups(gids.length, Uint32Array.from(gids)));
  },
  setresgid(gid) {
    check('setresgid', String(gid), c.setresgid(gid, gid, gid));
  },
  setresuid(uid) {
    check('setresuid', String(uid), c.setresuid(uid, uid, uid));
  },
  setrlimit(resource, soft, hard) {
    const lim = Buffer.alloc(16);
    lim.writeBigUInt64LE(soft, 0);
    lim.writeBigUInt64LE(hard, 8);
    check('setrlimit', `${resource}, ${soft}, ${hard}`, c.setrlimit(resource, lim));
  },
  chdir(path) {
    check('chdir', path, c.chdir(path));
  },
  fchdir(fd) {
    check('fchdir', `fd=${fd}`, c.fchdir(fd));
  },
  chroot(path) {
    check('chroot', path, c.chroot(path));
  },
  pivotRoot(newRoot, putOld) {
    check('pivot_root', `${newRoot}, ${putOld}`, Number(c.syscall(sysPivotRoot(), 'const char *', newRoot, 'const char *', putOld)));
  },
  mknod(path, mode, major, minor) {
    check('mknod', `${path}, 0o${mode.toString(8)}, ${major}:${minor}`, c.mknod(path, mode, makedev(major, minor)));
  },
  openat(dirFd, path, flags, mode) {
    return check('openat', `${dirFd}, ${path}, 0o${flags.toString(8)}`, c.openat(dirFd, path, flags, 'uint', mode));
  },
  openat2(dirFd, path, flags, mode, resolve) {
    // struct open_how: flags u64, mode u64, resolve u64.
    const how = Buffer.alloc(24);
    how.writeBigUInt64LE(BigInt(flags), 0);
    how.writeBigUInt64LE(BigInt(mode), 8);
    how.writeBigUInt64LE(BigInt(resolve), 16);
    const detail = `${dirFd}, ${path}, 0o${flags.toString(8)}, resolve=0x${resolve.toString(16)}`;
    return check('openat2', detail, Number(c.syscall(SYS_openat2, 'int', dirFd, 'const char *', path, 'void *', how, 'size_t', how.length)));
  },
  mkdirat(dirFd, path, mode) {
    check('mkdirat', `${dirFd}, ${path}`, c.mkdirat(dirFd, path, mode));
  },
  mknodat(dirFd, path, mode, major, minor) {
    check('mknodat', `${dirFd}, ${path}, 0o${mode.toString(8)}, ${major}:${minor}`, c.mknodat(dirFd, path, mode, makedev(major, minor)));
  },
  fchownat(dirFd, path, uid, gid, flags) {
    check('fchownat', `${dirFd}, ${path}, ${uid}:${gid}`, c.fchownat(dirFd, path, uid, gid, flags));
  },
  symlinkat(target, dirFd, path) {
    check('symlinkat', `${target}, ${dirFd}, ${path}`, c.symlinkat(target, dirFd, path));
  },
  unlinkat(dirFd, path, flags) {
    check('unlinkat', `${dirFd}, ${path}`, c.unlinkat(dirFd, path, flags));
  },
  fstat(fd) {
    // statx(fd, "", AT_EMPTY_PATH) is what libuv's fstat calls too; its struct has one layout everywhere:
    // stx_mode u16 at 28, stx_dev_major and stx_dev_minor u32 at 136 and 140.
    const sx = Buffer.alloc(STATX_SIZE);
    check('fstat', `fd=${fd}`, c.statx(fd, '', AT_EMPTY_PATH, STATX_TYPE | STATX_MODE, sx));
    return { dev: Number(makedev(sx.readUInt32LE(136), sx.readUInt32LE(140))), mode: sx.readUInt16LE(28) };
  },
  faccessat(dirFd, path, mode, flags) {
    check('faccessat', `${dirFd}, ${path}, ${mode}`, c.faccessat(dirFd, path, mode, flags));
  },
  write(fd, data) {
    return check('write', `fd=${fd}, ${data.length} bytes`, Number(c.write(fd, data, data.length)));
  },
  closeRange(first, last, flags) {
    check('close_range', `${first}, ${last}, ${flags}`, Number(c.syscall(SYS_close_range, 'uint', first, 'uint', last >>> 0, 'uint', flags)));
  },
  resetSignal(signo) {
    c.signal(signo, null);
  },
  execve(path, argv, envp) {
    c.execve(path, [...argv, null], [...envp, null]);
    throw new SyscallError('execve', ffi().errno(), path);
  },
  dup3(oldFd, newFd, flags) {
    check('dup3', `${oldFd}, ${newFd}, ${flags}`, c.dup3(oldFd, newFd, flags));
  },
  waitpid(pid, options) {
    const status = new Int32Array(1);
    const r = check('waitpid', `${pid}, ${options}`, c.waitpid(pid, status, options));
    return { pid: r, status: status[0] };
  },
  reboot(cmd) {
    check('reboot', `0x${(cmd >>> 0).toString(16)}`, c.reboot(cmd));
  },
  sync() {
    c.sync();
  },
  swapon(p, flags) {
    check('swapon', `${p}, 0x${flags.toString(16)}`, c.swapon(p, flags));
  },
  finitModule(fd, params, flags) {
    const nr = SYS_finit_module[process.arch];
    if (nr === undefined) throw new SyscallError('finit_module', 38 /* ENOSYS */, `no finit_module syscall number for ${process.arch}`);
    check('finit_module', `fd=${fd}`, Number(c.syscall(nr, 'int', fd, 'str', params, 'int', flags)));
  },
  ioctlBuf(fd, request, buf) {
    return check('ioctl', `fd=${fd}, 0x${request.toString(16)}`, c.ioctlBuf(fd, request, buf));
  },
  bpfProgLoad(progType, insns, license) {
    const code = Buffer.from(insns);
    const lic = Buffer.from(`${license}\0`);
    // union bpf_attr, BPF_PROG_LOAD: prog_type u32, insn_cnt u32, insns u64, license u64,
    // log_level u32, log_size u32, log_buf u64.
    const load = (log?: Buffer) => {
      const attr = Buffer.alloc(BPF_ATTR_SIZE);
      attr.writeUInt32LE(progType, 0);
      attr.writeUInt32LE(code.length / 8, 4);
      attr.writeBigUInt64LE(ffi().address(code), 8);
      attr.writeBigUInt64LE(ffi().address(lic), 16);
      if (log) {
        attr.writeUInt32LE(1, 24);
        attr.writeUInt32LE(log.length, 28);
        attr.writeBigUInt64LE(ffi().address(log), 32);
      }
      return bpf(BPF_PROG_LOAD, attr);
    };
    const fd = load();
    if (fd >= 0) return fd;
    const errno = ffi().errno();
    // Load again with the verifier log only to explain the refusal (a log that does not fit fails a load).
    const log = Buffer.alloc(64 * 1024);
    const again = load(log);
    if (again >= 0) return again;
    const verifier = log
      .toString('utf8', 0, Math.max(0, log.indexOf(0)))
      .trim()
      .split('\n')
      .slice(-3)
      .join(' | ');
    throw new SyscallError('bpf', errno, `BPF_PROG_LOAD type=${progType} insns=${code.length / 8}${verifier ? `: ${verifier}` : ''}`);
  },
  bpfProgAttach(targetFd, progFd, attachType, flags) {
    // BPF_PROG_ATTACH: target_fd u32, attach_bpf_fd u32, attach_type u32, attach_flags u32.
    const attr = Buffer.alloc(BPF_ATTR_SIZE);
    attr.writeUInt32LE(targetFd, 0);
    attr.writeUInt32LE(progFd, 4);
    attr.writeUInt32LE(attachType, 8);
    attr.writeUInt32LE(flags, 12);
    check('bpf', `BPF_PROG_ATTACH target=${targetFd} prog=${progFd} type=${attachType}`, bpf(BPF_PROG_ATTACH, attr));
  },
  bpfProgDetach(targetFd, progFd, attachType) {
    const attr = Buffer.alloc(BPF_ATTR_SIZE);
    attr.writeUInt32LE(targetFd, 0);
    attr.writeUInt32LE(progFd, 4);
    attr.writeUInt32LE(attachType, 8);
    check('bpf', `BPF_PROG_DETACH target=${targetFd} prog=${progFd} type=${attachType}`, bpf(BPF_PROG_DETACH, attr));
  },
  eventfd(initval, flags) {
    return check('eventfd', `${initval}, 0x${flags.toString(16)}`, c.eventfd(initval, flags));
  },
  fcntl(fd, cmd, arg = 0) {
    return check('fcntl', `fd=${fd}, cmd=${cmd}, ${arg}`, c.fcntl(fd, cmd, 'int', arg));
  },
  posixOpenpt(flags) {
    return check('posix_openpt', `0x${flags.toString(16)}`, c.posix_openpt(flags));
  },
  unlockpt(fd) {
    check('unlockpt', `fd=${fd}`, c.unlockpt(fd));
  },
  ioctlInt(fd, request, arg) {
    return check('ioctl', `fd=${fd}, 0x${request.toString(16)}, ${arg}`, c.ioctl(fd, request, 'int', arg));
  },
  setWinsize(fd, size) {
    check('ioctl', `fd=${fd}, TIOCSWINSZ ${size.rows}x${size.cols}`, c.ioctl(fd, TIOCSWINSZ, 'void *', winsize(size)));
  },
  getWinsize(fd) {
    const ws = Buffer.alloc(8);
    check('ioctl', `fd=${fd}, TIOCGWINSZ`, c.ioctl(fd, TIOCGWINSZ, 'void *', ws));
    return { rows: ws.readUInt16LE(0), cols: ws.readUInt16LE(2) };
  },
  poll(fd, events, timeoutMs) {
    // struct pollfd: int fd, short events, short revents.
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(fd, 0);
    pfd.writeInt16LE(events, 4);
    check('poll', `fd=${fd}, events=0x${events.toString(16)}, ${timeoutMs} ms`, c.poll(pfd, 1, timeoutMs));
    return pfd.readUInt16LE(6);
  },
  settimeofday(sec, usec) {
    // struct timeval on 64-bit Linux: time_t tv_sec, suseconds_t tv_usec, both 8 bytes.
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(sec, 0);
    tv.writeBigInt64LE(usec, 8);
    check('settimeofday', `${sec}.${String(usec).padStart(6, '0')}`, c.settimeofday(tv, null));
  },
  mallocTrim(pad) {
    // Cannot fail: it answers 1 when it released memory, 0 when there was none to give back.
    return c.malloc_trim(pad) === 1;
  },
};
