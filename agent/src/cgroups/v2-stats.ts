// CgroupStats from a v2 group's files. v2 keeps microseconds where v1 had nanoseconds, has no
// per-CPU usage, and counts limit hits in *.events rather than failcnt files.
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
import { parseFlatKeyed, parseLimit } from './files.js';

export interface V2StatsSource {
  /** Trimmed content, or undefined when the file does not exist. */
  read(file: string): string | undefined;
  list(): string[];
}

const num = (s: string | undefined) => (s === undefined || !/^\d+$/.test(s) ? 0n : BigInt(s));
/** "max" as the largest uint64, which is what v1 reporting tools show for "no limit". */
const memLimit = (s: string | undefined) => (s === 'max' ? 0xffff_ffff_ffff_ffffn : num(s));

export function v2Stats(src: V2StatsSource): CgroupStats {
  const stats = create(CgroupStatsSchema);

  // cpu.stat exists in every group (usage is core accounting); throttling only with the cpu controller.
  const cpu = parseFlatKeyed(src.read('cpu.stat'));
  stats.cpuStats = create(CpuStatsSchema, {
    cpuUsage: {
      totalUsage: (cpu.get('usage_usec') ?? 0n) * 1000n,
      percpuUsage: [],
      usageInUsermode: (cpu.get('user_usec') ?? 0n) * 1000n,
      usageInKernelmode: (cpu.get('system_usec') ?? 0n) * 1000n,
    },
    throttlingData: {
      periods: cpu.get('nr_periods') ?? 0n,
      throttledPeriods: cpu.get('nr_throttled') ?? 0n,
      throttledTime: (cpu.get('throttled_usec') ?? 0n) * 1000n,
    },
  });

  const current = src.read('memory.current');
  if (current !== undefined) {
    const stat = parseFlatKeyed(src.read('memory.stat'));
    const events = parseFlatKeyed(src.read('memory.events'));
    const swapCurrent = src.read('memory.swap.current');
    stats.memoryStats = create(MemoryStatsSchema, {
      cache: stat.get('file') ?? 0n,
      usage: create(MemoryDataSchema, {
        usage: num(current),
        maxUsage: num(src.read('memory.peak')),
        failcnt: events.get('max') ?? 0n,
        limit: memLimit(src.read('memory.max')),
      }),
      swapUsage:
        swapCurrent !== undefined
          ? create(MemoryDataSchema, {
              usage: num(swapCurrent),
              maxUsage: num(src.read('memory.swap.peak')),
              failcnt: parseFlatKeyed(src.read('memory.swap.events')).get('max') ?? 0n,
              limit: memLimit(src.read('memory.swap.max')),
            })
          : undefined,
      // v2 is always hierarchical.
      useHierarchy: true,
      stats: Object.fromEntries(stat),
    });
  }

  const pidsCurrent = src.read('pids.current');
  if (pidsCurrent !== undefined) {
    stats.pidsStats = create(PidsStatsSchema, { current: num(pidsCurrent), limit: parseLimit(src.read('pids.max')) ?? 0n });
  }

  const io = src.read('io.stat');
  if (io !== undefined) {
    const bytes: BlkioStatsEntry[] = [];
    const ios: BlkioStatsEntry[] = [];
    for (const line of io.split('\n')) {
      const [devField, ...kvs] = line.trim().split(/\s+/);
      const dev = /^(\d+):(\d+)$/.exec(devField ?? '');
      if (!dev) continue;
      const kv = new Map(kvs.map((s) => s.split('=') as [string, string]));
      const entry = (op: string, v: string | undefined) => create(BlkioStatsEntrySchema, { major: BigInt(dev[1]), minor: BigInt(dev[2]), op, value: num(v) });
      bytes.push(entry('Read', kv.get('rbytes')), entry('Write', kv.get('wbytes')));
      ios.push(entry('Read', kv.get('rios')), entry('Write', kv.get('wios')));
    }
    stats.blkioStats = create(BlkioStatsSchema, { ioServiceBytesRecursive: bytes, ioServicedRecursive: ios });
  }

  const sizes = src.list().flatMap((f) => /^hugetlb\.([^.]+)\.current$/.exec(f)?.[1] ?? []);
  if (sizes.length > 0) {
    const out: Record<string, HugetlbStats> = {};
    for (const size of sizes) {
      out[size] = create(HugetlbStatsSchema, {
        usage: num(src.read(`hugetlb.${size}.current`)),
        // v2 keeps no peak for hugetlb.
        maxUsage: 0n,
        failcnt: parseFlatKeyed(src.read(`hugetlb.${size}.events`)).get('max') ?? 0n,
      });
    }
    stats.hugetlbStats = out;
  }
  return stats;
}
