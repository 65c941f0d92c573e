import t from 'tap';
import { InvalidArgument } from '../../agent/src/errors.js';
import { translateProfile, type SeccompProfile } from '../../agent/src/seccomp/profile.js';
import { checkFilter, loadFilter } from '../../agent/src/seccomp/filter.js';
import { probeSeccomp } from '../../agent/src/seccomp/index.js';
import {
  SCMP_ACT_ALLOW,
  SCMP_ACT_ERRNO,
  SCMP_ACT_KILL_PROCESS,
  SCMP_ACT_KILL_THREAD,
  SCMP_ACT_LOG,
  SCMP_ACT_TRACE,
  SCMP_ACT_TRAP,
  SCMP_FLTATR_API_SYSRAWRC,
  SCMP_FLTATR_CTL_LOG,
  SCMP_FLTATR_CTL_NNP,
  SCMP_FLTATR_CTL_SSB,
} from '../../agent/src/seccomp/libseccomp.js';
import { RecordingLibseccomp } from '../support/recording-libseccomp.js';
import { seccomp3x, type OciSeccomp } from '../support/seccomp-profiles.js';

const nrs: Record<string, number> = { read: 0, write: 1, mkdir: 83, personality: 135, sync: 162, kill: 62, socketcall: -10101 };
const arches: Record<string, number> = { x86_64: 0xc000003e, x86: 0x40000003, x32: 0x4000003e };
const names = { syscall: (n: string) => nrs[n], arch: (n: string) => arches[n] };
const tr = (p: OciSeccomp) => translateProfile(seccomp3x(p) as SeccompProfile, names);
const rule = (action: string, errnoRet?: number) =>
  tr({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action, errnoRet }] }).plan.rules[0].action;
const refusal = (p: OciSeccomp) => {
  try {
    tr(p);
  } catch (err) {
    return err instanceof InvalidArgument ? err.message : `not InvalidArgument: ${String(err)}`;
  }
  return 'accepted';
};

t.test('every OCI action maps to its SCMP_ACT_* value', async (t) => {
  t.equal(rule('SCMP_ACT_ERRNO'), SCMP_ACT_ERRNO(1), 'ERRNO without errnoRet is EPERM');
  t.equal(rule('SCMP_ACT_ERRNO', 30), SCMP_ACT_ERRNO(30));
  t.equal(rule('SCMP_ACT_ERRNO', 30), 0x0005001e);
  t.equal(rule('SCMP_ACT_TRACE'), SCMP_ACT_TRACE(1));
  t.equal(rule('SCMP_ACT_TRACE', 7), 0x7ff00007);
  t.equal(rule('SCMP_ACT_KILL'), SCMP_ACT_KILL_THREAD);
  t.equal(rule('SCMP_ACT_KILL_THREAD'), SCMP_ACT_KILL_THREAD);
  t.equal(rule('SCMP_ACT_KILL_PROCESS'), SCMP_ACT_KILL_PROCESS);
  t.equal(rule('SCMP_ACT_TRAP'), SCMP_ACT_TRAP);
  t.equal(rule('SCMP_ACT_LOG'), SCMP_ACT_LOG);
  t.equal(rule('SCMP_ACT_KILL', 5), SCMP_ACT_KILL_THREAD, 'errnoRet matters only to ERRNO and TRACE');
  const d = tr({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [] }).plan;
  t.equal(d.defaultAction, SCMP_ACT_ERRNO(1), 'default ERRNO is EPERM');
  const withDefault = translateProfile({ ...(seccomp3x({ defaultAction: 'SCMP_ACT_ERRNO' }) as SeccompProfile), DefaultErrnoRet: 38 }, names);
  t.equal(withDefault.plan.defaultAction, SCMP_ACT_ERRNO(38), 'defaultErrnoRet when a profile has one');
});

t.test('operators, datums and conditions on one argument', async (t) => {
  const ops = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'];
  const { plan } = tr({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: ops.map((op, i) => ({ names: ['kill'], action: 'SCMP_ACT_ERRNO', args: [{ index: i % 6, value: 0xffffffff, valueTwo: i, op }] })),
  });
  t.same(
    plan.rules.map((r) => r.args[0].op),
    [1, 2, 3, 4, 5, 6, 7],
  );
  t.same(plan.rules[6].args[0], { index: 0, op: 7, a: '4294967295', b: '6' }, 'MASKED_EQ: Value is the mask, ValueTwo the value');
  const two = tr({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      {
        names: ['kill'],
        action: 'SCMP_ACT_ERRNO',
        args: [
          { index: 0, value: 1, op: 'SCMP_CMP_EQ' },
          { index: 1, value: 9, op: 'SCMP_CMP_EQ' },
        ],
      },
      {
        names: ['personality'],
        action: 'SCMP_ACT_ERRNO',
        args: [
          { index: 0, value: 1, op: 'SCMP_CMP_EQ' },
          { index: 0, value: 2, op: 'SCMP_CMP_EQ' },
        ],
      },
    ],
  }).plan.rules;
  t.equal(two.length, 3);
  t.equal(two[0].args.length, 2, 'different arguments: one rule, ANDed');
  t.same(
    two.slice(1).map((r) => r.args.map((a) => a.a)),
    [['1'], ['2']],
    'the same argument twice: one rule each, ORed (as runc)',
  );
});

