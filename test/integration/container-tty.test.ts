// Root-only: a process with Terminal true gets a pty of the container's own devpts (the one mounted
// newinstance at its /dev/pts), so ttyname() works in there. Drives the `kubectl exec -it` sequence
// (TtyWinResize, WriteStdin/ReadStdout, TtyWinResize, CloseStdin, WaitProcess) against a tty init
// and tty execs, through each kind of helper: pooled and fresh for the init, spawned and warm for execs.
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { libc } from '../../agent/src/linux/index.js';
import { WarmExecHelpers } from '../../agent/src/process/warm-exec-helpers.js';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { leftovers } from '../support/leftovers.js';
import { checkReadData, isEndOfStream } from '../support/end-of-stream.js';
import { busyboxSpec } from '../support/oci-spec.js';

const skip = containerTestSkipReason();
const tag = `t${process.pid}pty`;
const PTY_MAJOR = 136;

// Waits for the first line, reports what the terminal is, then waits for a second line and ends with
// output large enough to need the agent's drain after exit. `set -- $(cat /proc/$$/stat)`: $5 pgrp,
// $6 session, $7 tty_nr, $8 tpgid (the terminal's foreground group).
const script = [
  'read x',
  'echo "got $x"',
  'tty',
  'echo pts: $(ls /dev/pts)',
  'stty size',
  'set -- $(cat /proc/$$/stat)',
  'echo "pid=$$ pgrp=$5 sid=$6 tty_nr=$7 tpgid=$8"',
  'echo fds:',
  'ls -1 /proc/$$/fd',
  'echo endfds',
  'read y',
  'echo "got $y"',
  'stty size',
  'head -c 100000 /dev/zero | tr "\\0" a',
  'echo',
  'echo END',
].join('\n');

async function until(f: () => boolean): Promise<void> {
  while (!f()) await new Promise((r) => setTimeout(r, 10));
}

/** Reads ReadStdout until `marker` has arrived (the process waits for input after it). */
async function readUntil(h: AgentHarness, containerId: string, execId: string, marker: string): Promise<string> {
  let out = '';
  while (!out.includes(marker)) {
    let data: Uint8Array;
    try {
      data = (await h.call('readStdout', { containerId, execId, len: 32 * 1024 })).data;
    } catch (err) {
      if (isEndOfStream(err)) throw new Error(`end of stream before "${marker}": ${JSON.stringify(out)}`, { cause: err });
      throw err;
    }
    out += Buffer.from(checkReadData(data, `readStdout ${execId}`)).toString();
  }
  return out;
}

/** The `kubectl exec -it` sequence against a process running `script`; checks what it printed. */
async function ttySession(t: Test, h: AgentHarness, containerId: string, execId: string): Promise<void> {
  await h.call('ttyWinResize', { containerId, execId, row: 33, column: 99 });
  await h.call('writeStdin', { containerId, execId, data: Buffer.from('hello\n') });
  const first = await readUntil(h, containerId, execId, 'endfds\r\n');
  await h.call('ttyWinResize', { containerId, execId, row: 40, column: 120 });
  await h.call('writeStdin', { containerId, execId, data: Buffer.from('again\n') });
  const out = first + (await h.readAll('readStdout', containerId, execId));
  await h.call('closeStdin', { containerId, execId });
  t.equal((await h.call('waitProcess', { containerId, execId })).status, 0, 'exit status 0');

  t.match(out, /got hello\r\n/, 'WriteStdin reaches the process');
  t.notMatch(out, /not a tty/, 'ttyname() finds its terminal');
  const tty = /^(\/dev\/pts\/(\d+))\r$/m.exec(out);
  t.ok(tty, `tty prints a /dev/pts path: ${JSON.stringify(out.slice(0, 300))}`);
  const n = Number(tty?.[2]);
  const pts = /^pts: (.*)\r$/m.exec(out)?.[1].split(' ') ?? [];
  t.same(pts, [String(n), 'ptmx'], `ls /dev/pts in the container shows pty ${n}, in an instance of its own`);
  t.match(out, /^33 99\r$/m, 'stty sees the first size');
  const ids = /pid=(\d+) pgrp=(\d+) sid=(\d+) tty_nr=(\d+) tpgid=(\d+)/.exec(out);
  t.ok(ids, 'stat fields printed');
  const [, pid, pgrp, sid, ttyNr, tpgid] = (ids ?? []).map(Number);
  t.equal(sid, pid, 'the process leads its own session');
  t.equal(pgrp, pid, 'and its own process group');
  t.equal(ttyNr, PTY_MAJOR * 256 + n, `its controlling terminal is that pty (136:${n})`);
  t.equal(tpgid, pid, "its group is the terminal's foreground group (job control)");
  const fds = /fds:\r\n([^]*?)endfds/.exec(out)?.[1].trim().split(/\r\n/);
  t.same(fds, ['0', '1', '2'], 'only the terminal as 0-2: no master, no socket to the agent');
  t.match(out, /got again\r\n40 120\r\n/, 'the second TtyWinResize is seen too');
  const tail = /\r\n(a+)\r\nEND\r\n$/.exec(out);
  t.equal(tail?.[1].length, 100000, 'all output after the last read arrives before end of stream');
}

