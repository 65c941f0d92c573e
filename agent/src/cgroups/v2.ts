// cgroup v2 driver: one group directory below the agent's own group in the unified hierarchy.
import path from 'node:path';
import type { LinuxResources } from '../../../protos/gen/oci_pb.js';
import type { CgroupStats } from '../../../protos/gen/agent_pb.js';
import { BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, BPF_PROG_TYPE_CGROUP_DEVICE, O_DIRECTORY, O_RDONLY } from '../linux/libc.js';
import { openPath } from '../linux/paths.js';
import { alreadyExists, failedPrecondition, invalidArgument } from '../errors.js';
import { deviceFilterProgram } from './device-filter.js';
import type { Cgroup, CgroupManager } from './cgroup.js';
import { parseFlatKeyed, parsePids } from './files.js';
import { makeGroupDirs, OwnedParents, removeCreated, removeGroupDirs } from './group-dirs.js';
import { watchOomV2 } from './oom-v2.js';
import { checkRelPath } from './self-path.js';
import type { DriverDeps } from './deps.js';
import { v2Stats } from './v2-stats.js';
import { v2Writes } from './v2-settings.js';
import { awaitEmpty, OomWatches } from './group-lifecycle.js';
import { waitUntil } from './wait.js';

export class V2Manager implements CgroupManager {
  readonly version = 'v2' as const;
  readonly v1Hierarchies: readonly string[] = [];
  private readonly parents = new OwnedParents();
  constructor(
    /** The cgroup2 mount point. */
    readonly mountPoint: string,
    /** The agent's own group, from the "0::" line of /proc/self/cgroup. */
    readonly ownPath: string,
    private readonly deps: DriverDeps,
  ) {}

  create(relPath: string, resources: LinuxResources | undefined): Cgroup {
    checkRelPath(relPath);
    const { files } = this.deps;
    const base = path.join(this.mountPoint, this.ownPath);
    const leaf = path.join(base, relPath);
    if (files.exists(leaf)) throw alreadyExists(`cgroup ${leaf} already exists`);
    // Controllers reach a group only through every ancestor's subtree_control.
    this.delegate(base);
    const created = makeGroupDirs(files, base, relPath, (dir) => {
      if (dir !== leaf) this.delegate(dir);
    });
    try {
      const group = new V2Cgroup(relPath, leaf, base, this.parents, this.deps);
      if (resources) group.update(resources);
      this.parents.add(created.filter((d) => d !== leaf));
      return group;
    } catch (err) {
      removeCreated(files, created);
      throw err;
    }
  }

  /**
   * Enables in `dir`'s children every controller `dir` has. One write per controller so one the
   * kernel refuses (e.g. EBUSY: `dir` still holds processes, as a non-root agent group does) costs
   * only that controller, and the first write to a file it governs names it.
   */
  private delegate(dir: string): void {
    const { files, log } = this.deps;
    const available = (files.readOptional(path.join(dir, 'cgroup.controllers')) ?? '').split(/\s+/).filter(Boolean);
    const enabled = new Set((files.readOptional(path.join(dir, 'cgroup.subtree_control')) ?? '').split(/\s+/));
    for (const c of available) {
      if (enabled.has(c)) continue;
      try {
        files.write(path.join(dir, 'cgroup.subtree_control'), `+${c}`);
      } catch (err) {
        log.warn({ cgroup: dir, controller: c, err: (err as Error).message }, 'cannot enable cgroup controller');
      }
    }
  }
}

class V2Cgroup implements Cgroup {
  private readonly watches = new OomWatches();
  /** fd of the attached device filter program, -1 while none is. */
  private devicesProg = -1;

  constructor(
    readonly relPath: string,
    private readonly dir: string,
    private readonly base: string,
    private readonly parents: OwnedParents,
    private readonly deps: DriverDeps,
  ) {}

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  addProcess(pid: number): void {
    this.deps.files.write(this.file('cgroup.procs'), String(pid));
  }

  refreshCpuset(_guestCpus: string, own: string | undefined): void {
    if (own && this.deps.files.exists(this.file('cpuset.cpus'))) this.deps.files.write(this.file('cpuset.cpus'), own);
  }

