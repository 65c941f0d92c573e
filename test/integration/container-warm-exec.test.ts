// Root-only: warm exec helpers. A container's first exec starts a helper waiting inside its pid
// namespace; the next exec becomes that very process (same pid), with its own stdio or tty; the cap
// holds across containers; the helper goes when the init exits or the container is removed.
import fs from 'node:fs';
import t from 'tap';
import { libc } from '../../agent/src/linux/index.js';
import { WarmExecHelpers } from '../../agent/src/process/warm-exec-helpers.js';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `t${process.pid}w`;
const SIGKILL = 9;

/** Waits for a state the agent reaches in the background (no time limit here: tap's test timeout is the bound). */
async function until(f: () => boolean): Promise<void> {
  while (!f()) await new Promise((r) => setTimeout(r, 10));
}

function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function start(max: number, warm = new WarmExecHelpers(libc(), max)) {
  const h = await AgentHarness.start({ warmExec: warm });
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  const exec = (containerId: string, execId: string, args: string[], terminal = false) =>
    h.call('execProcess', {
      containerId,
      execId,
      process: { Args: args, Env: ['PATH=/bin:/sbin:/usr/bin'], Cwd: '/', Terminal: terminal, User: { UID: 0, GID: 0 } },
    });
  const run = async (id: string, execId: string, args: string[], terminal = false) => {
    await exec(id, execId, args, terminal);
    const out = await h.readAll('readStdout', id, execId);
    const { status } = await h.call('waitProcess', { containerId: id, execId });
    return { out, status };
  };
  const container = async (id: string, args = ['sleep', '1000']) => {
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, args) });
    await h.call('startContainer', { containerId: id });
  };
  return { warm, h, exec, run, container };
}

