import t from 'tap';
import { RecordingLibc } from '../support/recording-libc.js';
import { RecordingLibseccomp } from '../support/recording-libseccomp.js';
import { applyAndExec, resolveExecutable } from '../../agent/src/container/init/process-settings.js';
import type { ProcessPlan } from '../../agent/src/container/init/plan.js';
import {
  AT_FDCWD,
  O_CLOEXEC,
  O_WRONLY,
  PR_CAPBSET_DROP,
  PR_CAP_AMBIENT,
  PR_SET_KEEPCAPS,
  PR_SET_NO_NEW_PRIVS,
  SIGPIPE,
  SIGXFSZ,
  TIOCSCTTY,
} from '../../agent/src/linux/libc.js';

const base: ProcessPlan = {
  args: ['/bin/sh', '-c', 'true'],
  env: ['PATH=/bin'],
  cwd: '/work',
  uid: 1000,
  gid: 100,
  additionalGids: [5, 6],
  terminal: true,
  caps: { bounding: String(1n << 5n), effective: String(1n << 5n), permitted: String(1n << 5n), inheritable: '0', ambient: [5] },
  rlimits: [{ resource: 7, soft: '10', hard: '20' }],
  noNewPrivileges: true,
};

t.test('process settings are applied in the order the kernel needs, execve last', async (t) => {
  const libc = new RecordingLibc();
  t.throws(() => applyAndExec(libc, base, '/bin/sh'), /^execve/);
  const names = libc.calls.map((c) => c.name);
  const idx = (n: string) => names.indexOf(n as never);
  t.equal(names[0], 'setsid');
  t.same(libc.calls[1], { name: 'ioctlInt', args: [0, TIOCSCTTY, 0] }, 'controlling terminal right after setsid');
  t.same(libc.calls.find((c) => c.name === 'setrlimit')?.args, [7, 10n, 20n]);
  const drops = libc.calls.filter((c) => c.name === 'prctl' && c.args[0] === PR_CAPBSET_DROP).map((c) => c.args[1]);
  t.notOk(drops.includes(5), 'CAP_KILL stays in the bounding set');
  t.ok(drops.includes(21), 'CAP_SYS_ADMIN dropped from it');
  const keepcaps = libc.calls.findIndex((c) => c.name === 'prctl' && c.args[0] === PR_SET_KEEPCAPS && c.args[1] === 1);
  t.ok(keepcaps < idx('setgroups') && idx('setgroups') < idx('setresgid') && idx('setresgid') < idx('setresuid'), 'keep-caps, groups, gid, then uid');
  t.ok(idx('setresuid') < idx('capset'), 'capset after the uid change');
  t.same(libc.calls.find((c) => c.name === 'setgroups')?.args, [[5, 6]]);
  const ambient = libc.calls.filter((c) => c.name === 'prctl' && c.args[0] === PR_CAP_AMBIENT).map((c) => c.args.slice(1));
  t.same(
    ambient,
    [
      [4, undefined],
      [2, 5],
    ],
    'ambient cleared, then raised',
  );
  t.ok(libc.calls.some((c) => c.name === 'prctl' && c.args[0] === PR_SET_NO_NEW_PRIVS));
  t.same(
    libc.calls.filter((c) => c.name === 'resetSignal').map((c) => c.args[0]),
    [SIGPIPE, SIGXFSZ],
  );
  t.same(libc.calls.find((c) => c.name === 'chdir')?.args, ['/work']);
  t.ok(idx('closeRange') < idx('execve'));
  t.same(libc.calls.at(-1), { name: 'execve', args: ['/bin/sh', base.args, base.env] });
});

t.test('oom_score_adj: one write to /proc/self/oom_score_adj before the credentials change; a refusal stops the exec', async (t) => {
  const libc = new RecordingLibc({ openat: () => 77 });
  t.throws(() => applyAndExec(libc, { ...base, oomScoreAdj: -500 }, '/bin/sh'), /^execve/);
  const names = libc.calls.map((c) => c.name);
  const open = names.indexOf('openat');
  t.same(libc.calls[open].args, [AT_FDCWD, '/proc/self/oom_score_adj', O_WRONLY | O_CLOEXEC, 0]);
  t.same(libc.calls[open + 1], { name: 'write', args: [77, Buffer.from('-500')] });
  t.same(libc.calls[open + 2], { name: 'close', args: [77] });
  t.ok(open < names.indexOf('setresuid'), 'while still root: lowering it needs CAP_SYS_RESOURCE');

  const refused = new RecordingLibc().fail('write', 13);
  t.throws(() => applyAndExec(refused, { ...base, oomScoreAdj: -1000 }, '/bin/sh'), {
    code: 'EACCES',
    message: 'write(/proc/self/oom_score_adj = "-1000"): EACCES (permission denied)',
  });
  t.notOk(
    refused.calls.some((c) => c.name === 'execve'),
    'never execs with the setting not applied',
  );
  t.ok(
    refused.calls.some((c) => c.name === 'close'),
    'the /proc fd is closed on failure',
  );
});

