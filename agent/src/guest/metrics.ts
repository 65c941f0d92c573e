// GetMetrics: kata-monitor scrapes each sandbox's agent and serves the answer to Prometheus, so the
// answer is Prometheus' text exposition format. Families that kata's agent also has keep its names,
// labels and units (kata_guest_meminfo in bytes, kata_guest_cpu_time in ms, …) so dashboards built
// for it keep working; the agent's own process metrics follow Prometheus' process_* conventions.
// Every source is read afresh per scrape; one that cannot be read leaves its families out.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log/logger.js';
import type { AgentHandlers } from '../rpc/service.js';

/** USER_HZ: the unit of /proc's clock-tick fields, fixed at 100 by the kernel ABI on x86_64 and aarch64. */
const TICKS_PER_SECOND = 100;

export interface MetricsDeps {
  /** Root of procfs (/proc); tests give a fixture tree with a `self` directory. */
  proc: string;
  log: Logger;
}

type Labels = Record<string, string>;
interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  samples: { labels?: Labels; value: number }[];
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const formatValue = (v: number) => (Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf');

/** The text exposition format: HELP and TYPE, then one `name{labels} value` line per sample. */
export function renderPrometheus(families: Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {});
      const l = labels.length ? `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
      out.push(`${f.name}${l} ${formatValue(s.value)}`);
    }
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

/** /proc/meminfo keys as kata names them: MemTotal → mem_total, Active(anon) → active_anon, HugePages_Free → hugepages_free. */
export function meminfoItem(key: string): string {
  const k = key.replace(/HugePages/g, 'Hugepages').replace(/\((\w+)\)/g, '_$1');
  let out = '';
  for (let i = 0; i < k.length; i++) {
    const ch = k[i];
    const prev = k[i - 1] ?? '';
    const next = k[i + 1] ?? '';
    const upper = ch >= 'A' && ch <= 'Z';
    const digit = ch >= '0' && ch <= '9';
    const lowerPrev = /[a-z]/.test(prev);
    const startsWord = (upper && (lowerPrev || (/[A-Z]/.test(prev) && /[a-z]/.test(next)))) || (digit && /[A-Za-z]/.test(prev));
    if (startsWord && !out.endsWith('_') && out.length > 0) out += '_';
    out += ch.toLowerCase();
  }
  return out;
}

/** /proc/meminfo: every line, in bytes where the kernel gives kB (HugePages_* are counts). */
export function parseMeminfo(text: string): { item: string; value: number }[] {
  const out: { item: string; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([^:]+):\s+(\d+)(?:\s+(kB))?\s*$/.exec(line);
    if (m) out.push({ item: meminfoItem(m[1]), value: Number(m[2]) * (m[3] ? 1024 : 1) });
  }
  return out;
}

const CPU_FIELDS = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal', 'guest', 'guest_nice'];

export interface KernelStat {
  /** cpu "total" (the `cpu` line) and one per `cpuN`, each field in ms. */
  cpus: { cpu: string; times: Record<string, number> }[];
  /** btime: when the guest booted, in seconds since the epoch. */
  bootTime?: number;
  procsRunning?: number;
  procsBlocked?: number;
  contextSwitches?: number;
  processesCreated?: number;
}

/** /proc/stat: CPU times (ticks → ms), boot time and the process counters. */
export function parseStat(text: string): KernelStat {
  const st: KernelStat = { cpus: [] };
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (/^cpu\d*$/.test(f[0])) {
      const times: Record<string, number> = {};
      // Older kernels have fewer columns: absent ones stay out rather than read as 0.
      CPU_FIELDS.forEach((name, i) => {
        if (f[i + 1] !== undefined) times[name] = (Number(f[i + 1]) * 1000) / TICKS_PER_SECOND;
      });
      st.cpus.push({ cpu: f[0] === 'cpu' ? 'total' : f[0].slice(3), times });
    } else if (f[0] === 'btime') st.bootTime = Number(f[1]);
    else if (f[0] === 'procs_running') st.procsRunning = Number(f[1]);
    else if (f[0] === 'procs_blocked') st.procsBlocked = Number(f[1]);
    else if (f[0] === 'ctxt') st.contextSwitches = Number(f[1]);
    else if (f[0] === 'processes') st.processesCreated = Number(f[1]);
  }
  return st;
}

/** /proc/loadavg: "0.20 0.18 0.12 1/80 11206": the three loads, runnable and existing tasks. */
export function parseLoadavg(text: string): { load1: number; load5: number; load15: number; cur: number; max: number } {
  const f = text.trim().split(/\s+/);
  const [cur, max] = (f[3] ?? '').split('/');
  const nums = [f[0], f[1], f[2], cur, max].map(Number);
  if (f.length < 4 || nums.some((n) => !Number.isFinite(n))) throw new Error(`unexpected loadavg: ${text.trim()}`);
  return { load1: nums[0], load5: nums[1], load15: nums[2], cur: nums[3], max: nums[4] };
}

/** /proc/uptime: seconds since boot (the second figure, idle time summed over CPUs, is not used). */
export function parseUptime(text: string): number {
  const v = Number(text.trim().split(/\s+/)[0]);
  if (!Number.isFinite(v)) throw new Error(`unexpected uptime: ${text.trim()}`);
  return v;
}

export interface ProcessStat {
  cpuSeconds: number;
  /** In clock ticks since boot. */
  startTicks: number;
}

/** /proc/<pid>/stat: utime+stime and starttime. The command name may hold spaces and ')', so fields count from its last ')'. */
export function parseProcessStat(text: string): ProcessStat {
  const rest = text
    .slice(text.lastIndexOf(')') + 2)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state): utime, stime and starttime are fields 14, 15 and 22.
  const field = (n: number) => Number(rest[n - 3]);
  const ticks = field(14) + field(15);
  if (!Number.isFinite(ticks) || !Number.isFinite(field(22))) throw new Error('unexpected process stat');
  return { cpuSeconds: ticks / TICKS_PER_SECOND, startTicks: field(22) };
}

/** /proc/<pid>/status: VmRSS, VmSize (bytes) and Threads. Kernel threads have no Vm* lines. */
export function parseProcessStatus(text: string): { rssBytes?: number; vmBytes?: number; threads?: number } {
  const get = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const kb = (v: number | undefined) => (v === undefined ? undefined : v * 1024);
  return { rssBytes: kb(get('VmRSS')), vmBytes: kb(get('VmSize')), threads: get('Threads') };
}

export class MetricsCollector {
  private scrapes = 0;

  constructor(private readonly deps: MetricsDeps) {}

  /** One scrape: the agent's process metrics, then the guest's. */
  collect(): string {
    this.scrapes++;
    const families: Family[] = [{ name: 'kata_agent_scrape_count', help: 'Metrics scrape count', type: 'counter', samples: [{ value: this.scrapes }] }];
    const stat = this.read('stat', parseStat);
    this.agentFamilies(families, stat);
    this.guestFamilies(families, stat);
    return renderPrometheus(families);
  }

  private read<T>(rel: string, parse: (text: string) => T): T | undefined {
    return this.attempt(rel, (file) => parse(fs.readFileSync(file, 'utf8')));
  }

  private attempt<T>(rel: string, get: (file: string) => T): T | undefined {
    const file = path.join(this.deps.proc, rel);
    try {
      return get(file);
    } catch (err) {
      this.deps.log.debug({ file, err: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, 'GetMetrics: source left out');
      return undefined;
    }
  }

  private agentFamilies(families: Family[], guestStat: KernelStat | undefined): void {
    const ps = this.read('self/stat', parseProcessStat);
    const status = this.read('self/status', parseProcessStatus);
    // Counted while the listing is open, so one of them is the listing's own fd.
    const fds = this.attempt('self/fd', (dir) => fs.readdirSync(dir).length);
    const one = (name: string, help: string, value: number | undefined, type: Family['type'] = 'gauge') =>
      families.push({ name, help, type, samples: value === undefined ? [] : [{ value }] });
    one('kata_agent_process_cpu_seconds_total', 'Agent process user and system CPU time in seconds', ps?.cpuSeconds, 'counter');
    one('kata_agent_process_resident_memory_bytes', 'Agent process resident memory in bytes', status?.rssBytes);
    one('kata_agent_process_virtual_memory_bytes', 'Agent process virtual memory in bytes', status?.vmBytes);
    one('kata_agent_process_open_fds', 'Agent process open file descriptors', fds);
    one('kata_agent_process_threads', 'Agent process threads', status?.threads);
    const start = ps && guestStat?.bootTime !== undefined ? guestStat.bootTime + ps.startTicks / TICKS_PER_SECOND : undefined;
    one('kata_agent_process_start_time_seconds', 'Agent process start time in seconds since the Unix epoch', start);
  }

  private guestFamilies(families: Family[], stat: KernelStat | undefined): void {
    const load = this.read('loadavg', parseLoadavg);
    if (load) {
      families.push({
        name: 'kata_guest_load',
        help: 'Guest system load.',
        type: 'gauge',
        samples: (['load1', 'load5', 'load15'] as const).map((item) => ({ labels: { item }, value: load[item] })),
      });
      families.push({
        name: 'kata_guest_tasks',
        help: 'Guest runnable (cur) and existing (max) tasks.',
        type: 'gauge',
        samples: (['cur', 'max'] as const).map((item) => ({ labels: { item }, value: load[item] })),
      });
    }
    if (stat) {
      families.push({
        name: 'kata_guest_cpu_time',
        help: 'Guest CPU time in milliseconds, per CPU and in total.',
        type: 'gauge',
        samples: stat.cpus.flatMap((c) => Object.entries(c.times).map(([item, value]) => ({ labels: { cpu: c.cpu, item }, value }))),
      });
      const counters: [string, string, number | undefined, Family['type']][] = [
        ['kata_guest_context_switches_total', 'Guest context switches since boot', stat.contextSwitches, 'counter'],
        ['kata_guest_processes_created_total', 'Guest processes and threads created since boot', stat.processesCreated, 'counter'],
        ['kata_guest_procs_running', 'Guest processes in runnable state', stat.procsRunning, 'gauge'],
        ['kata_guest_procs_blocked', 'Guest processes blocked on I/O', stat.procsBlocked, 'gauge'],
        ['kata_guest_boot_time_seconds', 'Guest boot time in seconds since the Unix epoch', stat.bootTime, 'gauge'],
      ];
      for (const [name, help, value, type] of counters) families.push({ name, help, type, samples: value === undefined ? [] : [{ value }] });
    }
    const uptime = this.read('uptime', parseUptime);
    if (uptime !== undefined)
      families.push({ name: 'kata_guest_uptime_seconds', help: 'Guest uptime in seconds', type: 'gauge', samples: [{ value: uptime }] });
    const mem = this.read('meminfo', parseMeminfo);
    if (mem)
      families.push({
        name: 'kata_guest_meminfo',
        help: 'Statistics about memory usage in the guest, in bytes (hugepages_* in pages).',
        type: 'gauge',
        samples: mem.map(({ item, value }) => ({ labels: { item }, value })),
      });
  }
}

export function metricsHandlers(deps: MetricsDeps): AgentHandlers {
  const collector = new MetricsCollector(deps);
  return {
    getMetrics() {
      return { metrics: collector.collect() };
    },
  };
}
