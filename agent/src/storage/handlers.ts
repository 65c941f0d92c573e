import type { AgentHandlers } from '../rpc/service.js';
import type { StorageRegistry } from './storages.js';
import { volumeStats } from './volume-stats.js';

/** Storage RPCs that are not part of a sandbox or container's creation. */
export function storageHandlers(storages: StorageRegistry): AgentHandlers {
  return {
    updateEphemeralMounts(req) {
      storages.updateEphemeral(req.storages);
      return {};
    },
    getVolumeStats: (req) => volumeStats(req.volumeGuestPath),
  };
}
