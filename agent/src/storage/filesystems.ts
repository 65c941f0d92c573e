// Kernel filesystems a storage needs. The guest kernel has 9p, virtiofs and ext4 as modules that the boot
// does not load (a pod without a shared directory never pays for them): the first storage of that
// type loads them, with the init's own finit_module loader, not a modprobe the image may not have.
import { defaultModulesDir, loadModules } from '../../../init/src/modules.js';
import type { Libc } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';
import { FailedPrecondition } from '../errors.js';
import { realStorageFs } from './storage-fs.js';

/** Modules per filesystem type, each list in load order (9p needs its virtio transport as well). */
export const filesystemModules: Record<string, string[]> = {
  '9p': ['9pnet_virtio', '9p'],
  virtiofs: ['virtiofs'],
  overlay: ['overlay'],
  // Hot-plugged disks (blk, scsi storages). xfs is not in the image (4 MB): its mount says why.
  ext4: ['ext4'],
  xfs: ['xfs'],
};

/** Filesystem types in /proc/filesystems ("nodev\ttmpfs" or "\text4" lines). */
export function parseFilesystems(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const name = line.split('\t').pop()?.trim();
    if (name) out.add(name);
  }
  return out;
}

export interface FilesystemDeps {
  libc: Pick<Libc, 'finitModule'>;
  log: Logger;
  readFilesystems?: () => string;
  /** /lib/modules/<release> of the running kernel. */
  modulesDir?: string;
}

export function filesystemEnsurer(deps: FilesystemDeps): (fstype: string) => void {
  const read = deps.readFilesystems ?? (() => realStorageFs.readText('/proc/filesystems'));
  const modulesDir = deps.modulesDir ?? defaultModulesDir();
  return (fstype) => {
    if (parseFilesystems(read()).has(fstype)) return;
    const modules = filesystemModules[fstype];
    // No module known for it: the mount itself will say ENODEV, naming the type.
    if (!modules) return;
    const r = loadModules(deps.libc, modulesDir, modules);
    deps.log.info({ fstype, loaded: r.loaded, ms: r.ms, already: r.alreadyLoaded, unknown: r.unknown, failed: r.failed }, 'filesystem modules');
    if (parseFilesystems(read()).has(fstype)) return;
    const why = [...r.failed.map((f) => `${f.file}: ${f.error}`), ...r.unknown.map((u) => `${u}: not in ${modulesDir}/modules.dep`)];
    throw new FailedPrecondition(
      `filesystem ${fstype} is not in /proc/filesystems and loading ${modules.join(', ')} did not add it${why.length ? ` (${why.join('; ')})` : ''}`,
    );
  };
}
