// Pod-wide state CreateSandbox sets up and DestroySandbox undoes: shared IPC/UTS namespaces, DNS,
// storages, kernel modules, and the choice of a shared pid namespace.
import path from 'node:path';
import type { CreateSandboxRequest } from '../../../protos/gen/agent_pb.js';
import type { Libc } from '../linux/libc.js';
import { MNT_DETACH, MS_BIND } from '../linux/libc.js';
import { AlreadyExists, InvalidArgument, failedPrecondition } from '../errors.js';
import { checkId } from '../container/id.js';
import { defaultModulesDir, loadModules, moduleName } from '../../../init/src/modules.js';
import { releaseStorages, type MountedStorage, type StorageRegistry } from '../storage/storages.js';
import { realStorageFs, type StorageFs } from '../storage/storage-fs.js';
import { pinSharedNamespaces, unpinSharedNamespaces, type PinnedNamespaces } from './shared-namespaces.js';

export interface SandboxDeps {
  libc: Libc;
  stateRoot: string;
  /** Where the pod's DNS config is bind-mounted: /etc/resolv.conf in a guest, a temp file in tests. */
  resolvConfTarget: string;
  /** Where kernel_modules are looked up (modules.dep): /lib/modules/<release> by default. */
  modulesDir?: string;
  /** Storages of the pod and its containers, counted by mount point. */
  storages: StorageRegistry;
  /** The sandbox directory and the DNS file (an in-memory tree in unit tests). */
  fs?: StorageFs;
}

interface Active {
  id: string;
  dir: string;
  namespaces: PinnedNamespaces;
  storages: MountedStorage[];
  resolvConfMounted: boolean;
  sandboxPidns: boolean;
  /** /proc/<pid>/ns/pid of the first container when sandbox_pidns is set. */
  pidnsPath?: string;
}

/**
 * CreateSandbox's kernel_modules, loaded with finit_module from the guest's modules.dep as PID 1
 * loads its own (no modprobe binary needed); the parameters go to the named module, not to the
 * dependencies loaded before it.
 */
function loadKernelModule(libc: Libc, modulesDir: string, name: string, parameters: string[]): void {
  const r = loadModules(libc, modulesDir, [name], { [moduleName(name)]: parameters.join(' ') });
  // Unlisted, or no modules.dep at all: either way this guest does not carry what the host asked for.
  if (r.unknown.length) throw new InvalidArgument(`kernel module ${name}: not in ${modulesDir}/modules.dep`);
  const noDep = r.failed.find((f) => f.file.endsWith('modules.dep'));
  if (noDep) throw new InvalidArgument(`kernel module ${name}: this guest has no modules.dep (${noDep.error})`);
  if (r.failed.length) throw new Error(`kernel module ${name}: ${r.failed.map((f) => `${f.file}: ${f.error}`).join('; ')}`);
}

export class Sandbox {
  private active: Active | undefined;
  private readonly fs: StorageFs;

  constructor(private readonly deps: SandboxDeps) {
    this.fs = deps.fs ?? realStorageFs;
  }

  get exists(): boolean {
    return this.active !== undefined;
  }

  get sharedNamespaces(): { ipc?: string; uts?: string } {
    return this.active ? { ipc: this.active.namespaces.ipc, uts: this.active.namespaces.uts } : {};
  }

  /** Where sandbox and container storages are set up and counted (containers share some). */
  get storages(): StorageRegistry {
    return this.deps.storages;
  }

  get sandboxPidns(): boolean {
    return this.active?.sandboxPidns ?? false;
  }

  get pidnsPath(): string | undefined {
    return this.active?.pidnsPath;
  }

  set pidnsPath(p: string | undefined) {
    if (this.active) this.active.pidnsPath = p;
  }

  async create(req: CreateSandboxRequest, signal?: AbortSignal): Promise<void> {
    if (req.sandboxId) checkId('sandbox', req.sandboxId);
    // The waits come first, before anything is set up (a disk the host is still hot-plugging).
    const found = await this.deps.storages.findDevices(req.storages, signal);
    if (this.active) throw new AlreadyExists(`sandbox ${this.active.id} already exists`);
    const libc = this.deps.libc;
    const fs = this.fs;
    const dir = path.join(this.deps.stateRoot, 'sandbox');
    const undo: (() => void)[] = [];
    try {
      for (const m of req.kernelModules) loadKernelModule(libc, this.deps.modulesDir ?? defaultModulesDir(), m.name, m.parameters);
      if (!fs.exists(dir)) undo.push(() => fs.remove(dir));
      fs.mkdirs(dir);
      const namespaces = pinSharedNamespaces(libc, path.join(dir, 'ns'), req.hostname);
      undo.push(() => unpinSharedNamespaces(libc, namespaces));
      let resolvConfMounted = false;
      if (req.dns.length > 0) {
        const resolv = path.join(dir, 'resolv.conf');
        fs.writeFile(resolv, req.dns.map((l) => l.trim()).join('\n') + '\n');
        // A bind mount needs an existing file to cover.
        if (!fs.exists(this.deps.resolvConfTarget)) {
          fs.mkdirs(path.dirname(this.deps.resolvConfTarget));
          fs.writeFile(this.deps.resolvConfTarget, '');
        }
        libc.mount(resolv, this.deps.resolvConfTarget, null, MS_BIND, null);
        resolvConfMounted = true;
        undo.push(() => libc.umount2(this.deps.resolvConfTarget, MNT_DETACH));
      }
      const storages = this.deps.storages.mount(req.storages, '', found);
      this.active = { id: req.sandboxId, dir, namespaces, storages, resolvConfMounted, sandboxPidns: req.sandboxPidns };
    } catch (err) {
      for (const f of undo.reverse()) f();
      throw err;
    }
  }

  /** Undoes everything create() did; the caller has removed the containers first. */
  destroy(): void {
    const a = this.active;
    if (!a) throw failedPrecondition('no sandbox to destroy');
    const libc = this.deps.libc;
    releaseStorages(a.storages);
    if (a.resolvConfMounted) {
      try {
        libc.umount2(this.deps.resolvConfTarget, MNT_DETACH);
      } catch {
        // Unmounted behind our back.
      }
    }
    unpinSharedNamespaces(libc, a.namespaces);
    this.fs.remove(a.dir);
    this.active = undefined;
  }
}
