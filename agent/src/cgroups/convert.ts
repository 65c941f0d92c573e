// Unit conversions between OCI's (cgroup v1 shaped) resource values and the files that hold them.
// OCI carries v1 units; cgroup v2 uses other ranges, so the v2 driver converts with the same linear
// maps the OCI runtimes document for their "unified" translation.
import type { LinuxDeviceCgroup } from '../../../protos/gen/oci_pb.js';

/** v1 cpu.shares [2, 262144] → v2 cpu.weight [1, 10000]. */
export function sharesToWeight(shares: bigint): bigint {
  const s = shares < 2n ? 2n : shares > 262144n ? 262144n : shares;
  return 1n + ((s - 2n) * 9999n) / 262142n;
}

/** v1 blkio.weight [10, 1000] → v2 io.weight [1, 10000]. */
export function blkioWeightToIoWeight(weight: number): number {
  const w = Math.min(Math.max(weight, 10), 1000);
  return 1 + Math.floor(((w - 10) * 9999) / 990);
}

/**
 * kata's protos have no field presence: 0 is "not set" for every limit (as in kata's own conversion),
 * and a negative value is "no limit".
 */
export function limitValue(v: bigint, unlimited: string): string | undefined {
  if (v === 0n) return undefined;
  return v < 0n ? unlimited : v.toString();
}

export function deviceNumber(major: bigint, minor: bigint): string {
  const part = (n: bigint) => (n < 0n ? '*' : n.toString());
  return `${part(major)}:${part(minor)}`;
}

/** A device rule in the devices.allow / devices.deny syntax: "c 1:3 rwm", or "a" for every device. */
export function deviceRule(d: LinuxDeviceCgroup): string {
  const type = d.Type || 'a';
  if (type === 'a') return 'a';
  return `${type} ${deviceNumber(d.Major, d.Minor)} ${d.Access || 'rwm'}`;
}
