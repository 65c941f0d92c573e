// Sandbox and container storages (Storage messages of CreateSandbox and CreateContainer), counted by
// mount point as kata does: a storage several containers name is set up once and undone when its
// last user is released. The drivers themselves are in drivers.ts and watchable.ts.
import path from 'node:path';
import type { Storage } from '../../../protos/gen/agent_pb.js';
import type { Libc } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';
import { invalidArgument, Unimplemented } from '../errors.js';
import type { BlockDevice } from '../device/block.js';
import { isBlockKind, type BlockKind, type HotplugDevices } from '../device/hotplug.js';
import { mountBind, mountBlock, mountEphemeral, mountLocal, mountSharedFs, remountEphemeral, type DriverEnv, type Undo } from './drivers.js';
import { WatchableBinds } from './watchable.js';
import { realStorageFs, type StorageFs } from './storage-fs.js';

/** Drivers this agent sets up without a device (GetGuestDetails reports them as storage_handlers). */
export const storageDrivers = ['9p', 'virtio-fs', 'ephemeral', 'local', 'bind', 'watchable-bind'];
/** Drivers of hot-plugged disks, served when the agent waits for devices (on the guest). */
export const blockStorageDrivers = ['blk', 'mmioblk', 'scsi', 'nvdimm'];

/** kata drivers this agent does not serve (yet): refused by name, not as unknown. */
const unservedDrivers = ['blk-ccw', 'vfio', 'vfio-pci', 'vfio-ap', 'image_guest_pull', 'erofs.multi-layer'];

/** Disks found for block storages (StorageRegistry.findDevices), by storage. */
export type FoundDevices = ReadonlyMap<Storage, BlockDevice>;

export interface MountedStorage {
  mountPoint: string;
  /** Drops this user's reference; the last one undoes the mount/directory. Never throws. */
  release(): void;
}

export interface StorageDeps {
  libc: Libc;
  /** Directories, copies and owners around the mounts (an in-memory tree in unit tests). */
  fs?: StorageFs;
  log: Logger;
  /** Makes sure the kernel knows a filesystem type (loads its modules); throws when it cannot. */
  ensureFilesystem: (fstype: string) => void;
  /** How often watchable-bind sources are compared with their copies (kata: 2 s). */
  watchIntervalMs?: number;
  /** Finds hot-plugged disks; without it the block drivers are refused as not served. */
  devices?: HotplugDevices;
}

interface Entry {
  refs: number;
  driver: string;
  undo: Undo;
}

function checkStorage(s: Storage, blockDrivers: boolean): void {
  if (unservedDrivers.includes(s.driver) || (!blockDrivers && blockStorageDrivers.includes(s.driver))) {
    throw new Unimplemented(
      `storage driver ${s.driver} (source "${s.source}", mount point ${s.mountPoint}) needs a hot-plugged device of a kind this agent does not support${blockDrivers ? ' yet' : ' off the guest'}`,
    );
  }
  if (!storageDrivers.includes(s.driver) && !blockStorageDrivers.includes(s.driver)) throw invalidArgument(`storage driver ${s.driver} not supported`);
  if (!s.mountPoint.startsWith('/') || s.mountPoint.split('/').includes('..')) {
    throw invalidArgument(`storage mount point "${s.mountPoint}" must be an absolute path without ".."`);
  }
}

