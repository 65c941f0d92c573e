// Range checks of OCI resources before any cgroup file is written, so a value the kernel would
// refuse (blkio weight 5 → ERANGE, a quota under 1 ms → EINVAL) fails the RPC as INVALID_ARGUMENT
// naming the field and its range, the same on the v1 and v2 drivers, and nothing is half applied.
// 0 is "not set" throughout: kata's protos have no field presence.
import type { LinuxResources } from '../../../protos/gen/oci_pb.js';
import { invalidArgument } from '../errors.js';

/** The kernel's limits (kernel/sched/core.c, kernel/cgroup/pids.c, block/blk-cgroup). */
export const RANGES = {
  blkioWeight: [10n, 1000n],
  cpuShares: [2n, 262144n],
  /** cfs_period_us: 1 ms to 1 s. */
  cpuPeriod: [1000n, 1000000n],
  /** cfs_quota_us: at least 1 ms; at most the kernel's MAX_BW (2^44 - 1 µs). */
  cpuQuota: [1000n, (1n << 44n) - 1n],
  /** rt_period_us must be positive and fit in nanoseconds. */
  rtPeriod: [1n, 18446744073709551n],
  /** pids.max: PID_MAX_LIMIT on 64-bit kernels. */
  pidsLimit: [1n, 4194304n],
} as const;

function inRange(field: string, v: bigint | number, [lo, hi]: readonly [bigint, bigint], note = ''): void {
  const b = BigInt(v);
  if (b < lo || b > hi) throw invalidArgument(`${field} ${b} is out of range: valid values are ${lo}–${hi}${note}`);
}

/** "0-3,5": the cpuset list syntax, each range ascending. */
function checkList(field: string, s: string): void {
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m || (m[2] !== undefined && Number(m[2]) < Number(m[1]))) {
      throw invalidArgument(`${field} "${s}" is not a list of numbers and ascending ranges such as "0-3,5"`);
    }
  }
}

/** Throws INVALID_ARGUMENT for the first value no cgroup file would take. */
export function validateResources(res: LinuxResources): void {
  const mem = res.Memory;
  if (mem) {
    if (mem.Swap > 0n && mem.Limit > 0n && mem.Swap < mem.Limit) {
      throw invalidArgument(`Memory.Swap ${mem.Swap} (memory+swap) is below Memory.Limit ${mem.Limit}: it must be at least the limit, or -1`);
    }
  }
  const cpu = res.CPU;
  if (cpu) {
    if (cpu.Shares !== 0n) inRange('CPU.Shares', cpu.Shares, RANGES.cpuShares);
    if (cpu.Period !== 0n) inRange('CPU.Period', cpu.Period, RANGES.cpuPeriod, ' µs');
    if (cpu.Quota > 0n) inRange('CPU.Quota', cpu.Quota, RANGES.cpuQuota, ' µs, or -1 for no limit');
    if (cpu.RealtimePeriod !== 0n) inRange('CPU.RealtimePeriod', cpu.RealtimePeriod, RANGES.rtPeriod, ' µs');
    if (cpu.RealtimeRuntime < -1n)
      throw invalidArgument(`CPU.RealtimeRuntime ${cpu.RealtimeRuntime} is out of range: valid values are -1 (no limit) or a runtime in µs`);
    if (cpu.RealtimeRuntime > 0n && cpu.RealtimePeriod > 0n && cpu.RealtimeRuntime > cpu.RealtimePeriod) {
      throw invalidArgument(`CPU.RealtimeRuntime ${cpu.RealtimeRuntime} exceeds CPU.RealtimePeriod ${cpu.RealtimePeriod}`);
    }
    if (cpu.Cpus) checkList('CPU.Cpus', cpu.Cpus);
    if (cpu.Mems) checkList('CPU.Mems', cpu.Mems);
  }
  if (res.Pids && res.Pids.Limit > 0n) inRange('Pids.Limit', res.Pids.Limit, RANGES.pidsLimit, ', or -1 for no limit');
  const bio = res.BlockIO;
  if (bio) {
    if (bio.Weight) inRange('BlockIO.Weight', bio.Weight, RANGES.blkioWeight);
    if (bio.LeafWeight) inRange('BlockIO.LeafWeight', bio.LeafWeight, RANGES.blkioWeight);
    for (const d of bio.WeightDevice) {
      const dev = `${d.Major}:${d.Minor}`;
      if (d.Weight) inRange(`BlockIO.WeightDevice[${dev}].Weight`, d.Weight, RANGES.blkioWeight);
      if (d.LeafWeight) inRange(`BlockIO.WeightDevice[${dev}].LeafWeight`, d.LeafWeight, RANGES.blkioWeight);
    }
  }
  for (const h of res.HugepageLimits) {
    // It becomes part of a file name (hugetlb.<size>.limit_in_bytes): only the kernel's spelling passes.
    if (!/^[1-9]\d*[KMG]B$/.test(h.Pagesize)) throw invalidArgument(`HugepageLimits page size "${h.Pagesize}" is not a size such as "2MB" or "1GB"`);
  }
  for (const d of res.Devices) {
    if (!['', 'a', 'b', 'c'].includes(d.Type)) throw invalidArgument(`Devices type "${d.Type}" is not one of a, b, c`);
    if (!/^[rwm]*$/.test(d.Access)) throw invalidArgument(`Devices access "${d.Access}" is not a combination of r, w and m`);
  }
  for (const p of res.Network?.Priorities ?? []) {
    if (!/^[^\s/]{1,15}$/.test(p.Name)) throw invalidArgument(`Network.Priorities interface name "${p.Name}" is not an interface name`);
  }
}