t.test('tty init and tty execs: pooled init helper, spawned and warm exec helpers', { skip }, async (t) => {
  const warm = new WarmExecHelpers(libc(), 2);
  // helperPoolSize 1: the pool has filled by the first CreateContainer, which takes that helper.
  const h = await AgentHarness.start({ warmExec: warm, helperPoolSize: 1 });
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });

  await t.test('init with Terminal true (pooled helper)', async (t) => {
    const id = `${tag}-init`;
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', script], { terminal: true }) });
    await h.call('startContainer', { containerId: id });
    await ttySession(t, h, id, '');
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('execs with Terminal true', async (t) => {
    const id = `${tag}-exec`;
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sleep', '1000']) });
    await h.call('startContainer', { containerId: id });
    const exec = (execId: string) =>
      h.call('execProcess', {
        containerId: id,
        execId,
        process: { Args: ['sh', '-c', script], Env: ['PATH=/bin:/sbin:/usr/bin'], Cwd: '/', Terminal: true, User: { UID: 0, GID: 0 } },
      });
    await exec('spawned');
    t.equal(warm.stats.taken, 0, 'the first exec spawns its helper');
    await t.test('spawned exec helper', (t) => ttySession(t, h, id, 'spawned'));
    await until(() => warm.pidOf(id) !== undefined);
    await exec('warm');
    t.equal(warm.stats.taken, 1, 'the second exec is served by the warm helper');
    await t.test('warm exec helper', (t) => ttySession(t, h, id, 'warm'));
    await h.call('removeContainer', { containerId: id });
  });

  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});

t.test('tty init through a freshly spawned helper; no devpts in the container; the agent keeps no fd of either', { skip }, async (t) => {
  // No pool and no warm helpers: nothing opens fds in the background, so the agent's count must come back.
  const h = await AgentHarness.start({ warmExec: new WarmExecHelpers(libc(), 0), helperPoolSize: 0 });
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const fdCount = () => fs.readdirSync('/proc/self/fd').length;
  const id = `${tag}-fresh`;
  const before = fdCount();

  const bare = busyboxSpec(rootfs, ['sh', '-c', script], { terminal: true });
  bare.Mounts = bare.Mounts!.filter((m) => m.destination !== '/dev/pts');
  t.match(
    await h.code('createContainer', { containerId: `${tag}-nopts`, OCI: bare }),
    /^INTERNAL: CreateContainer .*-nopts: terminal: cannot open a pty from the container's \/dev\/ptmx \(a devpts at \/dev\/pts\): posix_openpt\(.*\): ENOENT/,
    'a terminal without a devpts in the container fails, saying so',
  );
  await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', script], { terminal: true }) });
  await h.call('startContainer', { containerId: id });
  await ttySession(t, h, id, '');
  await h.call('removeContainer', { containerId: id });
  // libuv closes handle fds on the next loop turn.
  await new Promise((r) => setImmediate(r));
  t.equal(fdCount(), before, 'fds back to the count before CreateContainer');
  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
