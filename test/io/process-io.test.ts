import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createProcessIO } from '../../agent/src/io/process-io.js';
import { openPty } from '../../agent/src/io/pty.js';
import { libc } from '../../agent/src/linux/index.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { F_GETPIPE_SZ } from '../../agent/src/linux/libc.js';
import { FailedPrecondition, Unavailable } from '../../agent/src/errors.js';
import { never, readAll, spawnWithIO } from './spawn-with-io.js';

const pipes = () => createProcessIO({ terminal: false, pipeSize: 0, libc: libc() });
const pty = () => createProcessIO({ terminal: true, pipeSize: 0, libc: libc() });

function tmpDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'io-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('100 MB of stdout arrive byte for byte, read in uneven sizes', async (t) => {
  const dir = tmpDir(t);
  const block = randomBytes(1 << 20);
  fs.writeFileSync(path.join(dir, 'block'), block);
  const want = createHash('sha256');
  for (let i = 0; i < 100; i++) want.update(block);

  const io = pipes();
  spawnWithIO(t, io, `cd ${dir} && i=0; while [ $i -lt 100 ]; do cat block; i=$((i+1)); done`);
  const got = createHash('sha256');
  let total = 0;
  let n = 0;
  let oversize = 0;
  for (;;) {
    // 1 byte, odd sizes and the shim's 32 KiB: every split of the queue is exercised.
    const len = [1, 4093, 32768, 65536 * 3 + 7][n++ % 4];
    const d = await io.read('stdout', len, never);
    if (d === null) break;
    if (d.length === 0 || d.length > len) oversize++;
    got.update(d);
    total += d.length;
  }
  t.equal(oversize, 0, 'every read returned 1..len bytes');
  t.equal(total, 100 << 20);
  t.equal(got.digest('hex'), want.digest('hex'));
});

t.test('output of a process that already exited is delivered in full, then end of stream', async (t) => {
  const io = pipes();
  // 200 KB is more than the pipe holds (64 KiB) but less than pipe + the agent's queue (256 KiB):
  // the agent must have kept reading while nobody asked. More would block the writer, by design.
  const { exited } = spawnWithIO(t, io, 'head -c 200000 /dev/zero | tr "\\0" o; head -c 150000 /dev/zero | tr "\\0" e >&2');
  t.equal(await exited, 0);
  const out = await readAll(io, 'stdout');
  const err = await readAll(io, 'stderr');
  t.equal(out.length, 200000);
  t.ok(out.every((b) => b === 0x6f));
  t.equal(err.length, 150000);
  t.ok(err.every((b) => b === 0x65));
  t.equal(await io.read('stdout', 10, never), null, 'end of stream is sticky');
});

t.test('end of stream comes when the writers close, without waiting for the exit', async (t) => {
  const io = pipes();
  const { child } = spawnWithIO(t, io, 'echo last; exec >&- 2>&-; read wait_for_stdin');
  t.equal((await readAll(io, 'stdout')).toString(), 'last\n');
  t.equal(await io.read('stderr', 10, never), null);
  t.equal(child.exitCode, null, 'the process is still running');
  io.closeStdin();
});

t.test('stdin round trip through cat, 8 MB, while reading concurrently', async (t) => {
  const io = pipes();
  spawnWithIO(t, io, 'cat');
  const data = randomBytes(8 << 20);
  const reading = readAll(io, 'stdout');
  for (let off = 0; off < data.length; off += 100_000) {
    const chunk = data.subarray(off, off + 100_000);
    if (!t.equal(await io.write(chunk, never), chunk.length)) t.fail('short write');
  }
  io.closeStdin();
  const got = await reading;
  t.equal(got.length, data.length);
  t.ok(got.equals(data), 'same bytes');
});

t.test('CloseStdin: the process sees end of file; later writes are refused', async (t) => {
  const io = pipes();
  spawnWithIO(t, io, 'n=$(wc -c); echo "saw $n bytes then eof"');
  await io.write(Buffer.from('12345'), never);
  io.closeStdin();
  io.closeStdin(); // idempotent
  t.equal((await readAll(io, 'stdout')).toString().replace(/ +/g, ' '), 'saw 5 bytes then eof\n');
  await t.rejects(io.write(Buffer.from('x'), never), { name: 'FailedPrecondition', message: 'stdin is closed' });
});

t.test('writing to a process that closed its stdin is FAILED_PRECONDITION, output still readable', async (t) => {
  const io = pipes();
  spawnWithIO(t, io, 'exec <&-; echo closed; read x < /dev/null; sleep 30');
  t.equal((await io.read('stdout', 100, never))?.toString(), 'closed\n');
  // The first write may be accepted before the kernel reports EPIPE; keep writing until it does.
  let err: unknown;
  for (let i = 0; i < 100 && !err; i++) {
    try {
      await io.write(Buffer.alloc(65536), never);
    } catch (e) {
      err = e;
    }
  }
  t.ok(err instanceof FailedPrecondition);
  t.match((err as Error).message, /EPIPE/);
});

