// The container and process registry and the lifecycle operations the RPC handlers call. Every step
// that creates something registers its undo, so a CreateContainer that fails leaves no process,
// cgroup, mount or bundle behind.
import fs from 'node:fs';
import path from 'node:path';
import type { CreateContainerRequest, ExecProcessRequest } from '../../../protos/gen/agent_pb.js';
import type { LinuxResources, LinuxSeccomp } from '../../../protos/gen/oci_pb.js';
import { withDefaultDeviceRules } from '../cgroups/default-devices.js';
import type { CgroupManager } from '../cgroups/cgroup.js';
import { containerCgroupPath } from '../cgroups/self-path.js';
import { signalAll } from '../cgroups/signal-all.js';
import type { Libc } from '../linux/libc.js';
import { removeCreatedUnder } from '../mount/in-root.js';
import { CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUTS } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';
import type { PidNamespaceChoice } from '../namespace/pid-namespace.js';
import { Helper } from '../process/helper.js';
import type { HelperPool } from '../process/helper-pool.js';
import type { CreateProcessIO, ProcessIO } from '../io/process-io.js';
import type { HotplugDevices } from '../device/hotplug.js';
import { applyFoundDevices, findContainerDevices } from './devices.js';
import type { WarmExecHelpers } from '../process/warm-exec-helpers.js';
import { alreadyExists, DeadlineExceeded, failedPrecondition, invalidArgument, InvalidArgument, notFound, withContext } from '../errors.js';
import type { SeccompSupport } from '../seccomp/index.js';
import { checkFilter } from '../seccomp/filter.js';
import { translateProfile, type SeccompPlan } from '../seccomp/profile.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import { releaseStorages } from '../storage/storages.js';
import { bundleRootfs, removeBundle, writeBundle } from './bundle.js';
import { Container } from './container.js';
import { checkId } from './id.js';
import type { ExecPlan } from './init/plan.js';
import { OomEvents } from './oom-events.js';
import { createPlan, processPlan, resolveRootfs } from './plan-builder.js';
import { ContainerProcess } from './process.js';

export interface ContainerDeps {
  libc: Libc;
  log: Logger;
  /** /run/kata-containers in a guest; bundles live in <stateRoot>/<container id>. */
  stateRoot: string;
  pipeSize: number;
  cgroups: CgroupManager;
  /** Finds hot-plugged disks for `devices` (on the guest). */
  devices?: HotplugDevices;
  createIO: CreateProcessIO;
  sandbox: Sandbox;
  /** Helpers started ahead of need for containers with a new pid namespace. */
  pool?: HelperPool;
  /** Exec helpers started ahead of need inside running containers' pid namespaces. */
  warmExec?: WarmExecHelpers;
  /** libseccomp, probed once; without it a spec with a seccomp profile is refused. */
  seccomp?: () => SeccompSupport;
}

const SIGKILL = 9;
const SIGTERM = 15;

/** Whether `pid` has exited (a zombie not reaped yet counts), e.g. a helper killed while it was idle. */
function gone(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return true;
  }
}

function signalCaught(pid: number, signal: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? ((BigInt('0x' + m[1]) >> BigInt(signal - 1)) & 1n) === 1n : false;
  } catch {
    return false;
  }
}

export class ContainerManager {
  private readonly containers = new Map<string, Container>();
  /** Ids between the start and the end of CreateContainer, so a concurrent duplicate fails too. */
  private readonly creating = new Set<string>();
  /** Cgroup path → the container (being) created in it. */
  private readonly cgroupUsers = new Map<string, string>();
  readonly oomEvents = new OomEvents();

  constructor(private readonly deps: ContainerDeps) {}

