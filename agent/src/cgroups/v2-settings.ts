// OCI LinuxResources (v1 units) → cgroup v2 file writes.
import type { LinuxResources } from '../../../protos/gen/oci_pb.js';
import { invalidArgument } from '../errors.js';
import { blkioWeightToIoWeight, deviceNumber, limitValue, sharesToWeight } from './convert.js';
import { validateResources } from './validate.js';

export interface V2Write {
  file: string;
  value: string;
}

export interface V2Group {
  exists(file: string): boolean;
  read(file: string): string | undefined;
}

export function v2Writes(res: LinuxResources, group: V2Group, warn: (msg: string) => void): V2Write[] {
  validateResources(res);
  const out: V2Write[] = [];
  const w = (file: string, value: string | undefined) => {
    if (value !== undefined) out.push({ file, value });
  };

  const mem = res.Memory;
  if (mem) {
    w('memory.max', limitValue(mem.Limit, 'max'));
    w('memory.low', limitValue(mem.Reservation, 'max'));
    if (mem.Swap !== 0n) {
      const value = swapMax(mem.Limit, mem.Swap);
      // No swap support in the kernel means no memory.swap.max; there is nothing to limit then.
      if (group.exists('memory.max') && !group.exists('memory.swap.max'))
        warn('swap limit not applied: the kernel has no swap accounting (no memory.swap.max)');
      else w('memory.swap.max', value);
    }
    if (mem.Kernel !== 0n || mem.KernelTCP !== 0n) warn('kernel memory limits do not exist in cgroup v2 and are not applied');
    if (mem.Swappiness > 0n && mem.Swappiness <= 100n) warn('memory swappiness does not exist in cgroup v2 and is not applied');
    if (mem.DisableOOMKiller) warn('disabling the OOM killer is not possible in cgroup v2 and is not applied');
  }

  const cpu = res.CPU;
  if (cpu) {
    if (cpu.Shares !== 0n) w('cpu.weight', sharesToWeight(cpu.Shares).toString());
    if (cpu.Quota !== 0n || cpu.Period !== 0n) {
      // cpu.max holds both numbers: keep whichever one the update does not set.
      const [curQuota = 'max', curPeriod = '100000'] = (group.read('cpu.max') ?? '').split(/\s+/).filter(Boolean);
      const quota = cpu.Quota === 0n ? curQuota : cpu.Quota < 0n ? 'max' : cpu.Quota.toString();
      const period = cpu.Period === 0n ? curPeriod : cpu.Period.toString();
      w('cpu.max', `${quota} ${period}`);
    }
    if (cpu.RealtimeRuntime !== 0n || cpu.RealtimePeriod !== 0n) warn('realtime CPU limits do not exist in cgroup v2 and are not applied');
    if (cpu.Cpus) w('cpuset.cpus', cpu.Cpus);
    if (cpu.Mems) w('cpuset.mems', cpu.Mems);
  }

  if (res.Pids) w('pids.max', limitValue(res.Pids.Limit, 'max'));

  const bio = res.BlockIO;
  if (bio) {
    // BFQ takes v1 weights as they are; the generic io.weight needs the v2 range.
    const bfq = group.exists('io.bfq.weight');
    const weight = (v: number) => String(bfq ? v : blkioWeightToIoWeight(v));
    const weightFile = bfq ? 'io.bfq.weight' : 'io.weight';
    if (bio.Weight) w(weightFile, weight(bio.Weight));
    if (bio.LeafWeight) warn('blkio leaf weight does not exist in cgroup v2 and is not applied');
    for (const d of bio.WeightDevice) if (d.Weight) w(weightFile, `${deviceNumber(d.Major, d.Minor)} ${weight(d.Weight)}`);
    const throttles: Array<[typeof bio.ThrottleReadBpsDevice, string]> = [
      [bio.ThrottleReadBpsDevice, 'rbps'],
      [bio.ThrottleWriteBpsDevice, 'wbps'],
      [bio.ThrottleReadIOPSDevice, 'riops'],
      [bio.ThrottleWriteIOPSDevice, 'wiops'],
    ];
    for (const [list, key] of throttles) for (const d of list) w('io.max', `${deviceNumber(d.Major, d.Minor)} ${key}=${d.Rate}`);
  }

  for (const h of res.HugepageLimits) w(`hugetlb.${h.Pagesize}.max`, h.Limit.toString());

  // Devices are not files in v2: the driver attaches an eBPF filter (device-filter.ts).
  if (res.Network && (res.Network.ClassID || res.Network.Priorities.length > 0))
    warn('network classID/priorities do not exist in cgroup v2 and are not applied');
  return out;
}

/** OCI's Swap is memory+swap (v1 memsw); v2's memory.swap.max is swap alone. */
function swapMax(limit: bigint, swap: bigint): string {
  if (swap < 0n) return 'max';
  if (limit <= 0n) throw invalidArgument(`memory+swap limit ${swap} given without a memory limit: cgroup v2 cannot split it`);
  if (swap < limit) throw invalidArgument(`memory+swap limit ${swap} is below the memory limit ${limit}`);
  return (swap - limit).toString();
}
