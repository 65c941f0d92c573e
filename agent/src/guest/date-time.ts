// SetGuestDateTime: a VM restored from a template or snapshot wakes with the clock of the moment it
// was saved, so the host sends its own time and the guest clock jumps to it (settimeofday).
import type { SetGuestDateTimeRequest } from '../../../protos/gen/agent_pb.js';
import { failedPrecondition, invalidArgument } from '../errors.js';
import type { Libc } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';
import type { AgentHandlers } from '../rpc/service.js';

export interface GuestDateTimeDeps {
  libc: Libc;
  log: Logger;
  /** False off the guest (a test or development run on some host): that host's clock is never set. */
  guest: boolean;
}

export function setGuestDateTime(deps: GuestDateTimeDeps, req: SetGuestDateTimeRequest): void {
  // The kernel refuses these too (EINVAL), but naming the field tells the host which value was wrong.
  if (req.Usec < 0n || req.Usec >= 1_000_000n) throw invalidArgument(`SetGuestDateTime: usec ${req.Usec} is not in [0, 999999]`);
  if (req.Sec < 0n) throw invalidArgument(`SetGuestDateTime: sec ${req.Sec} is before 1970`);
  // Off the guest this would set some host's clock: refused, not faked as done.
  if (!deps.guest) throw failedPrecondition("SetGuestDateTime: not the guest's agent (state root is not the default), the clock is not set");
  deps.libc.settimeofday(req.Sec, req.Usec);
  deps.log.info({ sec: String(req.Sec), usec: String(req.Usec) }, 'SetGuestDateTime');
}

export function guestDateTimeHandlers(deps: GuestDateTimeDeps): AgentHandlers {
  return {
    setGuestDateTime(req) {
      setGuestDateTime(deps, req);
      return {};
    },
  };
}
