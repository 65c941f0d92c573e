// Loads the kernel modules the image lists (/etc/kata-agent/modules), dependencies first, from the
// image's own /lib/modules/<release>/modules.dep (written by depmod at build time).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { splitWords } from '../../agent/src/config/words.js';
import type { Libc } from '../../agent/src/linux/libc.js';
import { uptimeMs } from '../../agent/src/log/uptime.js';

/** The running kernel's module tree, where depmod wrote modules.dep. */
export const defaultModulesDir = (): string => path.join('/lib/modules', os.release());

export interface ModuleInfo {
  /** Path relative to the modules folder. */
  file: string;
  /** Direct and indirect dependencies as files, in the order depmod wrote them. */
  deps: string[];
}

/** module name ("virtio_blk", dashes normalised to underscores) → its file and dependencies. */
export function parseModulesDep(text: string): Map<string, ModuleInfo> {
  const map = new Map<string, ModuleInfo>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon).trim();
    const deps = splitWords(line.slice(colon + 1));
    map.set(moduleName(file), { file, deps });
  }
  return map;
}

const moduleSuffixes = ['.ko', '.ko.xz', '.ko.gz', '.ko.zst'];

export function moduleName(file: string): string {
  const base = path.basename(file);
  const suffix = moduleSuffixes.find((s) => base.endsWith(s));
  return (suffix ? base.slice(0, -suffix.length) : base).replaceAll('-', '_');
}

/**
 * Files to load for `names`, each once, every dependency before its user. depmod lists a module's
 * dependencies so that the last must be loaded first.
 */
export function loadOrder(dep: Map<string, ModuleInfo>, names: string[]): { files: string[]; unknown: string[] } {
  const files: string[] = [];
  const seen = new Set<string>();
  const unknown: string[] = [];
  const add = (file: string) => {
    if (!seen.has(file)) {
      seen.add(file);
      files.push(file);
    }
  };
  for (const raw of names) {
    const info = dep.get(raw.replaceAll('-', '_'));
    if (!info) {
      unknown.push(raw);
      continue;
    }
    for (const d of [...info.deps].reverse()) add(d);
    add(info.file);
  }
  return { files, unknown };
}

export function readModuleList(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.split('#', 1)[0].trim())
    .filter(Boolean);
}

export interface LoadResult {
  loaded: string[];
  /** Milliseconds each finit_module took, by module: module init runs inside the call. */
  ms: Record<string, number>;
  alreadyLoaded: string[];
  unknown: string[];
  failed: { file: string; error: string }[];
}

