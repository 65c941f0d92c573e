// ReseedRandomDev: VMs cloned from one template share the kernel RNG state of the moment it was
// saved, so each would produce the same "random" numbers; the host sends fresh bytes to mix in.
// One RNDADDENTROPY both mixes the bytes into the input pool and credits them; kata writes the bytes
// and credits them in two steps, then forces a CRNG reseed, which is done here too.
// The credit is kata's: one bit per byte given (its RNDADDTOENTCNT counts bits, and it passes the
// byte length), a conservative figure for bytes whose quality the guest cannot judge.
import type { ReseedRandomDevRequest } from '../../../protos/gen/agent_pb.js';
import { failedPrecondition } from '../errors.js';
import { SyscallError } from '../linux/errno.js';
import { AT_FDCWD, O_CLOEXEC, O_RDWR, RNDADDENTROPY, RNDRESEEDCRNG, type Libc } from '../linux/libc.js';
import type { Logger } from '../log/logger.js';
import type { AgentHandlers } from '../rpc/service.js';

export const RANDOM_DEVICE = '/dev/random';
const ENODATA = 61;

export interface RandomDeps {
  libc: Libc;
  log: Logger;
  /** False off the guest (a test or development run on some host): that host's RNG is never touched. */
  guest: boolean;
}

/** struct rand_pool_info for `data`: entropy_count (bits), buf_size (bytes), then the bytes (u32 words, zero-padded). */
export function randPoolInfo(data: Uint8Array, entropyBits: number): Buffer {
  const buf = Buffer.alloc(8 + Math.ceil(data.length / 4) * 4);
  buf.writeInt32LE(entropyBits, 0);
  buf.writeInt32LE(data.length, 4);
  buf.set(data, 8);
  return buf;
}

export function reseedRandomDev(deps: RandomDeps, req: ReseedRandomDevRequest): void {
  // Nothing to mix in: kata would still force a reseed from what the pool already has, which adds
  // nothing a template clone does not share, so no call is made at all.
  if (req.data.length === 0) return;
  // Off the guest this would feed some host's RNG: refused, not faked as done.
  if (!deps.guest) throw failedPrecondition("ReseedRandomDev: not the guest's agent (state root is not the default), the RNG is not reseeded");
  const { libc } = deps;
  const fd = libc.openat(AT_FDCWD, RANDOM_DEVICE, O_RDWR | O_CLOEXEC, 0);
  try {
    libc.ioctlBuf(fd, RNDADDENTROPY, randPoolInfo(req.data, req.data.length));
    try {
      libc.ioctlInt(fd, RNDRESEEDCRNG, 0);
    } catch (err) {
      // Linux 5.18+ refuses a reseed before the CRNG is first seeded; the credit just given counts
      // towards that seeding, which then takes the new bytes in anyway.
      if (!(err instanceof SyscallError && err.errno === ENODATA)) throw err;
    }
  } finally {
    libc.close(fd);
  }
  deps.log.info({ bytes: req.data.length }, 'ReseedRandomDev');
}

export function randomHandlers(deps: RandomDeps): AgentHandlers {
  return {
    reseedRandomDev(req) {
      reseedRandomDev(deps, req);
      return {};
    },
  };
}
