import fs from 'node:fs';
import type { AgentHandlers } from '../rpc/service.js';
import { agentVersion } from '../version.js';

export interface GuestDetailsDeps {
  /** Root of sysfs; tests point it at a fixture tree. */
  sysfs: string;
  isInit: boolean;
  storageHandlers: () => string[];
  deviceHandlers: () => string[];
  /** Asked at each call: the first one probes libseccomp. */
  supportsSeccomp: () => boolean;
}

function readHex(file: string): bigint | undefined {
  try {
    return BigInt('0x' + fs.readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
}

export function guestDetailsHandlers(deps: GuestDetailsDeps): AgentHandlers {
  return {
    getGuestDetails(req) {
      const memDir = `${deps.sysfs}/devices/system/memory`;
      const blockSize = req.memBlockSize ? readHex(`${memDir}/block_size_bytes`) : undefined;
      const probe = req.memHotplugProbe ? fs.existsSync(`${memDir}/probe`) : false;
      return {
        memBlockSizeBytes: blockSize ?? 0n,
        supportMemHotplugProbe: probe,
        agentDetails: {
          version: agentVersion,
          initDaemon: deps.isInit,
          deviceHandlers: deps.deviceHandlers(),
          storageHandlers: deps.storageHandlers(),
          supportsSeccomp: deps.supportsSeccomp(),
          extraFeatures: [],
        },
      };
    },
  };
}
