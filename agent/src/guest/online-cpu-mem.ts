// OnlineCPUMem: after the host hot-adds vCPUs or memory (QMP device_add), the guest kernel shows them
// offline in sysfs until someone writes 1 to their `online` file; kata guests run no udev to do it.
// The two generations count differently (both facts from their agents and runtimes):
//  - kata 1.x sends the number of vCPUs it *added*, and the agent onlines that many offline CPUs;
//    `wait` false answers at once and onlines in the background.
//  - kata 3.x sends the vCPU count the sandbox should *have*: done once that many are online; the
//    call always waits.
// A CPU appears in sysfs a little after device_add returns, so both retry until the hotplug timeout.
import fs from 'node:fs';
import path from 'node:path';
import type { OnlineCPUMemRequest } from '../../../protos/gen/agent_pb.js';
import type { Cgroup } from '../cgroups/cgroup.js';
import type { Logger } from '../log/logger.js';
import type { AgentHandlers } from '../rpc/service.js';
import { DeadlineExceeded, invalidArgument } from '../errors.js';

export interface OnlineCpuMemDeps {
  /** Root of sysfs; tests point it at a fake tree. None: not the guest's agent, nothing is onlined. */
  sysfs: string | undefined;
  log: Logger;
  /** How long to keep looking for hot-added CPUs (agent.hotplug_timeout). */
  hotplugTimeoutMs: number;
  /** The pod's containers' groups and their spec's cpuset, refreshed once CPUs were added. */
  containerCgroups?: () => { id: string; cgroup: Cgroup; cpus: string | undefined }[];
  /** Pause between looks (default 50 ms, kata 3.x's); tests hot-add a CPU in it. */
  sleep?: (ms: number) => Promise<void>;
}

function numbered(dir: string, prefix: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    throw new Error(`OnlineCPUMem: ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return names.filter((x) => isNumbered(x, prefix)).sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)));
}

/**
 * Online CPUs, counted per cpuN (the same set as cpu/online: a CPU that is not present has no
 * directory, and one without an online file, often cpu0, cannot go offline).
 */
export function countOnlineCpus(cpuDir: string): number {
  let n = 0;
  for (const name of numbered(cpuDir, 'cpu')) {
    try {
      if (fs.readFileSync(path.join(cpuDir, name, 'online'), 'utf8').trim() === '1') n++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') n++;
    }
  }
  return n;
}

function isNumbered(name: string, prefix: string): boolean {
  if (!name.startsWith(prefix) || name.length === prefix.length) return false;
  for (let i = prefix.length; i < name.length; i++) if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

/** Writes "1" to up to `limit` (Infinity = all) offline `online` files below dir/<prefix>N; returns how many. */
function onlineOffline(dir: string, prefix: string, limit: number, log: Logger): number {
  let n = 0;
  for (const name of numbered(dir, prefix)) {
    if (n >= limit) break;
    if (onlineOne(path.join(dir, name), log)) n++;
  }
  return n;
}

/** One CPU or memory block: `online` (0/1), or memory's `state` (offline/online) when it has no `online`. */
function onlineOne(dir: string, log: Logger): boolean {
  const online = path.join(dir, 'online');
  const state = path.join(dir, 'state');
  try {
    if (fs.existsSync(online)) {
      if (fs.readFileSync(online, 'utf8').trim() !== '0') return false;
      fs.writeFileSync(online, '1');
      return true;
    }
    // cpu0 often has no online file at all: it cannot go offline.
    if (!fs.existsSync(state) || fs.readFileSync(state, 'utf8').trim() !== 'offline') return false;
    fs.writeFileSync(state, 'online');
    return true;
  } catch (err) {
    log.warn({ path: dir, err: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, 'could not online');
    return false;
  }
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const RETRY_MS = 50;
type Generation = 'kata-1.x' | 'kata-3.x';

/** Onlines CPUs until the request is met (see the header for the two counts); returns how many it onlined. */
async function onlineCpus(deps: OnlineCpuMemDeps, req: OnlineCPUMemRequest, generation: Generation, cpuDir: string): Promise<number> {
  const sleep = deps.sleep ?? realSleep;
  const deadline = Date.now() + deps.hotplugTimeoutMs;
  let added = 0;
  for (;;) {
    if (generation === 'kata-3.x') {
      const have = countOnlineCpus(cpuDir);
      if (have >= req.nbCpus) return added;
      added += onlineOffline(cpuDir, 'cpu', req.nbCpus - have, deps.log);
      if (countOnlineCpus(cpuDir) >= req.nbCpus) return added;
    } else {
      added += onlineOffline(cpuDir, 'cpu', req.nbCpus - added, deps.log);
      if (added >= req.nbCpus) return added;
    }
    if (Date.now() >= deadline) {
      const have = generation === 'kata-3.x' ? `${countOnlineCpus(cpuDir)} online` : `${added} onlined`;
      throw new DeadlineExceeded(`OnlineCPUMem: ${have}, ${req.nbCpus} wanted, after ${deps.hotplugTimeoutMs} ms (${cpuDir})`);
    }
    await sleep(RETRY_MS);
  }
}

/** As kata does after onlining CPUs: the containers' cpuset groups (and their parents) take them in. */
function refreshCpusets(deps: OnlineCpuMemDeps, cpuDir: string): void {
  const groups = deps.containerCgroups?.() ?? [];
  if (groups.length === 0) return;
  const guest = fs.readFileSync(path.join(cpuDir, 'online'), 'utf8').trim();
  for (const g of groups) {
    try {
      g.cgroup.refreshCpuset(guest, g.cpus);
    } catch (err) {
      throw new Error(`OnlineCPUMem: cpuset of container ${g.id} (${guest}): ${(err as Error).message}`, { cause: err });
    }
  }
}

export async function onlineCpuMem(deps: OnlineCpuMemDeps, req: OnlineCPUMemRequest, generation: Generation): Promise<void> {
  if (deps.sysfs === undefined) {
    deps.log.debug({ nb_cpus: req.nbCpus, cpu_only: req.cpuOnly }, "OnlineCPUMem: not the guest's agent (state root), sysfs left alone");
    return;
  }
  const cpuDir = path.join(deps.sysfs, 'devices/system/cpu');
  const memDir = path.join(deps.sysfs, 'devices/system/memory');
  const cpus = req.nbCpus > 0 ? await onlineCpus(deps, req, generation, cpuDir) : 0;
  if (req.nbCpus > 0) refreshCpusets(deps, cpuDir);
  // Memory has no count: every offline block is onlined. A guest without memory hotplug has no such dir.
  const blocks = !req.cpuOnly && fs.existsSync(memDir) ? onlineOffline(memDir, 'memory', Infinity, deps.log) : 0;
  if (cpus + blocks > 0) deps.log.info({ cpus_onlined: cpus, memory_blocks_onlined: blocks }, 'OnlineCPUMem');
}

export function onlineCpuMemHandlers(deps: OnlineCpuMemDeps): AgentHandlers {
  return {
    async onlineCPUMem(req, ctx) {
      const generation = ctx.dialect.name;
      if (generation === 'kata-1.x') {
        if (req.nbCpus === 0 && req.cpuOnly) throw invalidArgument('OnlineCPUMem: nb_cpus must be greater than 0 when cpu_only is set');
        if (!req.wait) {
          void onlineCpuMem(deps, req, generation).catch((err: Error) => deps.log.error({ err: err.message }, 'OnlineCPUMem in the background'));
          return {};
        }
      }
      await onlineCpuMem(deps, req, generation);
      return {};
    },
  };
}
