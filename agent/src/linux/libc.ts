// The one typed seam over libc. Everything that needs a syscall Node does not offer goes through
// `Libc`; the real implementation (koffi-libc.ts) is the only module that imports koffi, and
// RecordingLibc stands in for it in unit tests. Every method throws SyscallError on failure.

import fs from 'node:fs';

export const AF_UNIX = 1;
export const AF_VSOCK = 40;
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const NETLINK_ROUTE = 0;
/** The kernel's device events (uevents); multicast group 1 carries them. */
export const NETLINK_KOBJECT_UEVENT = 15;
export const SOL_NETLINK = 270;
/** The kernel then adds its own text (e.g. "Invalid prefix for given prefix length") to NLMSG_ERROR. */
export const NETLINK_EXT_ACK = 11;
export const SOCK_STREAM = 1;
export const SOCK_SEQPACKET = 5;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const MSG_DONTWAIT = 0x40;
/** The fds a recvmsg installs are close-on-exec from the start. */
export const MSG_CMSG_CLOEXEC = 0x40000000;
/** VMADDR_CID_ANY as the unsigned 32-bit value the kernel stores. */
export const VMADDR_CID_ANY = 0xffffffff;

export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWCGROUP = 0x02000000;
export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWUSER = 0x10000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;
export const CLONE_FS = 0x00000200;

export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_REMOUNT = 32;
export const MS_BIND = 4096;
export const MS_MOVE = 8192;
export const MS_REC = 16384;
export const MS_PRIVATE = 1 << 18;
export const MS_SLAVE = 1 << 19;
export const MS_SHARED = 1 << 20;

export const MNT_DETACH = 2;

export const F_GETFL = 3;
export const F_SETFL = 4;
export const CLOSE_RANGE_CLOEXEC = 1 << 2;

export const SIGPIPE = 13;
export const SIGXFSZ = 25;

export const PR_SET_DUMPABLE = 4;
export const PR_SET_KEEPCAPS = 8;
export const PR_CAPBSET_DROP = 24;
export const PR_SET_CHILD_SUBREAPER = 36;
export const PR_SET_NO_NEW_PRIVS = 38;
export const PR_CAP_AMBIENT = 47;
export const PR_CAP_AMBIENT_RAISE = 2;
export const PR_CAP_AMBIENT_CLEAR_ALL = 4;

export const WNOHANG = 1;
export const __WALL = 0x40000000;

/** Capability sets as 64-bit masks (bit n = capability n). */
export interface CapSets {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
}

/** waitpid() result: the pid (0 when WNOHANG found nothing) and its raw status word. */
export interface WaitResult {
  pid: number;
  status: number;
}
// PID-1 duties (init/src): power, reaping, modules, the console and `lo`.
export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const WALL = 0x40000000;
export const RB_AUTOBOOT = 0x01234567;
export const RB_POWER_OFF = 0x4321fedc;
export const SIOCGIFFLAGS = 0x8913;
export const SIOCSIFFLAGS = 0x8914;
export const IFF_UP = 0x1;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

export const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
export const BPF_CGROUP_DEVICE = 6;
export const BPF_F_ALLOW_MULTI = 2;

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
/** These two differ between architectures (aarch64 has its own), so Node's platform values are used. */
export const O_DIRECTORY = fs.constants.O_DIRECTORY;
export const O_NOFOLLOW = fs.constants.O_NOFOLLOW;
/** An fd that names a file without opening it for I/O (asm-generic value, x86_64 and aarch64 alike). */
export const O_PATH = 0o10000000;
export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
/** faccessat() mode: existence only. */
export const F_OK = 0;
/** st_mode file type bits (the same on every Linux architecture). */
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
/** openat2() resolve flags (linux/openat2.h). */
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;
export const O_NOCTTY = 0o400;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;

export const F_GETFD = 1;
export const F_SETFD = 2;
export const FD_CLOEXEC = 1;
export const F_DUPFD_CLOEXEC = 1030;
export const F_SETPIPE_SZ = 1031;
export const F_GETPIPE_SZ = 1032;

