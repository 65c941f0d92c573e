// Entry of the container-init helper: a short-lived node process the agent spawns (already inside the
// container's pid namespace and cgroup) for every container init and exec. It reads its plan on fd 3,
// enters/creates the namespaces, builds the root, opens the process's terminal if it has one (its
// master goes to the agent on fd 6), reports "ready" on fd 4, waits on fd 5 for
// StartContainer (init only) and execve()s the container's program, which keeps this pid.
// Everything here is synchronous: the helper's libuv threads never join the new namespaces.
import fs from 'node:fs';
import { AgentError } from '../../errors.js';
import { libc as realLibc } from '../../linux/index.js';
import { CLONE_FS, CLONE_NEWNS, O_DIRECTORY, O_RDONLY, O_WRONLY, PR_SET_DUMPABLE, type Libc } from '../../linux/libc.js';
import { openPath } from '../../linux/paths.js';
import { libseccomp } from '../../seccomp/index.js';
import type { ExecPlan, HelperStatus, InitPlan, StdioSource } from './plan.js';
import { PLAN_FD, START_FD, STATUS_FD, TERMINAL_FD } from './plan.js';
import { applyAndExec, resolveExecutable } from './process-settings.js';
import { RootfsError, setupRootfs } from './rootfs.js';
import { takeContainerTerminal } from './terminal.js';

function report(status: HelperStatus): void {
  fs.writeSync(STATUS_FD, JSON.stringify(status) + '\n');
}

function joinNamespaces(libc: Libc, join: { type: number; path: string }[]): void {
  // Open every path first: once the mount namespace changes, /proc paths mean something else.
  const fds = join.map((j) => ({ ...j, fd: openPath(libc, j.path, O_RDONLY) }));
  if (fds.some((j) => j.type === CLONE_NEWNS)) libc.unshare(CLONE_FS);
  for (const j of fds) {
    libc.setns(j.fd, j.type);
    libc.close(j.fd);
  }
}

function enterExisting(libc: Libc, plan: ExecPlan): void {
  const rootFd = openPath(libc, `${plan.initProc}/root`, O_RDONLY | O_DIRECTORY);
  joinNamespaces(libc, plan.join);
  // The mount namespace's root is not the container's root when it was entered by MS_MOVE+chroot.
  libc.fchdir(rootFd);
  libc.chroot('.');
  libc.chdir('/');
  libc.close(rootFd);
}

/** Takes the process's pipes from the agent (pooled helpers start with /dev/null); a terminal comes later. */
function adoptStdio(libc: Libc, s: StdioSource): void {
  if (s.fds === null) return;
  const modes = [O_RDONLY, O_WRONLY, O_WRONLY];
  s.fds.forEach((agentFd, i) => {
    // O_CLOEXEC on the opened fd only: dup3 with flags 0 gives the process a plain fd 0-2.
    const fd = openPath(libc, `/proc/${s.pid}/fd/${agentFd}`, modes[i]);
    libc.dup3(fd, i, 0);
    libc.close(fd);
  });
}

function run(libc: Libc): never {
  // A warm exec helper waits inside the container's pid namespace, still in the agent's mount
  // namespace and with all capabilities: not dumpable, so container processes cannot ptrace it or
  // open its /proc fds and cwd. execve makes the container's program dumpable again.
  libc.prctl(PR_SET_DUMPABLE, 0);
  // Node and every module are loaded: the agent moves us into the container's cgroup only now, so
  // start-up memory stays charged to the agent rather than counting against the container's limit.
  report({ state: 'booted' });
  const plan = JSON.parse(fs.readFileSync(PLAN_FD, 'utf8')) as InitPlan;
  if (plan.stdio) adoptStdio(libc, plan.stdio);
  // libseccomp.so.2 and the module binding it are opened now, while the agent's files are visible:
  // inside the container's root neither is there.
  const seccomp = plan.process.seccomp ? libseccomp() : undefined;
  seccomp?.version();
  if (plan.kind === 'create') {
    joinNamespaces(libc, plan.join);
    libc.unshare(plan.unshare);
    if (plan.hostname !== undefined) libc.sethostname(plan.hostname);
    setupRootfs(libc, plan);
  } else {
    enterExisting(libc, plan);
  }
  const exe = resolveExecutable(plan.process);
  // Only now: /dev/ptmx must be the container's, which it is once we are inside its root.
  if (plan.process.terminal) takeContainerTerminal(libc, TERMINAL_FD);
  report({ state: 'ready' });
  // The agent writes one byte: at StartContainer for an init, and for an exec once it has moved us
  // into the container's cgroup (joining only now keeps this node process's memory out of the
  // container's limit). EOF means the container was removed before it started.
  const buf = Buffer.alloc(1);
  if (fs.readSync(START_FD, buf, 0, 1, null) === 0) process.exit(0);
  return applyAndExec(libc, plan.process, exe, seccomp && (() => seccomp));
}

try {
  run(realLibc());
} catch (err) {
  const kind = err instanceof AgentError ? err.kind : undefined;
  try {
    // What the rootfs setup created stays in the (possibly shared) rootfs: the agent removes it.
    const created = err instanceof RootfsError && err.created.length > 0 ? err.created : undefined;
    report({ state: 'error', kind, message: (err as Error).message, created });
  } catch {
    // The agent is gone; nothing to tell.
  }
  process.exit(127);
}