t.test('the second exec is the warm helper started after the first', { skip }, async (t) => {
  const { warm, h, exec, run, container } = await start(4);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const id = `${tag}-two`;
  await container(id);

  t.same(await run(id, 'e1', ['echo', 'one']), { out: 'one\n', status: 0 }, 'first exec (fresh helper)');
  t.equal(warm.stats.taken, 0);
  await until(() => warm.pidOf(id) !== undefined);
  const p1 = warm.pidOf(id)!;
  const nspid = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${p1}/status`, 'utf8'))![1].split(/\s+/);
  t.equal(nspid.length, 2, "the warm helper waits inside a nested (the container's) pid namespace");

  await exec(id, 'e2', ['sleep', '1000']);
  t.equal(warm.stats.taken, 1, 'counted as served by a warm helper');
  t.equal(fs.readFileSync(`/proc/${p1}/cmdline`, 'utf8'), 'sleep\u00001000\u0000', "the exec runs as the warm helper's pid");
  await until(() => warm.pidOf(id) !== undefined);
  const p2 = warm.pidOf(id)!;
  t.not(p2, p1, 'a new helper waits for the next exec');
  await h.call('signalProcess', { containerId: id, execId: 'e2', signal: SIGKILL });
  t.equal((await h.call('waitProcess', { containerId: id, execId: 'e2' })).status, 128 + SIGKILL);

  // A tty exec through a warm helper: the pty it opens inside the container becomes its controlling tty.
  await exec(id, 'tty', ['sh', '-c', 'read x; stty size; [ -t 0 ] && echo isatty; echo pid=$$ sid=$(cut -d" " -f6 /proc/$$/stat)'], true);
  t.equal(warm.stats.taken, 2);
  await h.call('ttyWinResize', { containerId: id, execId: 'tty', row: 21, column: 77 });
  await h.call('writeStdin', { containerId: id, execId: 'tty', data: Buffer.from('go\n') });
  const out = await h.readAll('readStdout', id, 'tty');
  t.match(out, /21 77\r?\n/, 'stty sees the size');
  t.match(out, /isatty/);
  const [, pid, sid] = /pid=(\d+) sid=(\d+)/.exec(out) ?? [];
  t.equal(sid, pid, 'the exec leads its own session');
  t.equal((await h.call('waitProcess', { containerId: id, execId: 'tty' })).status, 0);

  // Piped stdio through a warm helper: stdin in, stdout and stderr apart, nothing lost.
  await until(() => warm.pidOf(id) !== undefined);
  await exec(id, 'io', ['sh', '-c', 'read x; echo out=$x; echo err=$x >&2; seq 1 20000']);
  t.equal(warm.stats.taken, 3);
  await h.call('writeStdin', { containerId: id, execId: 'io', data: Buffer.from('hello\n') });
  const [stdout, stderr] = await Promise.all([h.readAll('readStdout', id, 'io'), h.readAll('readStderr', id, 'io')]);
  const seq = Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join('');
  t.equal(stdout, `out=hello\n${seq}`);
  t.equal(stderr, 'err=hello\n');
  t.equal((await h.call('waitProcess', { containerId: id, execId: 'io' })).status, 0);

  await until(() => warm.pidOf(id) !== undefined);
  const last = warm.pidOf(id)!;
  await h.call('removeContainer', { containerId: id });
  t.same(warm.waiting, [], 'RemoveContainer drops the warm helper');
  t.notOk(running(last), 'and its process is gone (reaped, not a zombie)');

  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});

/** Kills the helper it hands out, as a process inside the container could right after take(). */
class KilledOnTake extends WarmExecHelpers {
  killed: number[] = [];
  override take(key: string) {
    const h = super.take(key);
    if (h) {
      h.child.kill('SIGKILL');
      this.killed.push(h.pid);
    }
    return h;
  }
}

t.test('a warm helper killed before it took the exec: the exec runs in a fresh helper', { skip }, async (t) => {
  const warm = new KilledOnTake(libc(), 4);
  const { h, run, container } = await start(4, warm);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const id = `${tag}-killed`;
  await container(id);
  t.same(await run(id, 'e1', ['echo', 'one']), { out: 'one\n', status: 0 }, 'first exec (fresh helper)');
  await until(() => warm.pidOf(id) !== undefined);
  t.same(await run(id, 'e2', ['sh', '-c', 'echo two; echo err >&2; exit 3']), { out: 'two\n', status: 3 }, 'second exec answered, output whole');
  t.equal(warm.killed.length, 1, 'its warm helper was killed after take()');
  t.notOk(running(warm.killed[0]), 'the killed helper is reaped');
  await h.call('removeContainer', { containerId: id });
  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});

t.test('the cap on warm helpers holds across containers', { skip }, async (t) => {
  const { warm, h, run, container } = await start(1);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const a = `${tag}-a`;
  const b = `${tag}-b`;
  await container(a);
  await container(b);
  t.same(await run(a, 'ex', ['true']), { out: '', status: 0 });
  await until(() => warm.pidOf(a) !== undefined);
  t.same(await run(b, 'ex', ['echo', 'b']), { out: 'b\n', status: 0 }, 'an exec without a warm helper still works');
  await until(() => warm.stats.refusedAtCap === 1);
  t.same(warm.waiting, [a], 'no second warm helper at cap 1');
  t.same(await run(b, 'ey', ['echo', 'b2']), { out: 'b2\n', status: 0 });
  t.equal(warm.stats.taken, 0, 'b never got one');

  await h.call('removeContainer', { containerId: a });
  t.same(warm.waiting, []);
  t.same(await run(b, 'ez', ['true']), { out: '', status: 0 });
  await until(() => warm.pidOf(b) !== undefined);
  t.same(warm.waiting, [b], 'the freed slot goes to the next container that execs');
  t.same(await run(b, 'ew', ['echo', 'warm']), { out: 'warm\n', status: 0 });
  t.equal(warm.stats.taken, 1);

  await h.call('removeContainer', { containerId: b });
  t.same(warm.waiting, []);
  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});

t.test("the warm helper goes when the container's init exits", { skip }, async (t) => {
  const { warm, h, run, container } = await start(4);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const id = `${tag}-exit`;
  await container(id);
  t.same(await run(id, 'ex', ['true']), { out: '', status: 0 });
  await until(() => warm.pidOf(id) !== undefined);
  const p = warm.pidOf(id)!;
  await h.call('signalProcess', { containerId: id, execId: '', signal: SIGKILL });
  t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 128 + SIGKILL);
  await until(() => warm.waiting.length === 0);
  await until(() => !running(p));
  t.pass('no warm helper outlives the init');
  t.match(
    await h.code('execProcess', { containerId: id, execId: 'late', process: { Args: ['true'], Cwd: '/', User: { UID: 0, GID: 0 } } }),
    /^FAILED_PRECONDITION/,
    'exec into a stopped container is refused',
  );
  t.equal(warm.stats.taken, 0);
  await h.call('removeContainer', { containerId: id });
  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});
