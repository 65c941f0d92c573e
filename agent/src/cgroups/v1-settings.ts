// OCI LinuxResources → cgroup v1 file writes, in the order the kernel accepts them.
import type { LinuxResources } from '../../../protos/gen/oci_pb.js';
import { deviceNumber, deviceRule, limitValue } from './convert.js';
import { validateResources } from './validate.js';

export interface V1Write {
  controller: string;
  file: string;
  value: string;
}

export interface V1Tree {
  /** Is a hierarchy with this controller mounted? */
  has(controller: string): boolean;
  /** Does the group's directory in that controller's hierarchy hold this file? */
  exists(controller: string, file: string): boolean;
  /** The file's current content (trimmed), for writes whose order depends on it. */
  read(controller: string, file: string): string | undefined;
}

export function v1Writes(res: LinuxResources, tree: V1Tree, warn: (msg: string) => void): V1Write[] {
  validateResources(res);
  const out: V1Write[] = [];
  const w = (controller: string, file: string, value: string | undefined) => {
    if (value !== undefined) out.push({ controller, file, value });
  };

  const mem = res.Memory;
  if (mem) {
    const limit = limitValue(mem.Limit, '-1');
    let swap = limitValue(mem.Swap, '-1');
    // Kernels without swap accounting have no memsw files; runtimes (CRI sets swap = limit by
    // default) would otherwise fail every container with a memory limit.
    if (swap !== undefined && tree.has('memory') && !tree.exists('memory', 'memory.memsw.limit_in_bytes')) {
      warn('memory+swap limit not applied: the kernel does not account swap (no memory.memsw.limit_in_bytes)');
      swap = undefined;
    }
    // memsw must stay >= limit at every step: raise memsw first when it grows, else lower limit first.
    if (swap !== undefined) {
      const cur = tree.read('memory', 'memory.memsw.limit_in_bytes');
      const grows = swap === '-1' || cur === undefined || BigInt(swap) > BigInt(cur);
      if (grows) {
        w('memory', 'memory.memsw.limit_in_bytes', swap);
        w('memory', 'memory.limit_in_bytes', limit);
      } else {
        w('memory', 'memory.limit_in_bytes', limit);
        w('memory', 'memory.memsw.limit_in_bytes', swap);
      }
    } else {
      w('memory', 'memory.limit_in_bytes', limit);
    }
    w('memory', 'memory.soft_limit_in_bytes', limitValue(mem.Reservation, '-1'));
    // The kernel deprecated kmem limits (writes fail on recent kernels) and OCI runtimes ignore them.
    if (mem.Kernel !== 0n) warn('memory.kernel limit is deprecated by the kernel and not applied');
    w('memory', 'memory.kmem.tcp.limit_in_bytes', limitValue(mem.KernelTCP, '-1'));
    // 0 cannot be told from "unset" on this wire; values above 100 are runtimes' "unset" markers.
    if (mem.Swappiness > 0n && mem.Swappiness <= 100n) w('memory', 'memory.swappiness', mem.Swappiness.toString());
    if (mem.DisableOOMKiller) w('memory', 'memory.oom_control', '1');
  }

  const cpu = res.CPU;
  if (cpu) {
    if (cpu.Shares !== 0n) w('cpu', 'cpu.shares', cpu.Shares.toString());
    // Period before quota: a quota is checked against the period in force.
    if (cpu.Period !== 0n) w('cpu', 'cpu.cfs_period_us', cpu.Period.toString());
    w('cpu', 'cpu.cfs_quota_us', limitValue(cpu.Quota, '-1'));
    if (cpu.RealtimePeriod !== 0n) w('cpu', 'cpu.rt_period_us', cpu.RealtimePeriod.toString());
    if (cpu.RealtimeRuntime !== 0n) w('cpu', 'cpu.rt_runtime_us', cpu.RealtimeRuntime.toString());
    if (cpu.Cpus) w('cpuset', 'cpuset.cpus', cpu.Cpus);
    if (cpu.Mems) w('cpuset', 'cpuset.mems', cpu.Mems);
  }

  if (res.Pids) w('pids', 'pids.max', limitValue(res.Pids.Limit, 'max'));

  const bio = res.BlockIO;
  if (bio) {
    // Without CFQ (every kernel since 5.0) the proportional weight lives in BFQ's files.
    const weightFile = tree.exists('blkio', 'blkio.weight') ? 'blkio.weight' : 'blkio.bfq.weight';
    if (bio.Weight) w('blkio', weightFile, String(bio.Weight));
    if (bio.LeafWeight) {
      if (tree.exists('blkio', 'blkio.leaf_weight')) w('blkio', 'blkio.leaf_weight', String(bio.LeafWeight));
      else warn('blkio leaf weight is not supported by this kernel and not applied');
    }
    for (const d of bio.WeightDevice) {
      if (d.Weight) w('blkio', `${weightFile}_device`, `${deviceNumber(d.Major, d.Minor)} ${d.Weight}`);
      if (d.LeafWeight) warn(`blkio leaf weight for ${deviceNumber(d.Major, d.Minor)} is not supported and not applied`);
    }
    const throttles: Array<[typeof bio.ThrottleReadBpsDevice, string]> = [
      [bio.ThrottleReadBpsDevice, 'blkio.throttle.read_bps_device'],
      [bio.ThrottleWriteBpsDevice, 'blkio.throttle.write_bps_device'],
      [bio.ThrottleReadIOPSDevice, 'blkio.throttle.read_iops_device'],
      [bio.ThrottleWriteIOPSDevice, 'blkio.throttle.write_iops_device'],
    ];
    for (const [list, file] of throttles) for (const d of list) w('blkio', file, `${deviceNumber(d.Major, d.Minor)} ${d.Rate}`);
  }

  for (const h of res.HugepageLimits) w('hugetlb', `hugetlb.${h.Pagesize}.limit_in_bytes`, h.Limit.toString());

  if (res.Devices.length > 0) {
    // Rules are applied in order, each one on top of the previous ones, as the OCI spec defines them.
    for (const d of res.Devices) w('devices', d.Allow ? 'devices.allow' : 'devices.deny', deviceRule(d));
  }

  const net = res.Network;
  if (net) {
    if (net.ClassID) {
      if (tree.has('net_cls')) w('net_cls', 'net_cls.classid', String(net.ClassID));
      else warn('network classID not applied: no net_cls hierarchy is mounted');
    }
    for (const p of net.Priorities) {
      if (tree.has('net_prio')) w('net_prio', 'net_prio.ifpriomap', `${p.Name} ${p.Priority}`);
      else warn(`network priority for ${p.Name} not applied: no net_prio hierarchy is mounted`);
    }
  }
  return out;
}
