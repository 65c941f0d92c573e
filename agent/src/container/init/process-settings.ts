// The last steps before execve, in the order the kernel needs them: rlimits and oom_score_adj while
// still root, the bounding set while CAP_SETPCAP is held, ids with keep-caps so capset can then set
// the requested sets for the new uid, ambient caps, and the seccomp filter last of all, so that
// nothing the profile forbids is needed after it.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgument, NotFound } from '../../errors.js';
import type { Libc } from '../../linux/libc.js';
import { writeValue } from '../../linux/paths.js';
import {
  CLOSE_RANGE_CLOEXEC,
  F_GETFL,
  F_SETFD,
  F_SETFL,
  O_NONBLOCK,
  PR_CAPBSET_DROP,
  PR_CAP_AMBIENT,
  PR_CAP_AMBIENT_CLEAR_ALL,
  PR_CAP_AMBIENT_RAISE,
  PR_SET_KEEPCAPS,
  PR_SET_NO_NEW_PRIVS,
  SIGPIPE,
  SIGXFSZ,
  TIOCSCTTY,
} from '../../linux/libc.js';
import { libseccomp } from '../../seccomp/index.js';
import type { Libseccomp } from '../../seccomp/libseccomp.js';
import { loadFilter } from '../../seccomp/filter.js';
import type { ProcessPlan } from './plan.js';

const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function isExecutableFile(p: string): boolean {
  try {
    const st = fs.statSync(p);
    if (!st.isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds args[0] in the container's own view (PATH from its env), so a missing binary fails the RPC. */
export function resolveExecutable(proc: ProcessPlan): string {
  const name = proc.args[0];
  if (name.includes('/')) {
    const p = path.resolve(proc.cwd || '/', name);
    if (!isExecutableFile(p)) throw new NotFound(`executable "${name}" not found or not executable in the container`);
    return p;
  }
  const pathVar = proc.env.find((e) => e.startsWith('PATH='))?.slice(5) ?? defaultPath;
  for (const dir of pathVar.split(':')) {
    const p = path.join(dir || '.', name);
    if (isExecutableFile(p)) return p;
  }
  throw new NotFound(`executable "${name}" not found in the container's PATH (${pathVar})`);
}

function lastCap(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  } catch {
    return 40;
  }
}

const CAP_SYS_ADMIN = 21n;

/**
 * Whether the process still has CAP_SYS_ADMIN once its ids and caps are set: without it (or
 * no_new_privs) the kernel refuses to install a seccomp filter. Without a caps entry the sets are
 * root's full ones, which a change to another uid clears.
 */
function keepsSysAdmin(proc: ProcessPlan): boolean {
  if (!proc.caps) return proc.uid === 0;
  return ((BigInt(proc.caps.effective) >> CAP_SYS_ADMIN) & 1n) === 1n;
}

/** Applies `proc` to this process and execs `exe`; returns only by throwing. */
export function applyAndExec(libc: Libc, proc: ProcessPlan, exe: string, seccomp: () => Libseccomp = libseccomp): never {
  libc.setsid();
  if (proc.terminal) libc.ioctlInt(0, TIOCSCTTY, 0);
  if (proc.oomScoreAdj !== undefined) writeValue(libc, '/proc/self/oom_score_adj', String(proc.oomScoreAdj));
  for (const r of proc.rlimits) libc.setrlimit(r.resource, BigInt(r.soft), BigInt(r.hard));
  const caps = proc.caps;
  if (caps) {
    const bounding = BigInt(caps.bounding);
    const last = lastCap();
    for (let cap = 0; cap <= last; cap++) if (!((bounding >> BigInt(cap)) & 1n)) libc.prctl(PR_CAPBSET_DROP, cap);
    libc.prctl(PR_SET_KEEPCAPS, 1);
  }
  libc.setgroups(proc.additionalGids);
  libc.setresgid(proc.gid);
  libc.setresuid(proc.uid);
  if (caps) {
    libc.prctl(PR_SET_KEEPCAPS, 0);
    libc.capset({ effective: BigInt(caps.effective), permitted: BigInt(caps.permitted), inheritable: BigInt(caps.inheritable) });
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);
    for (const cap of caps.ambient) libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap);
  }
  // The filter is loaded after the caps are dropped, so a process without CAP_SYS_ADMIN needs
  // no_new_privs for the load even when the spec leaves it off (runc instead loads before dropping
  // caps then, running its remaining setup under the filter).
  if (proc.noNewPrivileges || (proc.seccomp && !keepsSysAdmin(proc))) libc.prctl(PR_SET_NO_NEW_PRIVS, 1);
  try {
    libc.chdir(proc.cwd || '/');
  } catch (err) {
    throw new InvalidArgument(`cwd "${proc.cwd}" of the container process: ${(err as Error).message}`);
  }
  libc.resetSignal(SIGPIPE);
  libc.resetSignal(SIGXFSZ);
  // Node's own fds (epoll, eventfds, our plan/status/start pipes) must not leak into the container;
  // libuv marks 0-2 close-on-exec, which must be undone for them.
  libc.closeRange(3, 0xffffffff, CLOSE_RANGE_CLOEXEC);
  for (const fd of [0, 1, 2]) {
    libc.fcntl(fd, F_SETFD, 0);
    // Programs expect blocking stdio ("write error: Resource temporarily unavailable" otherwise).
    const fl = libc.fcntl(fd, F_GETFL, 0);
    if (fl & O_NONBLOCK) libc.fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  if (proc.seccomp) loadFilter(seccomp(), proc.seccomp);
  return libc.execve(exe, proc.args, proc.env);
}
