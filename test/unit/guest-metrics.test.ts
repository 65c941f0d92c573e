// GetMetrics: the /proc parsers against fixture files (test/fixtures/proc), the text format, and one
// scrape of the real /proc that must parse as Prometheus text.
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  MetricsCollector,
  meminfoItem,
  metricsHandlers,
  parseLoadavg,
  parseMeminfo,
  parseProcessStat,
  parseProcessStatus,
  parseStat,
  parseUptime,
  renderPrometheus,
} from '../../agent/src/guest/metrics.js';
import { createLogger } from '../../agent/src/log/logger.js';
import fs from 'node:fs';

const log = createLogger('error');
const fixture = path.resolve(__dirname, '../../../test/fixtures/proc');
const read = (rel: string) => fs.readFileSync(path.join(fixture, rel), 'utf8');

/** Every line of a scrape: a comment, or `name{labels} value` / `name value`; returns the samples. */
function parseExposition(t: Test, text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$/;
  t.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.trimEnd().split('\n')) {
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = sample.exec(line);
    if (!m) {
      t.fail(`not a sample line: ${line}`);
      continue;
    }
    if (!/^kata_(agent|guest)_/.test(m[1])) t.fail(`name without kata_agent_/kata_guest_: ${m[1]}`);
    if (!/^([-+]?\d+(\.\d+)?(e[-+]?\d+)?|NaN|[+-]Inf)$/.test(m[3])) t.fail(`not a value: ${line}`);
    if (samples.has(m[1] + (m[2] ?? ''))) t.fail(`duplicate sample: ${line}`);
    samples.set(m[1] + (m[2] ?? ''), Number(m[3]));
  }
  return samples;
}

t.test("meminfo keys get kata's item names; kB becomes bytes, page counts stay counts", async (t) => {
  t.same(
    [
      'MemTotal',
      'SwapCached',
      'Active(anon)',
      'SReclaimable',
      'KReclaimable',
      'AnonHugePages',
      'HugePages_Total',
      'Hugepagesize',
      'DirectMap4k',
      'DirectMap2M',
    ].map(meminfoItem),
    [
      'mem_total',
      'swap_cached',
      'active_anon',
      's_reclaimable',
      'k_reclaimable',
      'anon_hugepages',
      'hugepages_total',
      'hugepagesize',
      'direct_map_4k',
      'direct_map_2m',
    ],
  );
  const mem = new Map(parseMeminfo(read('meminfo')).map((m) => [m.item, m.value]));
  t.equal(mem.get('mem_total'), 2014124 * 1024);
  t.equal(mem.get('hugepages_total'), 2);
  t.equal(mem.size, 14, 'every line');
});

t.test('/proc/stat: CPU ticks as ms, total and per CPU; boot time and process counters', async (t) => {
  const st = parseStat(read('stat'));
  t.same(
    st.cpus.map((c) => c.cpu),
    ['total', '0', '1'],
  );
  t.equal(st.cpus[0].times.user, 12000, '1200 ticks of 10 ms');
  t.equal(st.cpus[2].times.iowait, 50);
  t.equal(Object.keys(st.cpus[1].times).length, 10);
  t.same([st.bootTime, st.contextSwitches, st.processesCreated, st.procsRunning, st.procsBlocked], [1764770000, 456789, 321, 2, 1]);
  t.same(parseStat('cpu  1 2 3 4\n').cpus[0].times, { user: 10, nice: 20, system: 30, idle: 40 }, 'an old kernel with fewer columns');
});

t.test('loadavg, uptime, and the process stat whose name holds spaces and a parenthesis', async (t) => {
  t.same(parseLoadavg(read('loadavg')), { load1: 0.25, load5: 0.1, load15: 0.05, cur: 2, max: 87 });
  t.throws(() => parseLoadavg('garbage'));
  t.equal(parseUptime(read('uptime')), 1234.56);
  t.same(parseProcessStat(read('self/stat')), { cpuSeconds: 2, startTicks: 2500 });
  t.same(parseProcessStatus(read('self/status')), { rssBytes: 48000 * 1024, vmBytes: 1048576 * 1024, threads: 11 });
});

t.test("a scrape of the fixture tree: HELP and TYPE per family, kata's names, the values from the files", async (t) => {
  const c = new MetricsCollector({ proc: fixture, log });
  c.collect();
  const text = c.collect();
  const s = parseExposition(t, text);
  t.equal(s.get('kata_agent_scrape_count'), 2, 'counts scrapes');
  t.equal(s.get('kata_agent_process_cpu_seconds_total'), 2);
  t.equal(s.get('kata_agent_process_resident_memory_bytes'), 48000 * 1024);
  t.equal(s.get('kata_agent_process_virtual_memory_bytes'), 1048576 * 1024);
  t.equal(s.get('kata_agent_process_open_fds'), 4);
  t.equal(s.get('kata_agent_process_threads'), 11);
  t.equal(s.get('kata_agent_process_start_time_seconds'), 1764770025, 'boot time + 2500 ticks');
  t.equal(s.get('kata_guest_load{item="load1"}'), 0.25);
  t.equal(s.get('kata_guest_tasks{item="max"}'), 87);
  t.equal(s.get('kata_guest_cpu_time{cpu="1",item="system"}'), 2000);
  t.equal(s.get('kata_guest_meminfo{item="mem_available"}'), 1868332 * 1024);
  t.equal(s.get('kata_guest_uptime_seconds'), 1234.56);
  t.equal(s.get('kata_guest_context_switches_total'), 456789);
  t.match(text, /^# HELP kata_guest_meminfo .+\n# TYPE kata_guest_meminfo gauge\n/m);
  t.match(text, /^# TYPE kata_agent_process_cpu_seconds_total counter$/m);
  const types = text.split('\n').filter((l) => l.startsWith('# TYPE ')).length;
  t.equal(text.split('\n').filter((l) => l.startsWith('# HELP ')).length, types, 'one HELP per TYPE');
});

t.test('a missing source leaves its families out, the rest is served', async (t) => {
  const text = new MetricsCollector({ proc: path.join(fixture, 'does-not-exist'), log }).collect();
  t.equal(text, '# HELP kata_agent_scrape_count Metrics scrape count\n# TYPE kata_agent_scrape_count counter\nkata_agent_scrape_count 1\n');
});

t.test('label values are escaped', async (t) => {
  const text = renderPrometheus([{ name: 'kata_guest_x', help: 'h', type: 'gauge', samples: [{ labels: { item: 'a"b\\c\nd' }, value: 1 }] }]);
  t.equal(text, '# HELP kata_guest_x h\n# TYPE kata_guest_x gauge\nkata_guest_x{item="a\\"b\\\\c\\nd"} 1\n');
});

t.test('the real /proc: the answer parses as Prometheus text, with the agent and guest families', async (t) => {
  const h = metricsHandlers({ proc: '/proc', log });
  const res = (await h.getMetrics!({} as never, {} as never)) as { metrics: string };
  const s = parseExposition(t, res.metrics);
  for (const name of ['kata_agent_process_resident_memory_bytes', 'kata_agent_process_open_fds', 'kata_agent_process_threads', 'kata_guest_uptime_seconds'])
    t.ok(s.has(name), name);
  t.ok(s.get('kata_guest_meminfo{item="mem_total"}')! > 0, 'mem_total');
  t.ok(s.has('kata_guest_cpu_time{cpu="total",item="user"}'));
  t.ok(s.get('kata_agent_process_start_time_seconds')! <= Date.now() / 1000 + 1, 'started in the past');
});