/** finit_module for each file; EEXIST (built in or loaded already) is not an error. */
/** `params`: module parameters by module name (as moduleName gives it), e.g. CreateSandbox's kernel_modules. */
export function loadModules(
  libc: Pick<Libc, 'finitModule'>,
  modulesDir: string,
  names: string[],
  params: Record<string, string> = {},
  /** Module files already handled (an earlier round of the same boot step): not loaded again. */
  done: Set<string> = new Set(),
): LoadResult {
  const result: LoadResult = { loaded: [], ms: {}, alreadyLoaded: [], unknown: [], failed: [] };
  let depText: string;
  try {
    depText = fs.readFileSync(path.join(modulesDir, 'modules.dep'), 'utf8');
  } catch (err) {
    result.failed.push({ file: path.join(modulesDir, 'modules.dep'), error: (err as Error).message });
    return result;
  }
  const { files, unknown } = loadOrder(parseModulesDep(depText), names);
  result.unknown = unknown;
  for (const file of files) {
    if (done.has(file)) continue;
    done.add(file);
    let fd = -1;
    try {
      fd = fs.openSync(path.join(modulesDir, file), 'r');
      const t0 = uptimeMs();
      libc.finitModule(fd, params[moduleName(file)] ?? '', 0);
      result.ms[moduleName(file)] = Math.round(uptimeMs() - t0);
      result.loaded.push(moduleName(file));
    } catch (err) {
      if ((err as { code?: string }).code === 'EEXIST') result.alreadyLoaded.push(moduleName(file));
      else result.failed.push({ file, error: (err as Error).message });
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }
  return result;
}

/** One `alias PATTERN module` line of modules.alias: the pattern is an fnmatch glob over a modalias. */
export interface ModuleAlias {
  pattern: RegExp;
  module: string;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${glob
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function parseModulesAlias(text: string): ModuleAlias[] {
  const out: ModuleAlias[] = [];
  for (const line of text.split('\n')) {
    const [kw, pattern, module] = splitWords(line);
    if (kw === 'alias' && pattern && module) out.push({ pattern: globToRegExp(pattern), module: module.replaceAll('-', '_') });
  }
  return out;
}

/** The modules whose aliases match any of `modaliases`, each once. */
export function modulesForDevices(aliases: ModuleAlias[], modaliases: string[]): string[] {
  const found = new Set<string>();
  for (const m of modaliases) for (const a of aliases) if (a.pattern.test(m)) found.add(a.module);
  return [...found];
}

/** Every device's modalias on the buses whose drivers the image carries as modules. */
export function deviceModaliases(sysfs = '/sys', buses = ['pci', 'virtio']): string[] {
  const out: string[] = [];
  for (const bus of buses) {
    const dir = path.join(sysfs, 'bus', bus, 'devices');
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      try {
        out.push(fs.readFileSync(path.join(dir, n, 'modalias'), 'utf8').trim());
      } catch {
        // A device without a modalias file has no driver to find.
      }
    }
  }
  return out;
}

/**
 * Waits until the nvdimm buses' devices are registered and probed: libnvdimm registers regions and
 * namespaces asynchronously, after nfit's finit_module has returned, and reading an nd bus's
 * wait_probe is its documented way (ndctl's) to wait for that.
 */
function settleNdBuses(sysfs: string): void {
  const dir = path.join(sysfs, 'bus', 'nd', 'devices');
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return; // no libnvdimm: no nvdimm
  }
  for (const n of names.filter((x) => /^ndbus\d+$/.test(x))) {
    try {
      fs.readFileSync(path.join(dir, n, 'wait_probe'));
    } catch {
      // An older kernel without it: the namespaces found are those registered by now.
    }
  }
}

/**
 * Coldplug, what udev does at boot and kata's guests have no udev for: loads the driver of every
 * device present (a virtio-net NIC kata adds before boot, a virtio-blk disk, an nvdimm), found
 * through the image's modules.alias. Each round's drivers create the next round's devices: virtio
 * devices appear once virtio_pci has probed; an nvdimm is the ACPI NFIT device (nfit), whose nd bus
 * then holds the regions and namespaces that nd_pmem turns into /dev/pmemN. Each module file is
 * tried once per boot (`done`); a built-in driver is EEXIST and skipped.
 */
export function coldplugModules(
  libc: Pick<Libc, 'finitModule'>,
  modulesDir: string,
  sysfs = '/sys',
  /** Module files the boot already loaded (its module list): not tried again. */
  done: Set<string> = new Set(),
): LoadResult & { devices: number } {
  const total: LoadResult & { devices: number } = { loaded: [], ms: {}, alreadyLoaded: [], unknown: [], failed: [], devices: 0 };
  let aliases: ModuleAlias[];
  try {
    aliases = parseModulesAlias(fs.readFileSync(path.join(modulesDir, 'modules.alias'), 'utf8'));
  } catch (err) {
    total.failed.push({ file: path.join(modulesDir, 'modules.alias'), error: (err as Error).message });
    return total;
  }
  const round = (buses: string[]) => {
    const found = deviceModaliases(sysfs, buses);
    const r = loadModules(libc, modulesDir, modulesForDevices(aliases, found), {}, done);
    total.loaded.push(...r.loaded);
    Object.assign(total.ms, r.ms);
    total.alreadyLoaded.push(...r.alreadyLoaded);
    total.unknown.push(...r.unknown);
    total.failed.push(...r.failed);
    total.devices += found.length;
  };
  round(['pci']);
  round(['virtio']);
  // Only the NFIT's alias (acpi*:ACPI0012:*) is in the image: the other ACPI devices match nothing.
  round(['acpi']);
  settleNdBuses(sysfs);
  round(['nd']);
  return total;
}
