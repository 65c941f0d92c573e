// Driver loading for hot-plugged devices, udev's job on other systems: a new device's MODALIAS is
// matched against the image's modules.alias and the modules found are loaded (init/src/modules.ts
// does the same for the devices present at boot). A virtio-blk disk is three events deep (PCI
// function, virtio device, disk); the disk appears only once the virtio device's driver is in.
import fs from 'node:fs';
import path from 'node:path';
import { defaultModulesDir, loadModules, modulesForDevices, parseModulesAlias, type ModuleAlias } from '../../../init/src/modules.js';
import type { Libc } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';

export interface AutoloadDeps {
  libc: Pick<Libc, 'finitModule'>;
  log: Logger;
  modulesDir?: string;
  /** Module files already tried: one set for the agent's loaders, so none tries a file twice. */
  tried?: Set<string>;
}

/** (modalias) => void, loading each module file at most once per agent. */
export function moduleAutoloader(deps: AutoloadDeps): (modalias: string) => void {
  const modulesDir = deps.modulesDir ?? defaultModulesDir();
  let aliases: ModuleAlias[] | undefined;
  const tried = deps.tried ?? new Set<string>();
  return (modalias) => {
    if (!aliases) {
      try {
        aliases = parseModulesAlias(fs.readFileSync(path.join(modulesDir, 'modules.alias'), 'utf8'));
      } catch (err) {
        aliases = [];
        deps.log.warn({ err: (err as Error).message }, 'no modules.alias: hot-plugged devices get only built-in drivers');
      }
    }
    const modules = modulesForDevices(aliases, [modalias]);
    if (modules.length === 0) return;
    const r = loadModules(deps.libc, modulesDir, modules, {}, tried);
    if (r.loaded.length > 0 || r.failed.length > 0) deps.log.info({ modalias, loaded: r.loaded, ms: r.ms, failed: r.failed }, 'driver for a new device');
  };
}

/**
 * (names) => void: loads modules by name with their dependencies (a driver a device gets by name,
 * not by modalias: vfio_pci for a driver_override), each file at most once per agent.
 */
export function moduleLoader(deps: AutoloadDeps): (names: string[]) => void {
  const modulesDir = deps.modulesDir ?? defaultModulesDir();
  const tried = deps.tried ?? new Set<string>();
  return (names) => {
    const r = loadModules(deps.libc, modulesDir, names, {}, tried);
    if (r.loaded.length > 0 || r.failed.length > 0 || r.unknown.length > 0)
      deps.log.info({ names, loaded: r.loaded, ms: r.ms, failed: r.failed, unknown: r.unknown }, 'modules loaded by name');
  };
}
