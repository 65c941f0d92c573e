// cgroup v1 driver: one directory per mounted hierarchy, each below the agent's own path in that
// hierarchy (they can differ: a test runner may sit in a memory sub-group only).
import path from 'node:path';
import type { LinuxResources } from '../../../protos/gen/oci_pb.js';
import type { CgroupStats } from '../../../protos/gen/agent_pb.js';
import { alreadyExists, failedPrecondition } from '../errors.js';
import type { Cgroup, CgroupManager } from './cgroup.js';
import { parsePids } from './files.js';
import { makeGroupDirs, OwnedParents, removeCreated, removeGroupDirs } from './group-dirs.js';
import type { DriverDeps } from './deps.js';
import { watchOomV1 } from './oom-v1.js';
import { checkRelPath } from './self-path.js';
import { v1Stats } from './v1-stats.js';
import { v1Writes } from './v1-settings.js';
import { awaitEmpty, OomWatches } from './group-lifecycle.js';
import { waitUntil } from './wait.js';

export interface V1Hierarchy {
  mountPoint: string;
  controllers: string[];
  /** The agent's own group in this hierarchy, e.g. "/" or "/system.slice/kata-agent.service". */
  ownPath: string;
}

export class V1Manager implements CgroupManager {
  readonly version = 'v1' as const;
  private readonly parents = new OwnedParents();
  constructor(
    readonly hierarchies: V1Hierarchy[],
    private readonly deps: DriverDeps,
    readonly v1Hierarchies: readonly string[] = [],
  ) {}

  create(relPath: string, resources: LinuxResources | undefined): Cgroup {
    checkRelPath(relPath);
    const { files } = this.deps;
    const leaves = this.hierarchies.map((h) => ({ h, base: path.join(h.mountPoint, h.ownPath), leaf: path.join(h.mountPoint, h.ownPath, relPath) }));
    for (const { leaf } of leaves) if (files.exists(leaf)) throw alreadyExists(`cgroup ${leaf} already exists`);

    const created: string[] = [];
    const dirs = new Map<string, string>();
    try {
      for (const { h, base, leaf } of leaves) {
        // A new cpuset group starts with no CPUs and no memory nodes and cannot take tasks until given some.
        const prepare = h.controllers.includes('cpuset')
          ? (dir: string, parent: string) => {
              for (const f of ['cpuset.cpus', 'cpuset.mems']) {
                if (files.read(path.join(dir, f)).trim() === '') files.write(path.join(dir, f), files.read(path.join(parent, f)).trim());
              }
            }
          : undefined;
        created.push(...makeGroupDirs(files, base, relPath, prepare));
        for (const c of h.controllers) dirs.set(c, leaf);
      }
      const group = new V1Cgroup(
        relPath,
        dirs,
        leaves.map((l) => ({ leaf: l.leaf, base: l.base })),
        this.parents,
        this.deps,
      );
      if (resources) group.update(resources);
      this.parents.add(created.filter((d) => !leaves.some((l) => l.leaf === d)));
      return group;
    } catch (err) {
      // Leave nothing behind: a failed CreateContainer must not leak groups.
      removeCreated(files, created);
      throw err;
    }
  }
}

class V1Cgroup implements Cgroup {
  private readonly watches = new OomWatches();

  constructor(
    readonly relPath: string,
    /** controller → this group's directory in the hierarchy carrying it. */
    private readonly dirs: Map<string, string>,
    private readonly leaves: Array<{ leaf: string; base: string }>,
    private readonly parents: OwnedParents,
    private readonly deps: DriverDeps,
  ) {}

  private dir(controller: string, why: string): string {
    const d = this.dirs.get(controller);
    if (!d) throw failedPrecondition(`${why}: no ${controller} cgroup hierarchy is mounted`);
    return d;
  }

  private readOptional(controller: string, file: string): string | undefined {
    const d = this.dirs.get(controller);
    return d ? this.deps.files.readOptional(path.join(d, file)) : undefined;
  }

  addProcess(pid: number): void {
    for (const { leaf } of this.leaves) this.deps.files.write(path.join(leaf, 'cgroup.procs'), String(pid));
  }