  get(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id} not found`);
    return c;
  }

  ids(): string[] {
    return [...this.containers.keys()];
  }

  process(containerId: string, execId: string): ContainerProcess {
    const p = this.get(containerId).process(execId);
    if (!p) throw notFound(`process ${execId || '(init)'} of container ${containerId} not found`);
    return p;
  }

  io(containerId: string, execId: string): ProcessIO {
    return this.process(containerId, execId).io;
  }

  /** CreateSandbox: the pod's containers follow, so the create pool fills again if it was emptied. */
  expectContainers(): void {
    this.deps.pool?.warm();
  }

  async create(req: CreateContainerRequest, agentPidns: boolean, signal?: AbortSignal): Promise<void> {
    const id = checkId('container', req.containerId);
    const initExecId = req.execId === '' ? '' : checkId('exec', req.execId);
    if (this.containers.has(id) || this.creating.has(id)) throw alreadyExists(`container ${id} already exists`);
    const spec = req.OCI;
    if (!spec) throw invalidArgument(`container ${id}: request has no OCI spec`);
    this.creating.add(id);
    const undo: (() => void | Promise<void>)[] = [];
    try {
      // Before anything is set up or waited for: a bad profile fails here with nothing to undo.
      const seccomp = spec.Linux?.Seccomp ? this.seccompPlan(spec.Linux.Seccomp, id) : undefined;
      const { libc, sandbox } = this.deps;
      const bundle = path.join(this.deps.stateRoot, id);
      // Waits first, before anything is set up: the host hot-plugs disks just before this request.
      const [foundStorages, foundDevices] = await Promise.all([
        sandbox.storages.findDevices(req.storages, signal),
        findContainerDevices(req.devices, this.deps.devices, signal),
      ]);
      applyFoundDevices(spec, foundDevices);
      // Before the rootfs is looked for: a storage may be what puts it there (a block device at <cid>).
      const storages = sandbox.storages.mount(req.storages, id, foundStorages);
      undo.push(() => releaseStorages(storages));
      const rootfs = resolveRootfs(spec, bundle);
      const { plan, pidns: specPidns } = createPlan({
        spec,
        rootfs,
        rootfsMount: bundleRootfs(bundle),
        shared: sandbox.sharedNamespaces,
        cgroupV1Hierarchies: [...this.deps.cgroups.v1Hierarchies],
      });
      plan.process.seccomp = seccomp;
      // As kata does: the pod's shared pid namespace wins over whatever the spec asks for.
      let pidns: PidNamespaceChoice;
      if (sandbox.sandboxPidns && sandbox.pidnsPath) pidns = { kind: 'join', path: sandbox.pidnsPath };
      else if (agentPidns) pidns = { kind: 'agent' };
      else if (specPidns !== 'unset') pidns = specPidns;
      else pidns = { kind: 'new' };

      undo.push(() => removeBundle(libc, this.deps.log, bundle, rootfs));
      writeBundle(bundle, spec);

      const cgroupPath = containerCgroupPath(spec.Linux?.CgroupsPath ?? '', id);
      // Two live containers in one group would freeze, kill and remove each other's processes.
      const sharer = this.cgroupUsers.get(cgroupPath);
      if (sharer !== undefined) throw alreadyExists(`container ${id}: cgroup ${cgroupPath} is already container ${sharer}'s`);
      this.cgroupUsers.set(cgroupPath, id);
      undo.push(() => void this.cgroupUsers.delete(cgroupPath));
      const cgroup = this.deps.cgroups.create(cgroupPath, withDefaultDeviceRules(spec.Linux?.Resources));
      undo.push(() => cgroup.destroy());
      const io = this.deps.createIO({ terminal: plan.process.terminal, pipeSize: this.deps.pipeSize, libc });
      undo.push(() => io.dispose());
      let pooled = pidns.kind === 'new' ? this.deps.pool?.take() : undefined;
      let helper = pooled ?? this.spawn(pidns, io);
      undo.push(async () => {
        helper.child.kill('SIGKILL');
        await helper.exited;
        // Mount points and device nodes it made stay in the rootfs (which may be shared): remove them.
        const left = removeCreatedUnder(libc, rootfs, helper.created);
        if (left.length > 0) this.deps.log.warn({ container_id: id, rootfs, left }, 'failed CreateContainer: some entries it created in the rootfs stay');
      });
      const what = `CreateContainer ${id}`;
      const prepare = async (h: Helper, stdio: boolean) => {
        // Only a booted helper joins: node's start-up memory must not count against the container's limit.
        await h.booted(what);
        cgroup.addProcess(h.pid);
        h.sendPlan(stdio ? { ...plan, stdio: { pid: process.pid, fds: io.childFds, terminal: plan.process.terminal } } : plan);
        await h.ready(what, io);
      };
      try {
        await prepare(helper, pooled !== undefined);
      } catch (err) {
        // A pooled helper waits for minutes and can be killed meanwhile (OOM killer, kill -9); its
        // death may not have been seen when it was taken. Its error is not this request's: the
        // container gets a fresh helper. An error the helper reported itself stands.
        // (A helper that reported its error and then exited is gone too: gone() alone would retry it and
        // lose its report of what it created under the rootfs.)
        if (!pooled || helper.reportedError || !(helper.diedWithoutReport || gone(helper.pid))) throw err;
        this.deps.log.warn({ container_id: id, pid: helper.pid, err: (err as Error).message }, 'pooled helper gone; starting a fresh one');
        helper.child.kill('SIGKILL');
        await helper.exited;
        pooled = undefined;
        helper = this.spawn(pidns, io);
        await prepare(helper, false);
      }
      // A pooled helper reopened the child ends through /proc during its setup; now they can go.
      if (pooled) io.closeChildEnds();

