import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { SyscallError } from '../../agent/src/linux/errno.js';
import { createLogger, fdDestination, parseLogLevel, type LogLevel } from '../../agent/src/log/logger.js';

const levels: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

function capture() {
  const lines: string[] = [];
  return { lines, dest: { write: (line: string) => void lines.push(line) }, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

t.test('kata level names map onto ours and filter what is written', async (t) => {
  const expected: Record<string, LogLevel[]> = {
    trace: levels,
    debug: ['debug', 'info', 'warn', 'error', 'fatal'],
    info: ['info', 'warn', 'error', 'fatal'],
    warn: ['warn', 'error', 'fatal'],
    warning: ['warn', 'error', 'fatal'],
    error: ['error', 'fatal'],
    critical: ['fatal'],
    fatal: ['fatal'],
    panic: ['fatal'],
  };
  for (const [kataName, written] of Object.entries(expected)) {
    const level = parseLogLevel(kataName);
    if (!level) {
      t.fail(`${kataName} is not parsed`);
      continue;
    }
    const c = capture();
    const log = createLogger(level, 'kata-agent', c.dest);
    for (const l of levels) log[l]({ at: l }, `${l} line`);
    t.same(
      c.parsed().map((p) => p.level),
      written,
      `${kataName} writes ${written.join(',')}`,
    );
    t.same(
      levels.filter((l) => log.isLevelEnabled(l)),
      written,
      `${kataName}: isLevelEnabled agrees`,
    );
    t.equal(log.level, level);
  }
  t.equal(parseLogLevel(' WARNING\n'), 'warn', 'case and surrounding space do not matter');
  t.equal(parseLogLevel('verbose'), undefined);
  t.equal(parseLogLevel('constructor'), undefined, 'object prototype keys are not levels');
  t.equal(parseLogLevel(''), undefined);
});

t.test('one JSON line per event: level, time, pid, name, fields in order, msg last', async (t) => {
  const c = capture();
  const log = createLogger('info', 'unit-name', c.dest);
  const before = Date.now();
  log.info({ container_id: 'c1', n: 3, nested: { ok: true }, gone: undefined }, 'line with\nnewline "quoted"');
  log.warn('message only');
  log.error({ only: 'fields' });
  log.info({}, 'empty fields');
  log.info(undefined, 'undefined fields');
  const after = Date.now();

  t.equal(c.lines.length, 5);
  for (const line of c.lines) {
    t.ok(line.endsWith('}\n'), 'ends with one newline');
    t.equal(line.indexOf('\n'), line.length - 1, 'no newline inside the line');
  }
  const [a, b, e, empty, undef] = c.parsed();
  t.same(Object.keys(a), ['level', 'time', 'pid', 'name', 'container_id', 'n', 'nested', 'msg']);
  t.same(a, {
    level: 'info',
    time: a.time,
    pid: process.pid,
    name: 'unit-name',
    container_id: 'c1',
    n: 3,
    nested: { ok: true },
    msg: 'line with\nnewline "quoted"',
  });
  t.match(a.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ISO time');
  const ms = Date.parse(a.time as string);
  t.ok(ms >= before && ms <= after, 'time is the time of the call');
  t.same(b, { level: 'warn', time: b.time, pid: process.pid, name: 'unit-name', msg: 'message only' });
  t.same(Object.keys(e), ['level', 'time', 'pid', 'name', 'only'], 'no msg key without a message');
  t.same(Object.keys(empty), ['level', 'time', 'pid', 'name', 'msg']);
  t.same(Object.keys(undef), ['level', 'time', 'pid', 'name', 'msg']);

  const d = capture();
  createLogger('info', undefined, d.dest).info('default name');
  t.equal(d.parsed()[0].name, 'kata-agent');
});

t.test('errors take the err shape: type, message, stack and their own fields, also nested', async (t) => {
  const c = capture();
  const log = createLogger('info', 'kata-agent', c.dest);
  const sys = new SyscallError('mount', 2, '"/a", "/b"');
  const plain = Object.assign(new Error('plain failure'), { code: 'EACCES', path: '/x' });
  const withCause = new Error('outer', { cause: new TypeError('inner') });
  log.error({ err: sys, method: 'CreateContainer' }, 'rpc failed');
  log.error({ step: { err: plain } }, 'nested');
  log.error({ err: withCause }, 'caused');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed log lines, read field by field at any depth
  const [s, p, w] = c.parsed() as Record<string, any>[];

  t.equal(s.err.type, 'SyscallError');
  t.equal(s.err.message, sys.message);
  t.equal(s.err.stack, sys.stack);
  t.equal(s.err.code, 'ENOENT');
  t.equal(s.err.syscall, 'mount');
  t.equal(s.method, 'CreateContainer');
  t.same(p.step.err, { type: 'Error', message: 'plain failure', stack: plain.stack, code: 'EACCES', path: '/x' });
  t.equal(w.err.message, 'outer');
  t.equal(w.err.cause.type, 'TypeError');
  t.equal(w.err.cause.message, 'inner');
});

t.test('BigInt and cyclic values do not stop the line', async (t) => {
  const c = capture();
  const log = createLogger('info', 'kata-agent', c.dest);
  const cyclic: Record<string, unknown> = { name: 'loop' };
  cyclic.self = cyclic;
  cyclic.list = [1, cyclic];
  const shared = { v: 1 };
  const selfErr = Object.assign(new Error('self'), { again: undefined as unknown });
  selfErr.again = selfErr;
  log.info({ small: 42n, huge: 2n ** 64n, negative: -7n }, 'bigint');
  log.info({ cyclic }, 'cyclic');
  log.info({ a: shared, b: shared }, 'shared, not cyclic');
  log.info({ err: selfErr }, 'error cycle');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed log lines, read field by field at any depth
  const [big, cyc, sh, ec] = c.parsed() as Record<string, any>[];

  t.same([big.small, big.huge, big.negative], [42, '18446744073709551616', -7], 'safe BigInts are numbers, larger ones exact strings');
  t.same(cyc.cyclic, { name: 'loop', self: '[Circular]', list: [1, '[Circular]'] });
  t.same([sh.a, sh.b], [{ v: 1 }, { v: 1 }], 'a repeated reference is written twice, not called circular');
  t.equal(ec.err.message, 'self');
  t.equal(ec.err.again, '[Circular]');
});

t.test('fields that cannot be serialised still give a line, with the message', async (t) => {
  const c = capture();
  const log = createLogger('info', 'kata-agent', c.dest);
  log.warn(
    {
      get broken() {
        throw new Error('getter exploded');
      },
    },
    'still written',
  );
  log.warn(
    {
      when: {
        toJSON: () => {
          throw new Error('toJSON exploded');
        },
      },
    },
    'also written',
  );
  const [g, j] = c.parsed();
  t.equal(g.msg, 'still written');
  t.match(g.log_error, /getter exploded/);
  t.equal(j.msg, 'also written');
  t.match(j.log_error, /toJSON exploded/);
});

t.test('a disabled level neither serialises nor writes', async (t) => {
  const c = capture();
  let touched = 0;
  const fields = {
    get costly() {
      touched++;
      return 'x';
    },
  };
  const log = createLogger('info', 'kata-agent', c.dest);
  log.debug(fields, 'hot path');
  log.trace(fields, 'hot path');
  t.equal(touched, 0, 'fields of a disabled level are never read');
  t.same(c.lines, []);
  log.info(fields, 'enabled');
  t.equal(touched, 1);
});

t.test("'silent' writes nothing at any level", async (t) => {
  const c = capture();
  const log = createLogger('silent', 'kata-agent', c.dest);
  for (const l of levels) log[l]({ l }, 'nothing');
  log.fatal('nothing either');
  t.same(c.lines, []);
  t.equal(log.isLevelEnabled('fatal'), false);
  t.equal(log.level, 'silent');
});

t.test('fdDestination retries EAGAIN and partial writes until the whole line is out', async (t) => {
  const line = JSON.stringify({ msg: 'multi-byte é ✓ 🙂 '.repeat(20) }) + '\n';
  const out: Buffer[] = [];
  const fds = new Set<number>();
  let calls = 0;
  let eagains = 0;
  const dest = fdDestination(7, (fd, buf, offset, length) => {
    calls++;
    fds.add(fd);
    if (calls === 1 || calls === 4) {
      eagains++;
      throw Object.assign(new Error('EAGAIN: resource temporarily unavailable, write'), { code: 'EAGAIN' });
    }
    const n = Math.min(length, 5);
    out.push(Buffer.from(buf.subarray(offset, offset + n)));
    return n;
  });
  dest.write(line);
  t.equal(eagains, 2);
  t.same([...fds], [7], 'always the given fd');
  t.equal(Buffer.concat(out).toString('utf8'), line, 'every byte, in order, split mid-character or not');

  let epipeCalls = 0;
  const broken = fdDestination(7, () => {
    epipeCalls++;
    throw Object.assign(new Error('EPIPE: broken pipe, write'), { code: 'EPIPE' });
  });
  broken.write('{"msg":"nobody reads"}\n');
  t.equal(epipeCalls, 1, 'a reader that is gone drops the line without retrying or throwing');
});

t.test('a slow reader on a non-blocking stderr pipe gets every line whole', async (t) => {
  const loggerPath = path.resolve(__dirname, '../../agent/src/log/logger.js');
  const lines = 2000;
  // The child's fd 2 is a pipe that libuv makes O_NONBLOCK once process.stderr is touched. It tells us on
  // stdout when a write first met EAGAIN; only then do we start reading its stderr.
  const script = `
    const fs = require('fs');
    const { createLogger, fdDestination } = require(${JSON.stringify(loggerPath)});
    process.stderr;
    const flags = parseInt(/flags:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/fdinfo/2', 'utf8'))[1], 8);
    if ((flags & 0o4000) === 0) fs.writeSync(1, 'blocking\\n');
    let eagain = 0;
    const log = createLogger('info', 'pipe-test', fdDestination(2, (fd, buf, off, len) => {
      try { return fs.writeSync(fd, buf, off, len); }
      catch (e) { if (e.code === 'EAGAIN' && eagain++ === 0) fs.writeSync(1, 'blocked\\n'); throw e; }
    }));
    const pad = 'x'.repeat(1000);
    for (let i = 0; i < ${lines}; i++) log.info({ seq: i, pad }, 'line ' + i);
    fs.writeSync(1, JSON.stringify({ nonblock: (flags & 0o4000) !== 0, eagain }) + '\\n');
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const errChunks: Buffer[] = [];
  child.stderr.pause();
  child.stderr.on('data', (d: Buffer) => errChunks.push(d));
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    // A blocking fd would never meet EAGAIN: read anyway, and let the nonblock check below fail.
    if (/^(blocked|blocking)$/m.test(stdout)) child.stderr.resume();
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.equal(code, 0);
  const report = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { nonblock: boolean; eagain: number };
  t.equal(report.nonblock, true, 'fd 2 was non-blocking in the child');
  t.ok(report.eagain > 0, `writes met EAGAIN (${report.eagain} times)`);
  const got = Buffer.concat(errChunks).toString('utf8').split('\n');
  t.equal(got.pop(), '', 'output ends with a newline');
  t.equal(got.length, lines, 'no line lost');
  let whole = 0;
  got.forEach((l, i) => {
    const p = JSON.parse(l) as { seq: number; msg: string; pad: string };
    if (p.seq === i && p.msg === `line ${i}` && p.pad.length === 1000) whole++;
  });
  t.equal(whole, lines, 'every line parses, in order, untruncated');
});