  update(resources: LinuxResources): void {
    const { files, log } = this.deps;
    const writes = v1Writes(
      resources,
      {
        has: (c) => this.dirs.has(c),
        exists: (c, f) => this.dirs.has(c) && files.exists(path.join(this.dirs.get(c)!, f)),
        read: (c, f) => this.readOptional(c, f),
      },
      (msg) => log.warn({ cgroup: this.relPath }, msg),
    );
    for (const w of writes) {
      const file = path.join(this.dir(w.controller, `setting ${w.file}`), w.file);
      // A missing file is a kernel without that feature (e.g. rt scheduling groups): say so, rather than NOT_FOUND.
      if (!files.exists(file)) throw failedPrecondition(`setting ${w.file}: this kernel's ${w.controller} controller has no such file (${file})`);
      files.write(file, w.value);
    }
  }

  async freeze(): Promise<void> {
    const state = path.join(this.dir('freezer', 'freeze'), 'freezer.state');
    const { files, freezeTimeoutMs } = this.deps;
    files.write(state, 'FROZEN');
    try {
      // A task that was forking or in uninterruptible sleep leaves the group FREEZING: asking again
      // makes the kernel retry it.
      await waitUntil(
        () => this.state() === 'FROZEN',
        `freezing ${path.dirname(state)}`,
        freezeTimeoutMs,
        () => files.write(state, 'FROZEN'),
      );
    } catch (err) {
      files.write(state, 'THAWED');
      throw err;
    }
  }

  async thaw(): Promise<void> {
    const state = path.join(this.dir('freezer', 'thaw'), 'freezer.state');
    this.deps.files.write(state, 'THAWED');
    await waitUntil(() => this.deps.files.read(state).trim() === 'THAWED', `thawing ${path.dirname(state)}`, this.deps.freezeTimeoutMs);
  }

  state(): 'FROZEN' | 'THAWED' {
    // FREEZING counts as not frozen: some task may still run.
    return this.readOptional('freezer', 'freezer.state') === 'FROZEN' ? 'FROZEN' : 'THAWED';
  }

  pids(): number[] {
    // Any hierarchy lists the same tasks; prefer the ones every container has.
    const c = ['pids', 'freezer', 'memory', 'cpu', ...this.dirs.keys()].find((k) => this.dirs.has(k));
    if (!c) return [];
    return parsePids(this.deps.files.read(path.join(this.dirs.get(c)!, 'cgroup.procs')));
  }

  stats(): CgroupStats {
    return v1Stats({
      has: (c) => this.dirs.has(c),
      read: (c, f) => this.readOptional(c, f),
      list: (c) => (this.dirs.has(c) ? this.deps.files.fs.readdir(this.dirs.get(c)!) : []),
    });
  }

  watchOom(onOom: () => void): () => void {
    const dir = this.dir('memory', 'OOM watch');
    const stop = watchOomV1(dir, this.deps.libc(), this.deps.files, onOom, (err) =>
      this.deps.log.warn({ cgroup: this.relPath, err: err.message }, 'OOM watch ended'),
    );
    return this.watches.add(stop);
  }

  refreshCpuset(guestCpus: string, own: string | undefined): void {
    const leaf = this.dirs.get('cpuset');
    const base = this.leaves.find((l) => l.leaf === leaf)?.base;
    if (!leaf || !base) return;
    // Outermost first: a level cannot hold CPUs its parent lacks.
    let dir = base;
    for (const seg of path.relative(base, leaf).split('/').slice(0, -1)) {
      dir = path.join(dir, seg);
      this.deps.files.write(path.join(dir, 'cpuset.cpus'), guestCpus);
    }
    this.deps.files.write(path.join(leaf, 'cpuset.cpus'), own ?? guestCpus);
  }

  async destroy(): Promise<void> {
    await awaitEmpty(this.relPath, () => this.pids(), this.deps.destroyGraceMs);
    this.watches.stopAll();
    await removeGroupDirs(
      this.deps.files,
      this.leaves.map((l) => l.leaf),
    );
    for (const { leaf, base } of this.leaves) this.parents.prune(this.deps.files, leaf, base);
  }
}
