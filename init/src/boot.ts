// PID-1 duties, in the order the rest depends on: filesystems first (config needs /proc/cmdline),
// then, once the agent's config is known, cgroups, modules, network, hostname, reaping and signals.
import fs from 'node:fs';
import type { AgentConfig } from '../../agent/src/config/config.js';
import { PR_SET_CHILD_SUBREAPER, type Libc } from '../../agent/src/linux/libc.js';
import type { Logger } from '../../agent/src/log/logger.js';
import { OrphanReaper } from '../../agent/src/process/reaper.js';
import { mountCgroups } from './cgroups.js';
import { coldplugModules, defaultModulesDir, loadModules, readModuleList } from './modules.js';
import { linkPtmx, mountAll } from './mounts.js';
import { setInterfaceUp } from './network.js';
import { uptimeMs } from '../../agent/src/log/uptime.js';

export const guestPath = '/bin:/sbin:/usr/bin:/usr/sbin';

/** Before the config can be read. Throws: without these nothing else works. */
export function bootFilesystems(libc: Libc): void {
  mountAll(libc);
  linkPtmx();
  process.env.PATH = guestPath;
  try {
    libc.setsid();
  } catch {
    // EPERM: already a session leader (the kernel may start init as one).
  }
}

export interface BootPaths {
  moduleList: string;
  modulesDir: string;
  hostnameFile: string;
  /** Where the devices to coldplug are listed. */
  sysfs: string;
}

export const defaultBootPaths = (): BootPaths => ({
  moduleList: '/etc/kata-agent/modules',
  modulesDir: defaultModulesDir(),
  hostnameFile: '/etc/hostname',
  sysfs: '/sys',
});

/**
 * The rest of the boot. Each step that fails is logged and the boot goes on: a guest without, say,
 * vsock can still serve over virtio-serial, and an agent that answers is easier to debug than a
 * VM that stopped.
 */
export async function bootServices(libc: Libc, config: AgentConfig, log: Logger, paths = defaultBootPaths()): Promise<void> {
  const step = async (name: string, fn: () => unknown) => {
    const t0 = uptimeMs();
    try {
      const r = await fn();
      log.debug({ step: name, result: r, ms: Math.round(uptimeMs() - t0), uptime_ms: Math.round(uptimeMs()) }, 'boot step done');
    } catch (err) {
      log.error({ step: name, err: (err as Error).message }, 'boot step failed');
    }
  };
  // The module files already tried this boot: coldplug skips what the module list loaded (a retried
  // finit_module still reads and checks the whole file before it says EEXIST).
  const triedModules = new Set<string>();
  await step('modules', () => {
    let names: string[];
    try {
      names = readModuleList(fs.readFileSync(paths.moduleList, 'utf8'));
    } catch {
      return 'no module list';
    }
    const r = loadModules(libc, paths.modulesDir, names, {}, triedModules);
    if (r.unknown.length) log.warn({ modules: r.unknown, dir: paths.modulesDir }, 'modules not in modules.dep');
    for (const f of r.failed) log.warn(f, 'module load failed');
    return r;
  });
  await step('coldplug', () => {
    const r = coldplugModules(libc, paths.modulesDir, paths.sysfs, triedModules);
    for (const f of r.failed) log.warn(f, 'module load failed');
    return { devices: r.devices, loaded: r.loaded, ms: r.ms };
  });
  await step('cgroups', () => mountCgroups(libc, config.unifiedCgroupHierarchy));
  await step('loopback', () => setInterfaceUp(libc, 'lo'));
  await step('hostname', () => {
    let name: string;
    try {
      name = fs.readFileSync(paths.hostnameFile, 'utf8').trim();
    } catch {
      return 'no hostname file';
    }
    if (name) libc.sethostname(name);
    return name;
  });
  await step('subreaper', () => libc.prctl(PR_SET_CHILD_SUBREAPER, 1));
  await step('reaper', () => {
    const reaper = new OrphanReaper({ libc, onReaped: (c) => log.debug(c, 'reaped orphan') });
    // Nothing has started a process yet (the debug console comes next), so no orphan can be waiting.
    reaper.start(false);
  });
  if (config.debugConsole || config.debugConsoleVport) {
    // Only when asked for: it loads node:child_process, ~50 ms of a boot under TCG.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the debug console module loads only when asked for
    const consoles = require('./debug-console.js') as typeof import('./debug-console.js');
    if (config.debugConsole) await step('debug console', () => consoles.startConsoleShell(log));
    if (config.debugConsoleVport) await step('debug console vport', () => consoles.startVportConsole(libc, log, config.debugConsoleVport));
  }
}
