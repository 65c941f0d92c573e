// CgroupStats from a v1 group's files. Controllers that are not mounted leave their part unset.
import { create } from '@bufbuild/protobuf';
import {
  BlkioStatsEntrySchema,
  BlkioStatsSchema,
  CgroupStatsSchema,
  CpuStatsSchema,
  HugetlbStatsSchema,
  MemoryDataSchema,
  MemoryStatsSchema,
  PidsStatsSchema,
  type BlkioStatsEntry,
  type CgroupStats,
  type HugetlbStats,
} from '../../../protos/gen/agent_pb.js';
import { parseFlatKeyed, parseLimit, parseNumberList } from './files.js';

export interface V1StatsSource {
  has(controller: string): boolean;
  /** Trimmed content, or undefined when the file does not exist. */
  read(controller: string, file: string): string | undefined;
  list(controller: string): string[];
}

/** cpuacct.stat counts USER_HZ ticks, which Linux fixes at 100 per second for user space. */
const NS_PER_TICK = 10_000_000n;

const num = (s: string | undefined) => (s === undefined || !/^\d+$/.test(s) ? 0n : BigInt(s));

export function v1Stats(src: V1StatsSource): CgroupStats {
  const stats = create(CgroupStatsSchema);

  if (src.has('cpuacct') || src.has('cpu')) {
    const acct = parseFlatKeyed(src.read('cpuacct', 'cpuacct.stat'));
    const user = src.read('cpuacct', 'cpuacct.usage_user');
    const sys = src.read('cpuacct', 'cpuacct.usage_sys');
    const throttle = parseFlatKeyed(src.read('cpu', 'cpu.stat'));
    stats.cpuStats = create(CpuStatsSchema, {
      cpuUsage: {
        totalUsage: num(src.read('cpuacct', 'cpuacct.usage')),
        percpuUsage: parseNumberList(src.read('cpuacct', 'cpuacct.usage_percpu')),
        // Nanosecond files where the kernel has them; tick counts (10 ms resolution) otherwise.
        usageInUsermode: user !== undefined ? num(user) : (acct.get('user') ?? 0n) * NS_PER_TICK,
        usageInKernelmode: sys !== undefined ? num(sys) : (acct.get('system') ?? 0n) * NS_PER_TICK,
      },
      throttlingData: {
        periods: throttle.get('nr_periods') ?? 0n,
        throttledPeriods: throttle.get('nr_throttled') ?? 0n,
        throttledTime: throttle.get('throttled_time') ?? 0n,
      },
    });
  }

  if (src.has('memory')) {
    const data = (prefix: string) =>
      create(MemoryDataSchema, {
        usage: num(src.read('memory', `${prefix}.usage_in_bytes`)),
        maxUsage: num(src.read('memory', `${prefix}.max_usage_in_bytes`)),
        failcnt: num(src.read('memory', `${prefix}.failcnt`)),
        limit: num(src.read('memory', `${prefix}.limit_in_bytes`)),
      });
    const stat = parseFlatKeyed(src.read('memory', 'memory.stat'));
    stats.memoryStats = create(MemoryStatsSchema, {
      cache: stat.get('cache') ?? 0n,
      usage: data('memory'),
      swapUsage: src.read('memory', 'memory.memsw.usage_in_bytes') !== undefined ? data('memory.memsw') : undefined,
      kernelUsage: src.read('memory', 'memory.kmem.usage_in_bytes') !== undefined ? data('memory.kmem') : undefined,
      useHierarchy: src.read('memory', 'memory.use_hierarchy') === '1',
      stats: Object.fromEntries(stat),
    });
  }

  if (src.has('pids')) {
    stats.pidsStats = create(PidsStatsSchema, {
      current: num(src.read('pids', 'pids.current')),
      limit: parseLimit(src.read('pids', 'pids.max')) ?? 0n,
    });
  }

  if (src.has('blkio')) {
    // CFQ's files, else BFQ's; the throttle layer counts bytes and ios whatever the scheduler.
    const entries = (name: string, throttled: boolean) => {
      for (const file of [`blkio.${name}`, `blkio.bfq.${name}`, ...(throttled ? [`blkio.throttle.${name}`] : [])]) {
        const list = parseBlkio(src.read('blkio', file));
        if (list.length > 0) return list;
      }
      return [];
    };
    stats.blkioStats = create(BlkioStatsSchema, {
      ioServiceBytesRecursive: entries('io_service_bytes_recursive', true),
      ioServicedRecursive: entries('io_serviced_recursive', true),
      ioQueuedRecursive: entries('io_queued_recursive', false),
      ioServiceTimeRecursive: entries('io_service_time_recursive', false),
      ioWaitTimeRecursive: entries('io_wait_time_recursive', false),
      ioMergedRecursive: entries('io_merged_recursive', false),
      ioTimeRecursive: entries('time_recursive', false),
      sectorsRecursive: entries('sectors_recursive', false),
    });
  }

  if (src.has('hugetlb')) {
    const sizes = src.list('hugetlb').flatMap((f) => /^hugetlb\.(.+)\.limit_in_bytes$/.exec(f)?.[1] ?? []);
    const out: Record<string, HugetlbStats> = {};
    for (const size of sizes) {
      out[size] = create(HugetlbStatsSchema, {
        usage: num(src.read('hugetlb', `hugetlb.${size}.usage_in_bytes`)),
        maxUsage: num(src.read('hugetlb', `hugetlb.${size}.max_usage_in_bytes`)),
        failcnt: num(src.read('hugetlb', `hugetlb.${size}.failcnt`)),
      });
    }
    stats.hugetlbStats = out;
  }
  return stats;
}

/** "8:0 Read 4096" (or "8:0 4096" for single-value files); the "Total" summary line is dropped. */
export function parseBlkio(text: string | undefined): BlkioStatsEntry[] {
  const out: BlkioStatsEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    const dev = /^(\d+):(\d+)$/.exec(f[0] ?? '');
    if (!dev) continue;
    const [op, value] = f.length >= 3 ? [f[1], f[2]] : ['', f[1]];
    if (value === undefined || !/^\d+$/.test(value)) continue;
    out.push(create(BlkioStatsEntrySchema, { major: BigInt(dev[1]), minor: BigInt(dev[2]), op, value: BigInt(value) }));
  }
  return out;
}
