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
export function loadModules(libc: Pick<Libc, 'finitModule'>, modulesDir: string, names: string[], params: Record<string, string> = {}): LoadResult {
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