export class StorageRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly watchable: WatchableBinds;
  private readonly env: DriverEnv;

  constructor(private readonly deps: StorageDeps) {
    this.env = { libc: deps.libc, fs: deps.fs ?? realStorageFs, log: deps.log, ensureFilesystem: deps.ensureFilesystem };
    this.watchable = new WatchableBinds(this.env, deps.watchIntervalMs ?? 2000);
  }

  /** The drivers served: GetGuestDetails' storage_handlers. */
  get drivers(): string[] {
    return this.deps.devices ? [...storageDrivers, ...blockStorageDrivers] : [...storageDrivers];
  }

  /**
   * Waits for the disks the block storages name (up to agent.hotplug_timeout each, all at once): the
   * host hot-plugs them just before it sends the request. A storage mounted already needs none.
   */
  async findDevices(storages: readonly Storage[], signal?: AbortSignal): Promise<FoundDevices> {
    for (const s of storages) checkStorage(s, this.deps.devices !== undefined);
    const found = new Map<Storage, BlockDevice>();
    const devices = this.deps.devices;
    const waits = storages
      .filter((s) => isBlockKind(s.driver) && !this.entries.has(path.resolve(s.mountPoint)))
      .map(async (s) => found.set(s, await devices!.block(s.driver as BlockKind, s.source, signal)));
    await Promise.all(waits);
    return found;
  }

  /**
   * Sets up all or none: on a failure the ones already done are released before the error surfaces.
   * Block storages need their disk from findDevices.
   */
  mount(storages: readonly Storage[], containerId = '', devices: FoundDevices = new Map()): MountedStorage[] {
    for (const s of storages) checkStorage(s, this.deps.devices !== undefined);
    const done: MountedStorage[] = [];
    try {
      for (const s of storages) done.push(this.acquire(s, containerId, devices.get(s)));
    } catch (err) {
      releaseStorages(done);
      throw err;
    }
    return done;
  }

  /** Mount points in use and how many users each has (tests, debugging). */
  refCounts(): Record<string, number> {
    return Object.fromEntries([...this.entries].map(([mp, e]) => [mp, e.refs]));
  }

  private acquire(s: Storage, containerId: string, device: BlockDevice | undefined): MountedStorage {
    // "/run/…/containers/" and "/run/…/containers" are one mount point.
    const mp = path.resolve(s.mountPoint);
    let e = this.entries.get(mp);
    if (e) {
      if (e.driver !== s.driver) throw invalidArgument(`storage mount point ${mp} is already a ${e.driver} storage, not ${s.driver}`);
      e.refs++;
    } else {
      e = { refs: 1, driver: s.driver, undo: this.setUp(s, containerId, device) };
      this.entries.set(mp, e);
    }
    const entry = e;
    let released = false;
    return {
      mountPoint: mp,
      release: () => {
        if (released) return;
        released = true;
        if (--entry.refs > 0) return;
        this.entries.delete(mp);
        try {
          entry.undo();
        } catch (err) {
          this.deps.log.warn({ mount_point: mp, driver: entry.driver, err: (err as Error).message }, 'storage release');
        }
      },
    };
  }

  private setUp(s: Storage, containerId: string, device: BlockDevice | undefined): Undo {
    switch (s.driver) {
      case 'blk':
      case 'mmioblk':
      case 'scsi':
      case 'nvdimm':
        if (!device) throw new Error(`storage ${s.driver} ${s.source}: mounted without its device (findDevices first)`);
        return mountBlock(this.env, s, device);
      case '9p':
      case 'virtio-fs':
        return mountSharedFs(this.env, s);
      case 'ephemeral':
        return mountEphemeral(this.env, s);
      case 'local':
        return mountLocal(this.env, s);
      case 'bind':
        return mountBind(this.env, s);
      case 'watchable-bind':
        return this.watchable.add(s, containerId);
      default:
        throw invalidArgument(`storage driver ${s.driver} not supported`);
    }
  }

  /** UpdateEphemeralMounts: each tmpfs is remounted with the options given (its new size). */
  updateEphemeral(storages: readonly Storage[]): void {
    for (const s of storages) remountEphemeral(this.env, s);
  }

  /** One comparison of every watchable-bind source with its copy (what the poller does every interval). */
  pollWatchable(): void {
    this.watchable.tick();
  }

  /** Stops the watchable-bind poller (agent shutdown); mounts are undone by their releases. */
  close(): void {
    this.watchable.close();
  }
}

export function releaseStorages(list: readonly MountedStorage[]): void {
  for (const s of [...list].reverse()) s.release();
}