t.test('an aborted read takes nothing: the next read gets the bytes', async (t) => {
  const io = pipes();
  spawnWithIO(t, io, 'read go; printf payload');
  const ac = new AbortController();
  const pending = io.read('stdout', 100, ac.signal);
  ac.abort();
  await t.rejects(pending, { name: 'Cancelled' });
  await t.rejects(io.read('stdout', 100, ac.signal), { name: 'Cancelled' }, 'already aborted');
  await io.write(Buffer.from('go\n'), never);
  t.equal((await readAll(io, 'stdout')).toString(), 'payload');
});

t.test('two readers of one stream share the bytes without duplicates', async (t) => {
  const io = pipes();
  spawnWithIO(t, io, 'read go; printf abcdef');
  const a = io.read('stdout', 3, never);
  const b = io.read('stdout', 3, never);
  await io.write(Buffer.from('go\n'), never);
  const got = [Buffer.from((await a)!).toString(), Buffer.from((await b)!).toString()];
  t.equal(got.join('').length, 6);
  t.same(got.join('').split('').sort(), 'abcdef'.split(''));
});

t.test('agent.container_pipe_size resizes the output pipes', async (t) => {
  const io = createProcessIO({ terminal: false, pipeSize: 1 << 20, libc: libc() });
  t.teardown(() => io.dispose());
  t.equal(libc().fcntl(io.childFds![1], F_GETPIPE_SZ), 1 << 20);
  t.equal(libc().fcntl(io.childFds![2], F_GETPIPE_SZ), 1 << 20);
});

t.test('a pipe size the kernel refuses fails with the call named, and every fd opened is closed', async (t) => {
  const fake = new RecordingLibc().fail('fcntl', 1 /* EPERM */);
  t.throws(() => createProcessIO({ terminal: false, pipeSize: 1 << 30, libc: fake }), /fcntl\(.*\): EPERM/);
  const opened = fake.calls.filter((c) => c.name === 'pipe2').length * 2;
  const closed = fake.calls.filter((c) => c.name === 'close').map((c) => c.args[0]);
  t.equal(opened, 4, 'stdin pipe, then the stdout pipe whose resize failed');
  t.same([...closed].sort(), [100, 101, 102, 103]);
});

t.test('a pty that cannot be opened leaves no fd behind', async (t) => {
  const fake = new RecordingLibc().fail('ioctlInt', 25 /* ENOTTY */);
  t.throws(() => openPty(fake), /ioctl.*ENOTTY/);
  t.same(
    fake.calls.filter((c) => c.name === 'close').map((c) => c.args[0]),
    [100],
    'the master is closed',
  );
});

t.test('a terminal IO opens no pty itself; a master it cannot take is closed', async (t) => {
  const fake = new RecordingLibc().fail('fcntl', 24 /* EMFILE */);
  const io = createProcessIO({ terminal: true, pipeSize: 0, libc: fake });
  t.equal(io.childFds, null, 'no child ends: the helper opens the pty inside the container');
  t.same(fake.calls, [], 'no syscall before a master is attached');
  await t.rejects(io.read('stdout', 10, never), { name: 'Unavailable' }, 'nothing to read before the master');
  t.throws(() => io.resize(24, 80), { name: 'Unavailable' });
  t.throws(() => io.attachPty(7), /fcntl.*EMFILE/);
  t.same(
    fake.calls.filter((c) => c.name === 'close').map((c) => c.args[0]),
    [7],
    'the master that could not be duplicated is closed',
  );
  io.dispose();
  const later = new RecordingLibc();
  const gone = createProcessIO({ terminal: true, pipeSize: 0, libc: later });
  gone.dispose();
  t.throws(() => gone.attachPty(9), { name: 'NotFound' });
  t.same(
    later.calls.map((c) => [c.name, c.args[0]]),
    [['close', 9]],
    'a master arriving after dispose is closed',
  );
});

t.test('a process without a terminal refuses a pty master and closes it', async (t) => {
  const io = pipes();
  t.teardown(() => io.dispose());
  const fd = fs.openSync('/dev/null', 'r');
  t.throws(() => io.attachPty(fd), { name: 'Error' });
  t.throws(() => fs.fstatSync(fd), { code: 'EBADF' }, 'closed');
});