      const c = new Container(id, bundle, rootfs, spec, cgroup, new ContainerProcess(initExecId, helper, io), storages);
      c.ownPidns = pidns.kind === 'new';
      c.seccomp = seccomp;
      if (sandbox.sandboxPidns && !sandbox.pidnsPath && pidns.kind === 'new') sandbox.pidnsPath = `/proc/${helper.pid}/ns/pid`;
      void helper.exited.then(() => {
        c.state = 'stopped';
        // Its pid namespace may be shared (sandbox pidns) and outlive it: the warm helper must not.
        void this.deps.warmExec?.discard(id);
      });
      this.containers.set(id, c);
    } catch (err) {
      for (const f of undo.reverse()) {
        try {
          await f();
        } catch (e) {
          this.deps.log.warn({ container_id: id, err: (e as Error).message }, 'cleanup after failed CreateContainer');
        }
      }
      // The spec, rootfs and storage checks do not know the id: name it (after the text, so that a
      // status line still starts with what went wrong).
      if (err instanceof Error && err.message.includes(`ontainer ${id}`)) throw err;
      throw withContext(err, (m) => `${m} (container ${id})`);
    } finally {
      this.creating.delete(id);
    }
  }

  /**
   * The profile resolved to numbers and built once by libseccomp (then thrown away), so that what
   * libseccomp would refuse in the helper fails CreateContainer instead.
   */
  private seccompPlan(profile: LinuxSeccomp, id: string): SeccompPlan {
    const support = this.deps.seccomp?.();
    if (!support?.ok)
      throw failedPrecondition(`container ${id}: its seccomp profile cannot be enforced: ${support?.why ?? 'this agent has no seccomp support'}`);
    const { lib } = support;
    const { plan, unknownSyscalls } = translateProfile(profile, { syscall: (n) => lib.resolveSyscall(n), arch: (n) => lib.resolveArch(n) });
    if (unknownSyscalls.length > 0) this.deps.log.warn({ container_id: id, syscalls: unknownSyscalls }, 'seccomp: syscalls unknown to libseccomp are skipped');
    try {
      checkFilter(lib, plan);
    } catch (err) {
      throw new InvalidArgument(`seccomp: libseccomp refuses the profile: ${(err as Error).message}`);
    }
    return plan;
  }

  /** Waits for the helper's node, hands it the plan and waits until it is ready to execve. */
  private async planned(helper: Helper, plan: Parameters<Helper['sendPlan']>[0], what: string, io: ProcessIO): Promise<void> {
    await helper.booted(what);
    helper.sendPlan(plan);
    await helper.ready(what, io);
  }

  private spawn(pidns: PidNamespaceChoice, io: ProcessIO): Helper {
    try {
      return Helper.spawn(this.deps.libc, pidns, io.childFds);
    } finally {
      io.closeChildEnds();
    }
  }

  async start(id: string): Promise<void> {
    const c = this.get(id);
    if (c.state !== 'created') throw failedPrecondition(`container ${id} is ${c.state}, not created`);
    c.state = 'running';
    try {
      await c.init.helper.start(`StartContainer ${id}`);
    } catch (err) {
      c.state = 'stopped';
      c.init.kill(SIGKILL);
      throw err;
    }
    // The watch outlives the init (stopped at RemoveContainer): the kill that ended it is reported after its exit.
    if (c.init.running) {
      c.stopOomWatch = c.cgroup.watchOom(() => {
        this.deps.log.warn({ container_id: id }, 'OOM kill in container');
        this.oomEvents.push(id);
      });
    }
  }

  async exec(req: ExecProcessRequest): Promise<void> {
    const c = this.get(req.containerId);
    const execId = checkId('exec', req.execId);
    if (c.execs.has(execId) || c.startingExecs.has(execId) || c.isInit(execId)) throw alreadyExists(`exec id ${execId} already exists in container ${c.id}`);
    if (!c.init.running) throw failedPrecondition(`container ${c.id} is not running`);
    // Reserved until registered: two concurrent ExecProcess with one id would otherwise both start,
    // and the second's registration would orphan the first process and its pipes.
    c.startingExecs.add(execId);
    try {
      await this.startExec(c, execId, req);
    } finally {
      c.startingExecs.delete(execId);
    }
  }

  private async startExec(c: Container, execId: string, req: ExecProcessRequest): Promise<void> {
    const initProc = `/proc/${c.init.pid}`;
    // mnt last: the helper opens every path before it joins any, and needs its old /proc until then.
    const types: [string, number][] = [
      ['ipc', CLONE_NEWIPC],
      ['uts', CLONE_NEWUTS],
      ['net', CLONE_NEWNET],
      ['cgroup', CLONE_NEWCGROUP],
      ['mnt', CLONE_NEWNS],
    ];
    const plan: ExecPlan = {
      kind: 'exec',
      initProc,
      join: types.map(([name, type]) => ({ type, path: `${initProc}/ns/${name}` })),
      process: { ...processPlan(req.process, `ExecProcess ${execId}`), seccomp: c.seccomp },
    };
    const io = this.deps.createIO({ terminal: plan.process.terminal, pipeSize: this.deps.pipeSize, libc: this.deps.libc });
    const pidnsPath = `${initProc}/ns/pid`;
    let helper = this.deps.warmExec?.take(c.id);
    let viaWarm = false;
    const what = `ExecProcess ${execId}`;
    try {
      if (helper) {
        try {
          // A warm helper started with /dev/null: it reopens the real stdio through /proc/<agent>/fd.
          await this.planned(helper, { ...plan, stdio: { pid: process.pid, fds: io.childFds, terminal: plan.process.terminal } }, what, io);
          viaWarm = true;
        } catch (err) {
          // It waits inside the container, where a process may kill it (kill -9 -1) between take()
          // and "ready": that exec gets a fresh helper. An error the helper reported stands.
          if (!helper.diedWithoutReport) throw err;
          this.deps.log.warn({ container_id: c.id, exec_id: execId, err: (err as Error).message }, 'warm exec helper gone; starting a fresh one');
          helper = undefined;
        }
      }
      if (!helper) {
        helper = this.spawn({ kind: 'join', path: pidnsPath }, io);
        await this.planned(helper, plan, what, io);
      }
      if (viaWarm) io.closeChildEnds();
      // Joined only now, just before execve, so the helper's own memory is not charged to the container.
      c.cgroup.addProcess(helper.pid);
      await helper.start(what);
      // RemoveContainer began meanwhile and is waiting only for the processes it saw.
      if (c.removing || this.containers.get(c.id) !== c) throw failedPrecondition(`${what}: container ${c.id} is being removed`);
    } catch (err) {
      if (helper) {
        helper.child.kill('SIGKILL');
        await helper.exited;
      }
      io.dispose();
      throw err;
    }
    if (viaWarm) this.deps.log.debug({ container_id: c.id, exec_id: execId, pid: helper.pid }, 'exec served by a warm helper');
    c.execs.set(execId, new ContainerProcess(execId, helper, io));
    // The next exec's helper is forked only now: a fork of the agent takes milliseconds of its main
    // thread and a node boot a core, which would otherwise slow this exec's own setup.
    this.deps.warmExec?.prepare(c.id, pidnsPath, () => this.containers.get(c.id) === c && c.init.running && !c.removing);
  }

  /** `allForEmptyId`: exec id "" means every process of the container, whatever the signal (1.x). */
  async signal(containerId: string, execId: string, signal: number, allForEmptyId: boolean): Promise<void> {
    const c = this.get(containerId);
    const p = c.process(execId);
    if (!p) throw notFound(`process ${execId || '(init)'} of container ${containerId} not found`);
    // A pid-namespace init without a SIGTERM handler ignores SIGTERM from outside; the host means "stop".
    if (p === c.init && c.ownPidns && signal === SIGTERM && !signalCaught(p.pid, SIGTERM)) signal = SIGKILL;
    if (p === c.init && (signal === SIGKILL || (allForEmptyId && execId === ''))) return this.signalAll(c, signal);
    p.kill(signal);
  }

  /** Every process in the cgroup (race-free, see cgroups/signal-all.ts), and helpers not in it yet. */
  private async signalAll(c: Container, signal: number): Promise<void> {
    await signalAll(c.cgroup, signal);
    for (const p of c.allProcesses()) p.kill(signal);
  }

  async wait(containerId: string, execId: string): Promise<number> {
    const c = this.get(containerId);
    const p = this.process(containerId, execId);
    const status = await p.helper.exited;
    if (!p.waited) {
      p.waited = true;
      p.io.dispose();
      if (p !== c.init) c.execs.delete(p.execId);
    }
    return status;
  }

  /** timeoutS 0 = wait as long as it takes; otherwise DEADLINE_EXCEEDED after that many seconds. */
  async remove(id: string, timeoutS: number): Promise<void> {
    const c = this.get(id);
    c.removing = true;
    await this.deps.warmExec?.discard(id);
    const exited = Promise.all(c.allProcesses().map((p) => p.helper.exited));
    c.init.helper.abandon();
    await this.signalAll(c, SIGKILL);
    if (timeoutS > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutS * 1000)));
      const r = await Promise.race([exited, deadline]);
      clearTimeout(timer);
      if (r === 'timeout') throw new DeadlineExceeded(`container ${id}: processes still running after ${timeoutS} s`);
    } else {
      await exited;
    }
    c.stopOomWatch?.();
    for (const p of c.allProcesses()) if (!p.waited) p.io.dispose();
    await c.cgroup.destroy();
    this.cgroupUsers.delete(c.cgroup.relPath);
    releaseStorages(c.storages);
    removeBundle(this.deps.libc, this.deps.log, c.bundle, c.rootfs);
    this.containers.delete(id);
  }

  async removeAll(): Promise<void> {
    for (const id of this.ids()) await this.remove(id, 0);
  }

  pause(id: string): Promise<void> {
    return this.get(id).cgroup.freeze();
  }

  resume(id: string): Promise<void> {
    return this.get(id).cgroup.thaw();
  }

  update(id: string, resources: LinuxResources | undefined): void {
    const c = this.get(id);
    if (!resources) throw invalidArgument(`UpdateContainer ${id}: no resources given`);
    c.cgroup.update(withDefaultDeviceRules(resources)!);
  }
}
