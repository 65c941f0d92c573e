// The one typed seam over libc. Everything that needs a syscall Node does not offer goes through
// `Libc`; the real implementation (koffi-libc.ts) is the only module that imports koffi, and
// RecordingLibc stands in for it in unit tests. Every method throws SyscallError on failure.

export const AF_UNIX = 1;
export const AF_VSOCK = 40;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
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

export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

export const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
export const BPF_CGROUP_DEVICE = 6;
export const BPF_F_ALLOW_MULTI = 2;

export interface Libc {
  getpid(): number;
  socket(domain: number, type: number, protocol: number): number;
  /** bind() to an AF_VSOCK address. cid is unsigned (VMADDR_CID_ANY for -1). */
  bindVsock(fd: number, cid: number, port: number): void;
  /** Blocking connect() to an AF_VSOCK address (host-side tools only). */
  connectVsock(fd: number, cid: number, port: number): void;
  listen(fd: number, backlog: number): void;
  close(fd: number): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  unshare(flags: number): void;
  setns(fd: number, nstype: number): void;
  sethostname(name: string): void;
  /** A new eventfd (cgroup v1 OOM notifications are delivered through one). */
  eventfd(initval: number, flags: number): number;
  /** bpf(BPF_PROG_LOAD): loads `insns` (struct bpf_insn[]) as a `progType` program; returns its fd. A refusal carries the verifier's log. */
  bpfProgLoad(progType: number, insns: Uint8Array, license: string): number;
  /** bpf(BPF_PROG_ATTACH) of a loaded program to a cgroup directory fd. */
  bpfProgAttach(targetFd: number, progFd: number, attachType: number, flags: number): void;
  /** bpf(BPF_PROG_DETACH) of one program (of several, BPF_F_ALLOW_MULTI) from a cgroup directory fd. */
  bpfProgDetach(targetFd: number, progFd: number, attachType: number): void;
}