t.test('names: unknown syscalls skipped and reported, architectures resolved, pseudo numbers kept', async (t) => {
  const { plan, unknownSyscalls } = tr({
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [{ names: ['read', 'frobnicate', 'socketcall', 'frobnicate'], action: 'SCMP_ACT_ALLOW' }],
  });
  t.same(
    plan.rules.map((r) => [r.name, r.nr]),
    [
      ['read', 0],
      ['socketcall', -10101],
    ],
  );
  t.same(unknownSyscalls, ['frobnicate']);
  t.same(
    plan.architectures.map((a) => a.token),
    [0xc000003e, 0x40000003, 0x4000003e],
  );
  const same = tr({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO' }] }).plan.rules;
  t.same(same, [], 'a rule with the default action is dropped (libseccomp refuses it)');
});

t.test('flags', async (t) => {
  const { plan } = tr({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW', 'SECCOMP_FILTER_FLAG_TSYNC'] });
  t.same(plan.flags, [
    { name: 'SECCOMP_FILTER_FLAG_LOG', attr: SCMP_FLTATR_CTL_LOG },
    { name: 'SECCOMP_FILTER_FLAG_SPEC_ALLOW', attr: SCMP_FLTATR_CTL_SSB },
  ]);
});

t.test('refusals are InvalidArgument naming what is wrong', async (t) => {
  t.match(refusal({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_MAYBE' }] }), /unknown action "SCMP_ACT_MAYBE"/);
  t.match(refusal({ defaultAction: 'SCMP_ACT_NOPE' }), /DefaultAction has unknown action "SCMP_ACT_NOPE"/);
  t.match(refusal({ defaultAction: '' }), /no DefaultAction/);
  t.match(refusal({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_NOTIFY' }] }), /SCMP_ACT_NOTIFY is not supported/);
  t.match(refusal({ defaultAction: 'SCMP_ACT_NOTIFY' }), /SCMP_ACT_NOTIFY is not supported/);
  t.match(
    refusal({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_SIMILAR' }] }],
    }),
    /unknown operator "SCMP_CMP_SIMILAR"/,
  );
  t.match(
    refusal({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }] }),
    /argument 6/,
  );
  t.match(refusal({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', errnoRet: 70000 }] }), /errnoRet 70000/);
  t.match(refusal({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_VAX'] }), /unknown architecture "SCMP_ARCH_VAX"/);
  t.match(refusal({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['x86_64'] }), /unknown architecture "x86_64"/);
  t.match(refusal({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_NEW_LISTENER'] }), /unknown flag "SECCOMP_FILTER_FLAG_NEW_LISTENER"/);
});

const sample = () =>
  tr({
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
    flags: ['SECCOMP_FILTER_FLAG_LOG'],
    syscalls: [
      { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
      { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
    ],
  }).plan;

t.test('the filter is built in order; a check releases it, a load keeps it', async (t) => {
  const lib = new RecordingLibseccomp();
  loadFilter(lib, sample());
  t.same(lib.calls, [
    { name: 'init', args: [SCMP_ACT_ERRNO(1)] },
    { name: 'attrSet', args: [SCMP_FLTATR_CTL_NNP, 0] },
    { name: 'attrSet', args: [SCMP_FLTATR_API_SYSRAWRC, 1] },
    { name: 'attrSet', args: [SCMP_FLTATR_CTL_LOG, 1] },
    { name: 'archAdd', args: [0xc000003e] },
    { name: 'archAdd', args: [0x40000003] },
    { name: 'ruleAdd', args: [SCMP_ACT_ALLOW, 0, []] },
    { name: 'ruleAdd', args: [SCMP_ACT_ALLOW, 1, []] },
    { name: 'ruleAdd', args: [SCMP_ACT_ALLOW, 135, [{ index: 0, op: 4, a: 8n, b: 0n }]] },
    { name: 'load', args: [] },
  ]);
  const check = new RecordingLibseccomp();
  checkFilter(check, sample());
  t.equal(check.calls.at(-1)?.name, 'release');
  t.notOk(
    check.calls.some((c) => c.name === 'load'),
    'a check never loads',
  );
});

t.test('libseccomp refusals name the function, the errno and what was added', async (t) => {
  const lib = new RecordingLibseccomp().fail('archAdd', 17 /* EEXIST */);
  t.doesNotThrow(() => checkFilter(lib, sample()), 'an architecture the filter has already (the native one) is fine');
  const rules = new RecordingLibseccomp().fail('ruleAdd', 17);
  t.throws(() => checkFilter(rules, sample()), { code: 'EEXIST', message: /^seccomp_rule_add\(read, action 0x7fff0000, 0 condition\(s\)\): EEXIST/ });
  t.equal(rules.calls.at(-1)?.name, 'release', 'released after a refusal');
  const loads = new RecordingLibseccomp().fail('load', 13);
  t.throws(() => loadFilter(loads, sample()), { code: 'EACCES' });
});

t.test('probe: libseccomp that cannot load, a kernel without filters, and this machine', async (t) => {
  const missing = probeSeccomp(() => {
    throw new Error('Failed to load shared library: libseccomp.so.2: cannot open shared object file');
  });
  t.match(missing, { ok: false, why: /libseccomp cannot be loaded: .*libseccomp.so.2/ });
  const noKernel = probeSeccomp(() => new RecordingLibseccomp({}, {}, { major: 2, minor: 5, micro: 4, api: 0 }));
  t.match(noKernel, { ok: false, why: /no seccomp filter support in the kernel \(API level 0\)/ });
  t.match(
    probeSeccomp(() => new RecordingLibseccomp()),
    { ok: true, version: { major: 2 } },
  );
});
