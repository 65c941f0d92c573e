// Guest swap (kata 3.x, `enable_guest_swap`): AddSwap names a virtio-blk disk the host hot-plugged
// and formatted with mkswap, by its PCI path as slot numbers ([2, 1] = "02/01"); AddSwapPath names
// a swap file already in the guest. Either is handed to swapon(2) as it is: the agent never formats.
import path from 'node:path';
import type { HotplugDevices } from '../device/hotplug.js';
import { formatPciPath } from '../device/pci-path.js';
import { invalidArgument, Unimplemented } from '../errors.js';
import type { Libc } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';
import type { AgentHandlers } from '../rpc/service.js';

export interface SwapDeps {
  libc: Pick<Libc, 'swapon'>;
  log: Logger;
  /** Absent off the guest: the host's swap is not the agent's to change. */
  devices?: HotplugDevices;
}

/** [2, 1] → "02/01"; each slot 0–31. */
export function pciPathOfSlots(slots: readonly number[]): string {
  if (slots.length === 0) throw invalidArgument('AddSwap: PCIPath is empty');
  const bad = slots.find((s) => !Number.isInteger(s) || s < 0 || s > 0x1f);
  if (bad !== undefined) throw invalidArgument(`AddSwap: PCIPath [${slots.join(', ')}]: slot ${bad} is not 0-31`);
  return formatPciPath({ rootComplex: '00', slots: slots.map((slot) => ({ slot, fn: 0 })) });
}

export function swapHandlers(deps: SwapDeps): AgentHandlers {
  const offGuest = (what: string) => new Unimplemented(`${what}: swap is only added on the guest (this agent runs with another state root)`);
  return {
    async addSwap(req, ctx) {
      const pciPath = pciPathOfSlots(req.PCIPath);
      if (!deps.devices) throw offGuest(`AddSwap ${pciPath}`);
      const dev = await deps.devices.block('blk', pciPath, ctx.signal);
      deps.libc.swapon(dev.path, 0);
      deps.log.info({ pci_path: pciPath, device: dev.path }, 'swap added');
      return {};
    },
    addSwapPath(req) {
      const p = req.path;
      // A swap file's path: absolute, normalized, and not ending in "/" (a directory's).
      if (!path.isAbsolute(p) || path.normalize(p) !== p || p.endsWith('/') || p.includes('\0')) {
        throw invalidArgument(`AddSwapPath: path "${p}" is not a normalized absolute path to a file`);
      }
      if (!deps.devices) throw offGuest(`AddSwapPath ${p}`);
      deps.libc.swapon(p, 0);
      deps.log.info({ path: p }, 'swap added');
      return {};
    },
  };
}