// ioctl numbers from asm-generic/ioctls.h (x86_64 and aarch64 share them).
export const TIOCSCTTY = 0x540e;
export const TIOCGWINSZ = 0x5413;
export const TIOCSWINSZ = 0x5414;
/** Opens the slave of a pty master without a path lookup (Linux 4.13+), so /dev/pts need not be visible. */
export const TIOCGPTPEER = 0x5441;

// linux/random.h ioctls (asm-generic encoding, x86_64 and aarch64 alike).
/** _IOW('R', 0x03, int[2]): a struct rand_pool_info {int entropy_count (bits); int buf_size; u32 buf[]}. */
export const RNDADDENTROPY = 0x40085203;
/** _IO('R', 0x07): makes the kernel's CRNG take what the input pool has now. */
export const RNDRESEEDCRNG = 0x5207;

export interface Winsize {
  rows: number;
  cols: number;
}

/** What fstat() tells about an open fd (an O_PATH one included): its filesystem and type. */
export interface FileStat {
  /** st_dev, encoded as glibc's makedev() does (and so equal to Node's Stats.dev). */
  dev: number;
  /** st_mode: the S_IF* type bits and the permission bits. */
  mode: number;
}

/** recvFd() result: the data bytes read and the fd that came with them, if one did. */
export interface ReceivedFd {
  bytes: number;
  fd: number | undefined;
}