t.test('dispose releases every fd, and later calls are NOT_FOUND', async (t) => {
  for (const make of [pipes, pty]) {
    const before = fs.readdirSync('/proc/self/fd').length;
    const io = make();
    const { exited } = spawnWithIO(t, io, 'echo hi');
    await exited;
    io.dispose();
    io.dispose();
    // libuv closes handle fds on the next loop turn.
    await new Promise((r) => setImmediate(r));
    t.equal(fs.readdirSync('/proc/self/fd').length, before, `${io.terminal ? 'pty' : 'pipes'}: fds back to ${before}`);
    await t.rejects(io.read('stdout', 10, never), { name: 'NotFound' });
    await t.rejects(io.write(Buffer.from('x'), never), { name: 'NotFound' });
    t.throws(() => io.closeStdin(), { name: 'NotFound' });
  }
});

t.test('a read pending at dispose ends as end of stream', async (t) => {
  const io = pipes();
  spawnWithIO(t, io, 'sleep 30');
  const pending = io.read('stdout', 10, never);
  io.dispose();
  t.equal(await pending, null);
});

t.test('TtyWinResize on pipes is UNAVAILABLE "no tty"', async (t) => {
  const io = pipes();
  t.teardown(() => io.dispose());
  t.throws(() => io.resize(24, 80), new Unavailable('no tty'));
});

t.test('pty: stdin, echo, resize seen by stty, one output stream', async (t) => {
  const io = pty();
  t.equal(io.terminal, true);
  const { exited } = spawnWithIO(t, io, 'read x; stty size; echo "got $x" >&2');
  io.resize(33, 77);
  await io.write(Buffer.from('hello\n'), never);
  const out = (await readAll(io, 'stdout')).toString();
  t.equal(out, 'hello\r\n33 77\r\ngot hello\r\n', 'echo, stty size and stderr all on the terminal');
  t.equal(await io.read('stderr', 10, never), null, 'a tty has no separate stderr');
  t.equal(await exited, 0);
  t.throws(() => io.resize(70000, 1), { name: 'InvalidArgument' });
});

t.test('pty: the full tail of a process that exited arrives before end of stream (10 runs)', async (t) => {
  // libuv alone lost the last KBs in about half of these runs (see pty-drain.ts).
  for (let i = 0; i < 10; i++) {
    const io = pty();
    const { exited } = spawnWithIO(t, io, 'head -c 300000 /dev/zero | tr "\\0" a; echo END');
    const out = await readAll(io, 'stdout');
    t.equal(out.length, 300005, `run ${i}: every byte`);
    t.equal(out.subarray(-5).toString(), 'END\r\n');
    await exited;
    io.dispose();
  }
});

t.test('pty: output written before the host reads, by a process already gone, is kept', async (t) => {
  const io = pty();
  const { exited } = spawnWithIO(t, io, 'head -c 100000 /dev/zero | tr "\\0" z');
  t.equal(await exited, 0);
  const out = await readAll(io, 'stdout');
  t.equal(out.length, 100000);
});

t.test('pty: CloseStdin ends writes but keeps the output flowing', async (t) => {
  const io = pty();
  spawnWithIO(t, io, 'read x; echo "got $x"; sleep 0.1; echo after');
  await io.write(Buffer.from('one\n'), never);
  io.closeStdin();
  await t.rejects(io.write(Buffer.from('x'), never), { name: 'FailedPrecondition' });
  t.equal((await readAll(io, 'stdout')).toString(), 'one\r\ngot one\r\nafter\r\n');
});

t.test('20 processes at once: each stream gets exactly its own bytes', async (t) => {
  const runs = Array.from({ length: 20 }, (_, i) => {
    const io = i % 4 === 3 ? pty() : pipes();
    // Distinct byte per process and stream, 1 MB each: any cross-talk or loss changes a count.
    const { exited } = spawnWithIO(
      t,
      io,
      `head -c 1000000 /dev/zero | tr "\\0" "\\${(0o101 + i).toString(8)}"; head -c 1000 /dev/zero | tr "\\0" "\\${(0o141 + i).toString(8)}" >&2`,
    );
    return { i, io, exited };
  });
  const results = await Promise.all(
    runs.map(async ({ i, io, exited }) => {
      const [out, err] = await Promise.all([readAll(io, 'stdout'), readAll(io, 'stderr')]);
      await exited;
      return { i, io, out, err };
    }),
  );
  for (const { i, io, out, err } of results) {
    const o = 0x41 + i;
    const e = 0x61 + i;
    if (io.terminal) {
      // stderr shares the terminal; its 1000 bytes follow stdout's.
      t.equal(out.length, 1001000, `pty ${i}: length`);
      t.ok(out.subarray(0, 1000000).every((b) => b === o) && out.subarray(1000000).every((b) => b === e), `pty ${i}: only its own bytes`);
    } else {
      t.equal(out.length, 1000000, `pipes ${i}: stdout length`);
      t.ok(
        out.every((b) => b === o),
        `pipes ${i}: only its own stdout bytes`,
      );
      t.equal(err.length, 1000, `pipes ${i}: stderr length`);
      t.ok(
        err.every((b) => b === e),
        `pipes ${i}: only its own stderr bytes`,
      );
    }
  }
});
