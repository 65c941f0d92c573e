// Root-only: drives an in-process agent over its unix socket through whole container lifecycles on
// a busybox rootfs, then checks nothing was left behind (mounts, cgroups, processes, zombies).
import fs from 'node:fs';
import t from 'tap';
import { create, toBinary } from '@bufbuild/protobuf';
import { CreateContainerRequestSchema as CreateContainerRequest1xSchema } from '../../protos/gen/compat_1x_pb.js';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { addMount, busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `t${process.pid}`;
const SIGKILL = 9;
const SIGUSR1 = 10;
const SIGTERM = 15;

t.test('container lifecycle over the agent socket', { skip }, async (t) => {
  const h = await AgentHarness.start();
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await h.stop();
  });
  const exec = (containerId: string, execId: string, args: string[], terminal = false) =>
    h.call('execProcess', {
      containerId,
      execId,
      process: { Args: args, Env: ['PATH=/bin:/sbin:/usr/bin'], Cwd: '/', Terminal: terminal, User: { UID: 0, GID: 0 } },
    });

  await t.test('create + start: hostname, pid 1, uid, memory limit, caps', async (t) => {
    const id = `${tag}-info`;
    const script =
      'echo host=$(hostname); echo pid=$$; echo uid=$(id -u); echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); grep CapEff /proc/self/status';
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', script], { hostname: 'box1', memoryLimit: 64n << 20n }) });
    await h.call('startContainer', { containerId: id });
    const out = await h.readAll('readStdout', id);
    t.match(out, /host=box1\n/);
    t.match(out, /pid=1\n/);
    t.match(out, /uid=0\n/);
    t.match(out, new RegExp(`mem=${64 << 20}\n`));
    t.match(out, /CapEff:\s+[0-9a-f]+\n/);
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 0);
    t.match(await h.code('readStdout', { containerId: id, execId: '', len: 10 }), /^NOT_FOUND/, 'process forgotten after WaitProcess');
    await h.call('removeContainer', { containerId: id });
    t.notOk(fs.existsSync(`${h.stateRoot}/${id}`), 'bundle removed');
  });

  await t.test('user, groups, capabilities and no_new_privs reach the process', async (t) => {
    const id = `${tag}-user`;
    const spec = busyboxSpec(rootfs, ['sh', '-c', 'id; grep -E "^(Cap|NoNewPrivs)" /proc/self/status; ulimit -n']);
    spec.Process!.User = { UID: 1000, GID: 1000, AdditionalGids: [20, 30] };
    // A non-root uid keeps capabilities across execve only through the ambient set.
    spec.Process!.Capabilities = {
      Bounding: ['CAP_KILL', 'CAP_NET_BIND_SERVICE'],
      Effective: ['CAP_KILL'],
      Permitted: ['CAP_KILL'],
      Inheritable: ['CAP_KILL'],
      Ambient: ['CAP_KILL'],
    };
    spec.Process!.NoNewPrivileges = true;
    spec.Process!.Rlimits = [{ Type: 'RLIMIT_NOFILE', Soft: 123n, Hard: 456n }];
    await h.call('createContainer', { containerId: id, OCI: spec });
    await h.call('startContainer', { containerId: id });
    const out = await h.readAll('readStdout', id);
    t.match(out, /uid=1000 gid=1000 groups=20,30/);
    t.match(out, /CapEff:\s+0000000000000020\n/);
    t.match(out, /CapPrm:\s+0000000000000020\n/);
    t.match(out, /CapBnd:\s+0000000000000420\n/);
    t.match(out, /CapAmb:\s+0000000000000020\n/);
    t.match(out, /NoNewPrivs:\s+1\n/);
    t.match(out, /\n123\n/);
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 0);
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('spec features: readonly root, binds, masked/readonly paths, sysctl, devices, cwd, env, storages', async (t) => {
    const id = `${tag}-spec`;
    const data = `${h.dir}/host-data`;
    fs.mkdirSync(data, { recursive: true });
    fs.writeFileSync(`${data}/file`, 'from-host\n');
    const script = [
      'touch /rootfile 2>/dev/null && echo root=rw || echo root=ro',
      'cat /data/file; touch /data/new 2>/dev/null && echo data=rw || echo data=ro',
      'echo scratch > /scratch/x && echo scratch=rw',
      'echo timer_list=$(wc -c < /proc/timer_list)',
      'echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo procsys=rw || echo procsys=ro',
      'echo msgmax=$(cat /proc/sys/kernel/msgmax)',
      'ls -l /dev/mydev | cut -c1',
      'echo cwd=$(pwd) foo=$FOO',
      'mount | grep -c " /eph "',
    ].join('; ');
    const spec = busyboxSpec(rootfs, ['sh', '-c', script]);
    spec.Root!.Readonly = true;
    spec.Process!.Cwd = '/tmp';
    spec.Process!.Env = ['PATH=/bin', 'FOO=bar'];
    addMount(spec, { destination: '/data', type: 'bind', source: data, options: ['rbind', 'ro'] });
    addMount(spec, { destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] });
    addMount(spec, { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: [] });
    addMount(spec, { destination: '/eph', type: 'bind', source: `${h.dir}/eph-storage`, options: ['rbind'] });
    spec.Linux!.Sysctl = { 'kernel.msgmax': '4242' };
    // /proc/timer_list has content on every kernel (/proc/kcore may not exist); masked, it reads empty.
    (spec.Linux!.MaskedPaths as string[]).push('/proc/timer_list');
    (spec.Linux!.Devices as object[]) = [{ Path: '/dev/mydev', Type: 'c', Major: 1n, Minor: 3n, FileMode: 0o666 }];
    await h.call('createContainer', {
      containerId: id,
      OCI: spec,
      storages: [{ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', mountPoint: `${h.dir}/eph-storage`, options: ['size=1m'] }],
    });
    t.ok(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${h.dir}/eph-storage `), 'container storage mounted');
    await h.call('startContainer', { containerId: id });
    const out = await h.readAll('readStdout', id);
    t.same(out.trim().split('\n'), [
      'root=ro',
      'from-host',
      'data=ro',
      'scratch=rw',
      'timer_list=0',
      'procsys=ro',
      'msgmax=4242',
      'c',
      'cwd=/tmp foo=bar',
      '1',
    ]);
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 0);
    await h.call('removeContainer', { containerId: id });
    t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${h.dir}/eph-storage `), 'container storage released');
    t.notOk(fs.existsSync(`${data}/new`));
  });

  await t.test('exec before and after start shares the pid namespace; signals; exit codes', async (t) => {
    const id = `${tag}-exec`;
    await h.call('createContainer', {
      containerId: id,
      OCI: busyboxSpec(rootfs, ['sh', '-c', 'trap "echo got-usr1; exit 7" USR1; echo up; while true; do sleep 0.05; done']),
    });
    // Before start the init is blocked; an exec still sees the container's root and namespaces.
    await exec(id, 'pre', ['sh', '-c', 'echo pre-host=$(hostname)']);
    t.match(await h.readAll('readStdout', id, 'pre'), /pre-host=ctr/);
    t.equal((await h.call('waitProcess', { containerId: id, execId: 'pre' })).status, 0);
    await h.call('startContainer', { containerId: id });
    t.match(await h.code('startContainer', { containerId: id }), /^FAILED_PRECONDITION/, 'second start refused');
    const first = await h.call('readStdout', { containerId: id, execId: '', len: 100 });
    t.equal(Buffer.from(first.data).toString(), 'up\n');
    await exec(id, 'ps', ['sh', '-c', 'echo self=$$; ps -o pid,args | grep -c "while true" ; exit 3']);
    const ps = await h.readAll('readStdout', id, 'ps');
    t.match(ps, /self=\d+\n/);
    t.not(ps.match(/self=(\d+)/)?.[1], '1', 'exec is not pid 1');
    t.match(ps, /^[1-9]/m, 'exec sees the init in the same pid namespace');
    t.equal((await h.call('waitProcess', { containerId: id, execId: 'ps' })).status, 3);
    t.match(
      await h.code('execProcess', { containerId: id, execId: 'ps2', process: { Args: ['no-such-binary'], Cwd: '/' } }),
      /^NOT_FOUND: .*no-such-binary/,
      'missing executable fails ExecProcess',
    );
    await exec(id, 'sleeper', ['sleep', '1000']);
    await h.call('signalProcess', { containerId: id, execId: 'sleeper', signal: SIGKILL });
    t.equal((await h.call('waitProcess', { containerId: id, execId: 'sleeper' })).status, 128 + SIGKILL);
    await exec(id, 'term', ['sleep', '1000']);
    await h.call('signalProcess', { containerId: id, execId: 'term', signal: SIGTERM });
    t.equal((await h.call('waitProcess', { containerId: id, execId: 'term' })).status, 128 + SIGTERM, 'SIGTERM to a non-init process stays SIGTERM');
    await h.call('signalProcess', { containerId: id, execId: '', signal: SIGUSR1 });
    t.match(await h.readAll('readStdout', id), /got-usr1/);
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 7);
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('tty exec: controlling terminal, resize', async (t) => {
    const id = `${tag}-tty`;
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sleep', '1000']) });
    await h.call('startContainer', { containerId: id });
    await exec(id, 'tty', ['sh', '-c', 'read x; stty size; [ -t 0 ] && echo isatty; echo pid=$$ sid=$(cut -d" " -f6 /proc/$$/stat)'], true);
    await h.call('ttyWinResize', { containerId: id, execId: 'tty', row: 33, column: 99 });
    await h.call('writeStdin', { containerId: id, execId: 'tty', data: Buffer.from('go\n') });
    const out = await h.readAll('readStdout', id, 'tty');
    t.match(out, /33 99\r?\n/, 'stty sees the new size');
    t.match(out, /isatty/, 'stdin is a tty');
    const [, pid, sid] = /pid=(\d+) sid=(\d+)/.exec(out) ?? [];
    t.equal(sid, pid, 'the exec leads its own session (setsid before TIOCSCTTY)');
    t.equal((await h.call('waitProcess', { containerId: id, execId: 'tty' })).status, 0);
    t.match(await h.code('ttyWinResize', { containerId: id, execId: '', row: 1, column: 1 }), /^UNAVAILABLE: no tty/);
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('stdin reaches the process; output of an exited process is delivered in full', async (t) => {
    const id = `${tag}-stdio`;
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', 'cat; head -c 300000 /dev/zero | tr "\\0" x; echo done >&2']) });
    await h.call('startContainer', { containerId: id });
    await h.call('writeStdin', { containerId: id, execId: '', data: Buffer.from('hello\n') });
    await h.call('closeStdin', { containerId: id, execId: '' });
    const status = await waitExited(h, id);
    void status;
    const out = await h.readAll('readStdout', id);
    t.equal(out.length, 6 + 300000);
    t.ok(out.startsWith('hello\n'));
    t.equal(await h.readAll('readStderr', id), 'done\n');
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 0);
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('pause/resume freezes the container; update and stats', async (t) => {
    const id = `${tag}-pause`;
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', 'while :; do :; done'], { memoryLimit: 64n << 20n }) });
    await h.call('startContainer', { containerId: id });
    await h.call('pauseContainer', { containerId: id });
    const cpu = async () => (await h.call('statsContainer', { containerId: id })).cgroupStats?.cpuStats?.cpuUsage?.totalUsage ?? -1n;
    const a = await cpu();
    await new Promise((r) => setTimeout(r, 200));
    const b = await cpu();
    t.equal(b, a, 'no cpu time while frozen');
    await h.call('resumeContainer', { containerId: id });
    await new Promise((r) => setTimeout(r, 200));
    t.ok((await cpu()) > b, 'cpu time again after resume');
    await h.call('updateContainer', { containerId: id, resources: { Memory: { Limit: 32n << 20n } } });
    const stats = await h.call('statsContainer', { containerId: id });
    t.equal(stats.cgroupStats?.memoryStats?.usage?.limit, 32n << 20n, 'new memory limit in stats');
    const list = await h.call('listProcesses', { containerId: id, format: 'json' });
    t.equal((JSON.parse(Buffer.from(list.processList).toString()) as number[]).length, 1);
    const table = Buffer.from((await h.call('listProcesses', { containerId: id, format: 'table', args: ['-o', 'pid,args'] })).processList).toString();
    t.match(table, /^\s*PID COMMAND\n\s*\d+ sh -c while :; do :; done\n$/, "ps table with only the container's process");
    await h.call('removeContainer', { containerId: id, timeout: 5 });
  });

  await t.test('OOM kill is reported by GetOOMEvent', async (t) => {
    const id = `${tag}-oom`;
    const event = h.call('getOOMEvent', {});
    await h.call('createContainer', {
      containerId: id,
      OCI: busyboxSpec(rootfs, ['sh', '-c', 'x=y; while :; do x="$x$x"; done'], { memoryLimit: 16n << 20n }),
    });
    await h.call('startContainer', { containerId: id });
    t.equal((await event).containerId, id);
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 128 + SIGKILL);
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('20 containers in parallel', async (t) => {
    const ids = Array.from({ length: 20 }, (_, i) => `${tag}-par${i}`);
    const outs = await Promise.all(
      ids.map(async (id, i) => {
        await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', `echo n=${i} pid=$$`]) });
        await h.call('startContainer', { containerId: id });
        const out = await h.readAll('readStdout', id);
        const { status } = await h.call('waitProcess', { containerId: id, execId: '' });
        await h.call('removeContainer', { containerId: id });
        return `${out.trim()} status=${status}`;
      }),
    );
    t.same(
      outs,
      ids.map((_, i) => `n=${i} pid=1 status=0`),
    );
  });

  await t.test("kata 1.x agent_pidns: the container shares the agent's pid namespace", async (t) => {
    const id = `${tag}-agentns`;
    const spec = busyboxSpec(rootfs, ['sh', '-c', 'echo pid=$$']);
    (spec.Linux!.Namespaces as { Type: string }[]) = spec.Linux!.Namespaces!.filter((n) => (n as { Type: string }).Type !== 'pid') as never;
    const req = create(CreateContainerRequest1xSchema, { containerId: id, OCI: spec as never, agentPidns: true });
    await h.callRaw('CreateContainer', toBinary(CreateContainerRequest1xSchema, req));
    await h.call('startContainer', { containerId: id });
    const pid = Number(/pid=(\d+)/.exec(await h.readAll('readStdout', id))?.[1]);
    t.ok(pid > 1, `pid ${pid} as the agent sees it`);
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 0);
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('root relative to the bundle survives RemoveContainer', async (t) => {
    const id = `${tag}-relroot`;
    buildBusyboxRootfs(`${h.stateRoot}/${id}`);
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec('rootfs', ['sh', '-c', 'echo inside > /root/mark']) });
    await h.call('startContainer', { containerId: id });
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 0);
    await h.call('removeContainer', { containerId: id });
    t.equal(fs.readFileSync(`${h.stateRoot}/${id}/rootfs/root/mark`, 'utf8'), 'inside\n', 'the container wrote into its bundle rootfs');
    t.ok(fs.existsSync(`${h.stateRoot}/${id}/rootfs/bin/busybox`), 'the rootfs was not deleted with the bundle');
    t.notOk(fs.existsSync(`${h.stateRoot}/${id}/config.json`));
    fs.rmSync(`${h.stateRoot}/${id}`, { recursive: true, force: true });
  });

  await t.test('SIGTERM to an init without a handler stops it', async (t) => {
    const id = `${tag}-term`;
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sleep', '1000']) });
    await h.call('startContainer', { containerId: id });
    await h.call('signalProcess', { containerId: id, execId: '', signal: SIGTERM });
    t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 128 + SIGKILL);
    await h.call('removeContainer', { containerId: id });
  });

  await t.test('remove kills a running container; RemoveContainer with timeout', async (t) => {
    const id = `${tag}-rm`;
    await h.call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', 'sleep 1000 & sleep 1000']) });
    await h.call('startContainer', { containerId: id });
    await h.call('removeContainer', { containerId: id, timeout: 10 });
    t.match(await h.code('startContainer', { containerId: id }), /^NOT_FOUND/);
    const created = `${tag}-rm2`;
    await h.call('createContainer', { containerId: created, OCI: busyboxSpec(rootfs, ['true']) });
    await h.call('removeContainer', { containerId: created });
    t.notOk(fs.existsSync(`${h.stateRoot}/${created}`), 'never-started container removed');
  });

  await h.stop();
  stopped = true;
  t.same(leftovers(tag, h.dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
});

async function waitExited(h: AgentHarness, id: string): Promise<void> {
  // Wait for the exit without WaitProcess (which would forget the process): poll the pid list.
  for (;;) {
    const list = await h.call('listProcesses', { containerId: id, format: 'json' });
    if ((JSON.parse(Buffer.from(list.processList).toString()) as number[]).length === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('without a helper pool (every helper spawned on request)', { skip }, async (t) => {
  const h = await AgentHarness.start({ helperPoolSize: 0 });
  t.teardown(() => h.stop());
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  const id = `${tag}-nopool`;
  await h.call('createContainer', {
    containerId: id,
    OCI: busyboxSpec(rootfs, ['sh', '-c', 'read x; echo got=$x pid=$$ mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)'], { memoryLimit: 32n << 20n }),
  });
  await h.call('startContainer', { containerId: id });
  await h.call('writeStdin', { containerId: id, execId: '', data: Buffer.from('hi\n') });
  t.equal(await h.readAll('readStdout', id), `got=hi pid=1 mem=${32 << 20}\n`);
  t.equal((await h.call('waitProcess', { containerId: id, execId: '' })).status, 0);
  await h.call('removeContainer', { containerId: id });
});