export interface Libc {
  getpid(): number;
  socket(domain: number, type: number, protocol: number): number;
  /** socketpair(): the two connected ends. */
  socketpair(domain: number, type: number, protocol: number): [number, number];
  /** sendmsg() of `data` (at least one byte) with `fd` attached as SCM_RIGHTS. */
  sendFd(sock: number, fd: number, data: Uint8Array): void;
  /** recvmsg() into `buf`, taking at most one SCM_RIGHTS fd; `flags` e.g. MSG_DONTWAIT | MSG_CMSG_CLOEXEC. */
  recvFd(sock: number, buf: Uint8Array, flags: number): ReceivedFd;
  /** bind() to an AF_VSOCK address. cid is unsigned (VMADDR_CID_ANY for -1). */
  bindVsock(fd: number, cid: number, port: number): void;
  /** Blocking connect() to an AF_VSOCK address (host-side tools only). */
  connectVsock(fd: number, cid: number, port: number): void;
  listen(fd: number, backlog: number): void;
  /** bind() to an AF_NETLINK address (port id 0: the kernel picks one). */
  bindNetlink(fd: number, portId: number, groups: number): void;
  /** sendto() of one datagram to a netlink port (0 = the kernel); returns the bytes sent. */
  sendNetlink(fd: number, data: Uint8Array, portId: number): number;
  /** recv() into `buf`; returns the datagram's byte count (with MSG_TRUNC in `flags`, its full length). */
  recv(fd: number, buf: Uint8Array, flags: number): number;
  /** setsockopt() with an int value. */
  setsockoptInt(fd: number, level: number, name: number, value: number): void;
  close(fd: number): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  unshare(flags: number): void;
  setns(fd: number, nstype: number): void;
  sethostname(name: string): void;
  setsid(): number;
  prctl(option: number, arg2: number, arg3?: number): number;
  /** capset() for the calling thread, version 3 (two 32-bit words per set). */
  capset(sets: CapSets): void;
  setgroups(gids: number[]): void;
  setresgid(gid: number): void;
  setresuid(uid: number): void;
  /** setrlimit(); `Infinity` means RLIM_INFINITY. */
  setrlimit(resource: number, soft: bigint, hard: bigint): void;
  chdir(path: string): void;
  fchdir(fd: number): void;
  chroot(path: string): void;
  pivotRoot(newRoot: string, putOld: string): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** openat() relative to `dirFd` (AT_FDCWD for the cwd); returns the new fd. */
  openat(dirFd: number, path: string, flags: number, mode: number): number;
  /** openat2(2) with a struct open_how (no glibc wrapper: raw syscall); ENOSYS before Linux 5.6. */
  openat2(dirFd: number, path: string, flags: number, mode: number, resolve: number): number;
  mkdirat(dirFd: number, path: string, mode: number): void;
  mknodat(dirFd: number, path: string, mode: number, major: number, minor: number): void;
  fchownat(dirFd: number, path: string, uid: number, gid: number, flags: number): void;
  symlinkat(target: string, dirFd: number, path: string): void;
  unlinkat(dirFd: number, path: string, flags: number): void;
  /** fstat() of `fd` (through statx(AT_EMPTY_PATH), as Node's own fstat does). A symlink opened O_PATH|O_NOFOLLOW is reported as the link. */
  fstat(fd: number): FileStat;
  /** faccessat(); throws (ENOENT...) where the access is refused, returns when it is allowed. */
  faccessat(dirFd: number, path: string, mode: number, flags: number): void;
  /** One write() of `data`; returns the byte count written (files in /proc/sys take a value in one write). */
  write(fd: number, data: Uint8Array): number;
  closeRange(first: number, last: number, flags: number): void;
  /** Restores the default disposition (Node ignores SIGPIPE and SIGXFSZ; ignored signals survive exec). */
  resetSignal(signo: number): void;
  /** Replaces the process image; returns only by throwing. */
  execve(path: string, argv: string[], envp: string[]): never;
  waitpid(pid: number, options: number): WaitResult;
  /** dup3(): `oldFd` also as `newFd` (replacing what was there). */
  dup3(oldFd: number, newFd: number, flags: number): void;
  reboot(cmd: number): void;
  sync(): void;
  /** finit_module(2) (no glibc wrapper: raw syscall). */
  finitModule(fd: number, params: string, flags: number): void;
  /** ioctl() with a pointer to `buf`, which the kernel may read and write in place. */
  ioctlBuf(fd: number, request: number, buf: Buffer): number;
  /** swapon(2): a swap device or file, formatted already (mkswap), in use from now on. */
  swapon(path: string, flags: number): void;
  /** A new eventfd (cgroup v1 OOM notifications are delivered through one). */
  eventfd(initval: number, flags: number): number;
  /** bpf(BPF_PROG_LOAD): loads `insns` (struct bpf_insn[]) as a `progType` program; returns its fd. A refusal carries the verifier's log. */
  bpfProgLoad(progType: number, insns: Uint8Array, license: string): number;
  /** bpf(BPF_PROG_ATTACH) of a loaded program to a cgroup directory fd. */
  bpfProgAttach(targetFd: number, progFd: number, attachType: number, flags: number): void;
  /** bpf(BPF_PROG_DETACH) of one program (of several, BPF_F_ALLOW_MULTI) from a cgroup directory fd. */
  bpfProgDetach(targetFd: number, progFd: number, attachType: number): void;
  /** read() into `buf`; returns the byte count (0 = end of file). */
  read(fd: number, buf: Uint8Array): number;
  /** pipe2(): [read end, write end]. */
  pipe2(flags: number): [number, number];
  /** fcntl() with an int argument (0 when the command takes none); returns the call's result. */
  fcntl(fd: number, cmd: number, arg?: number): number;
  posixOpenpt(flags: number): number;
  unlockpt(fd: number): void;
  /** ioctl() whose third argument is an int passed by value (TIOCGPTPEER, TIOCSCTTY). */
  ioctlInt(fd: number, request: number, arg: number): number;
  /** TIOCSWINSZ / TIOCGWINSZ; pixel sizes are left 0. */
  setWinsize(fd: number, size: Winsize): void;
  getWinsize(fd: number): Winsize;
  /** poll() of one fd; returns its revents (0 when the timeout passed). timeoutMs 0 never blocks. */
  poll(fd: number, events: number, timeoutMs: number): number;
  /** settimeofday() of the system clock (no timezone); the caller checks that usec is below 1e6. */
  settimeofday(sec: bigint, usec: bigint): void;
  /**
   * malloc_trim(3): glibc gives the free pages of its heaps back to the kernel, those between chunks
   * in use too (not only the top). Returns whether any memory was released.
   */
  mallocTrim(pad: number): boolean;
}