  update(resources: LinuxResources): void {
    const { files, log } = this.deps;
    const writes = v2Writes(resources, { exists: (f) => files.exists(this.file(f)), read: (f) => files.readOptional(this.file(f)) }, (msg) =>
      log.warn({ cgroup: this.relPath }, msg),
    );
    for (const w of writes) {
      if (!files.exists(this.file(w.file))) {
        const controller = w.file.split('.')[0];
        throw failedPrecondition(`setting ${w.file}: the ${controller} controller is not enabled for ${this.dir}`);
      }
      files.write(this.file(w.file), w.value);
    }
    // Last, so a create that fails on a file write leaves no program behind.
    if (resources.Devices.length > 0) this.applyDevices(resources);
  }

  private applyDevices(resources: LinuxResources): void {
    let insns: Uint8Array;
    try {
      insns = deviceFilterProgram(resources.Devices);
    } catch (err) {
      throw invalidArgument(`device rules for ${this.relPath}: ${(err as Error).message}`);
    }
    const libc = this.deps.libc();
    const prog = libc.bpfProgLoad(BPF_PROG_TYPE_CGROUP_DEVICE, insns, 'Apache-2.0');
    let dirFd: number | undefined;
    try {
      dirFd = openPath(libc, this.dir, O_RDONLY | O_DIRECTORY);
      // ALLOW_MULTI lets the new filter go in before the old one comes out: both run in between (the
      // stricter wins), so no access ever passes unfiltered during an update.
      libc.bpfProgAttach(dirFd, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI);
    } catch (err) {
      libc.close(prog);
      if (dirFd !== undefined) libc.close(dirFd);
      throw err;
    }
    const old = this.devicesProg;
    this.devicesProg = prog;
    try {
      if (old >= 0) {
        libc.bpfProgDetach(dirFd, old, BPF_CGROUP_DEVICE);
        libc.close(old);
      }
    } finally {
      libc.close(dirFd);
    }
  }

  private frozen(): boolean {
    return parseFlatKeyed(this.deps.files.readOptional(this.file('cgroup.events'))).get('frozen') === 1n;
  }

  private async setFrozen(on: boolean): Promise<void> {
    const { files, freezeTimeoutMs } = this.deps;
    const freeze = this.file('cgroup.freeze');
    if (!files.exists(freeze)) throw failedPrecondition(`${freeze} does not exist: the kernel has no cgroup v2 freezer`);
    files.write(freeze, on ? '1' : '0');
    try {
      await waitUntil(() => this.frozen() === on, `${on ? 'freezing' : 'thawing'} ${this.dir}`, freezeTimeoutMs);
    } catch (err) {
      if (on) files.write(freeze, '0');
      throw err;
    }
  }

  freeze(): Promise<void> {
    return this.setFrozen(true);
  }

  thaw(): Promise<void> {
    return this.setFrozen(false);
  }

  state(): 'FROZEN' | 'THAWED' {
    return this.frozen() ? 'FROZEN' : 'THAWED';
  }

  /**
   * SIGKILL to every process through cgroup.kill (kernel 5.14+), which is atomic against forks
   * without a freeze. False when the kernel has no cgroup.kill.
   */
  killAll(): boolean {
    const kill = this.file('cgroup.kill');
    if (!this.deps.files.exists(kill)) return false;
    this.deps.files.write(kill, '1');
    return true;
  }

  pids(): number[] {
    return parsePids(this.deps.files.read(this.file('cgroup.procs')));
  }

  stats(): CgroupStats {
    return v2Stats({ read: (f) => this.deps.files.readOptional(this.file(f)), list: () => this.deps.files.fs.readdir(this.dir) });
  }

  watchOom(onOom: () => void): () => void {
    if (!this.deps.files.exists(this.file('memory.events'))) throw failedPrecondition(`OOM watch: the memory controller is not enabled for ${this.dir}`);
    const stop = watchOomV2(this.dir, this.deps.files, onOom, (err) => this.deps.log.warn({ cgroup: this.relPath, err: err.message }, 'OOM watch ended'));
    return this.watches.add(stop);
  }

  async destroy(): Promise<void> {
    await awaitEmpty(this.relPath, () => this.pids(), this.deps.destroyGraceMs);
    this.watches.stopAll();
    await removeGroupDirs(this.deps.files, [this.dir]);
    this.parents.prune(this.deps.files, this.dir, this.base);
    // The kernel detached the filter with the group; our fd was the program's last reference.
    if (this.devicesProg >= 0) {
      this.deps.libc().close(this.devicesProg);
      this.devicesProg = -1;
    }
  }
}