t.test('no caps in the spec: root keeps its sets, nothing is dropped', async (t) => {
  const libc = new RecordingLibc();
  t.throws(() => applyAndExec(libc, { ...base, caps: undefined, terminal: false, uid: 0, gid: 0, additionalGids: [] }, '/bin/sh'));
  t.notOk(libc.calls.some((c) => c.name === 'capset' || c.name === 'ioctlInt'));
  t.same(libc.calls.find((c) => c.name === 'setgroups')?.args, [[]], 'supplementary groups always reset');
});

t.test('executables are looked up like execvp', async (t) => {
  t.equal(resolveExecutable({ ...base, args: ['sh'], env: ['PATH=/nonexistent:/bin'] }), '/bin/sh');
  t.throws(() => resolveExecutable({ ...base, args: ['no-such-tool-here'] }), /not found in the container's PATH \(\/bin\)/);
  t.throws(() => resolveExecutable({ ...base, args: ['/etc/passwd'] }), /not found or not executable/);
});

t.test('seccomp: the filter is loaded after everything else, right before execve; no_new_privs unless CAP_SYS_ADMIN is kept', async (t) => {
  const seccomp = { defaultAction: 0x7fff0000, architectures: [], flags: [], rules: [{ name: 'mkdir', nr: 83, action: 0x0005001e, args: [] }] };
  const run = (proc: ProcessPlan) => {
    const libc = new RecordingLibc();
    const scmp = new RecordingLibseccomp();
    // Both doubles write into one ordered log.
    const order: string[] = [];
    const wrap = <T extends object>(o: T, prefix: string): T =>
      new Proxy(o, {
        get(target, key) {
          const v = Reflect.get(target, key) as unknown;
          if (typeof v !== 'function') return v;
          return (...a: unknown[]) => {
            order.push(`${prefix}${String(key)}`);
            return (v as (...x: unknown[]) => unknown).apply(target, a);
          };
        },
      });
    t.throws(() => applyAndExec(wrap(libc, ''), proc, '/bin/sh', () => wrap(scmp, 'seccomp.')), /^execve/);
    return { libc, scmp, order };
  };
  const nnp = (libc: RecordingLibc) => libc.calls.some((c) => c.name === 'prctl' && c.args[0] === PR_SET_NO_NEW_PRIVS);

  const dropped = run({ ...base, noNewPrivileges: false, seccomp });
  t.same(dropped.order.slice(-3), ['seccomp.ruleAdd', 'seccomp.load', 'execve'], 'load, then execve, nothing between');
  t.ok(
    dropped.order.indexOf('capset') < dropped.order.indexOf('seccomp.init') && dropped.order.lastIndexOf('fcntl') < dropped.order.indexOf('seccomp.init'),
    'after caps and fds',
  );
  t.ok(nnp(dropped.libc), 'no CAP_SYS_ADMIN: no_new_privs is set so the kernel takes the filter');

  const admin = String((1n << 21n) | (1n << 5n));
  const kept = run({ ...base, noNewPrivileges: false, seccomp, caps: { ...base.caps!, effective: admin, permitted: admin } });
  t.notOk(nnp(kept.libc), 'CAP_SYS_ADMIN kept: no_new_privs stays as the spec says');
  t.notOk(nnp(run({ ...base, noNewPrivileges: false, seccomp, caps: undefined, uid: 0 }).libc), 'root with its full sets');
  t.ok(nnp(run({ ...base, noNewPrivileges: false, seccomp, caps: undefined, uid: 1000 }).libc), 'another uid without caps loses them all');
  t.notOk(nnp(run({ ...base, noNewPrivileges: false }).libc), 'no profile, no forced no_new_privs');
  t.equal(run({ ...base, noNewPrivileges: false }).scmp.calls.length, 0, 'no profile: libseccomp is not touched');
});
