// Sandbox and container storages (Storage messages of CreateSandbox and CreateContainer), counted by
// mount point as kata does: a storage several containers name is set up once and undone when its
// last user is released. The drivers themselves are modules of drivers/, found here by name.
import path from 'node:path';
import type { Storage } from '../../../protos/gen/agent_pb.js';
import type { Libc } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';
import { invalidArgument, Unimplemented } from '../errors.js';
import type { BlockDevice } from '../device/block.js';
import { isBlockKind, type BlockKind, type HotplugDevices } from '../device/hotplug.js';
import type { StorageDriver, Undo } from './drivers/common.js';
import { remountEphemeral } from './drivers/ephemeral.js';
import { driverFactories } from './drivers/index.js';
import { realStorageFs, type StorageFs } from './storage-fs.js';

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
  /** The agent's state root (default /run/kata-containers): overlayfs keeps overlay-rw layers below it. */
  stateRoot?: string;
}

interface Entry {
  refs: number;
  driver: string;
  undo: Undo;
}

export class StorageRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly all: StorageDriver[];
  /** Served drivers by Storage.driver name; device drivers only where devices are waited for. */
  private readonly byName = new Map<string, StorageDriver>();
  private readonly env;

  constructor(private readonly deps: StorageDeps) {
    this.env = {
      libc: deps.libc,
      fs: deps.fs ?? realStorageFs,
      log: deps.log,
      ensureFilesystem: deps.ensureFilesystem,
      watchIntervalMs: deps.watchIntervalMs ?? 2000,
      stateRoot: deps.stateRoot ?? '/run/kata-containers',
    };
    this.all = driverFactories.map((make) => make(this.env));
    for (const d of this.all) if (!d.needsDevice || deps.devices) for (const n of d.names) this.byName.set(n, d);
  }

  /** The drivers served: GetGuestDetails' storage_handlers. */
  get drivers(): string[] {
    return [...this.byName.keys()];
  }

  private check(s: Storage): StorageDriver {
    const d = this.byName.get(s.driver);
    if (!d) {
      const offGuest = this.all.some((x) => x.names.includes(s.driver));
      if (offGuest || unservedDrivers.includes(s.driver)) {
        throw new Unimplemented(
          `storage driver ${s.driver} (source "${s.source}", mount point ${s.mountPoint}) needs a hot-plugged device of a kind this agent does not support${offGuest ? ' off the guest' : ' yet'}`,
        );
      }
      throw invalidArgument(`storage driver ${s.driver} not supported`);
    }
    if (!s.mountPoint.startsWith('/') || s.mountPoint.split('/').includes('..')) {
      throw invalidArgument(`storage mount point "${s.mountPoint}" must be an absolute path without ".."`);
    }
    return d;
  }

  /**
   * Waits for the disks the block storages name (up to agent.hotplug_timeout each, all at once): the
   * host hot-plugs them just before it sends the request. A storage mounted already needs none.
   */
  async findDevices(storages: readonly Storage[], signal?: AbortSignal): Promise<FoundDevices> {
    for (const s of storages) this.check(s);
    const found = new Map<Storage, BlockDevice>();
    const devices = this.deps.devices;
    const waits = storages
      .filter((s) => this.check(s).needsDevice && isBlockKind(s.driver) && !this.entries.has(path.resolve(s.mountPoint)))
      .map(async (s) => found.set(s, await devices!.block(s.driver as BlockKind, s.source, signal)));
    await Promise.all(waits);
    return found;
  }

  /**
   * Sets up all or none: on a failure the ones already done are released before the error surfaces.
   * Block storages need their disk from findDevices.
   */
  mount(storages: readonly Storage[], containerId = '', devices: FoundDevices = new Map()): MountedStorage[] {
    for (const s of storages) this.check(s);
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
      e = { refs: 1, driver: s.driver, undo: this.check(s).setUp(s, { containerId, device }) };
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

  /** UpdateEphemeralMounts: each tmpfs is remounted with the options given (its new size). */
  updateEphemeral(storages: readonly Storage[]): void {
    for (const s of storages) remountEphemeral(this.env, s);
  }

  /** One comparison of every watchable-bind source with its copy (what the poller does every interval). */
  pollWatchable(): void {
    for (const d of this.all) d.poll?.();
  }

  /** Stops the watchable-bind poller (agent shutdown); mounts are undone by their releases. */
  close(): void {
    for (const d of this.all) d.close?.();
  }
}

export function releaseStorages(list: readonly MountedStorage[]): void {
  for (const s of [...list].reverse()) s.release();
}
