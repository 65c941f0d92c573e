// MemHotplugByProbe: on guests whose firmware announces no hot-added memory (no ACPI memory hotplug),
// the host tells the agent where the new memory starts, and writing each physical address to sysfs'
// memory/probe makes the kernel add a memory block there. Onlining it is OnlineCPUMem's job.
import fs from 'node:fs';
import path from 'node:path';
import type { MemHotplugByProbeRequest } from '../../../protos/gen/agent_pb.js';
import { failedPrecondition } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { AgentHandlers } from '../rpc/service.js';

export interface MemProbeDeps {
  /** Root of sysfs; tests point it at a temp dir. None: not the guest's agent, nothing is probed. */
  sysfs: string | undefined;
  log: Logger;
}

export function memHotplugByProbe(deps: MemProbeDeps, req: MemHotplugByProbeRequest): void {
  const addrs = req.memHotplugProbeAddr;
  // Off the guest this would probe some host's memory: refused, not faked as done.
  if (deps.sysfs === undefined) throw failedPrecondition("MemHotplugByProbe: not the guest's agent (state root is not the default), no memory is probed");
  const probe = path.join(deps.sysfs, 'devices/system/memory/probe');
  // A kernel without CONFIG_ARCH_MEMORY_PROBE has no such file: writing would create a plain file
  // in a fake tree and fail with EACCES in sysfs, neither of which tells the host why.
  if (!fs.existsSync(probe)) throw failedPrecondition(`MemHotplugByProbe: ${probe} does not exist (kernel without memory probe support)`);
  for (const addr of addrs) {
    // One write per address: the kernel parses a single number per write (base from its 0x prefix).
    fs.writeFileSync(probe, `0x${addr.toString(16)}`);
  }
  if (addrs.length > 0) deps.log.info({ addresses: addrs.map((a) => `0x${a.toString(16)}`) }, 'MemHotplugByProbe');
}

export function memProbeHandlers(deps: MemProbeDeps): AgentHandlers {
  return {
    memHotplugByProbe(req) {
      memHotplugByProbe(deps, req);
      return {};
    },
  };
}
