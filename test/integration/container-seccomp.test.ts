// Root-only: seccomp profiles enforced in busybox containers, sent as a kata 1.x host numbers them
// (gRPC: LinuxSeccomp.Syscalls = 3, LinuxSyscall.Args = 3, no errnoret) and as a 3.x host does
// (ttrpc: Flags = 3, Syscalls = 4, errnoret = 3, Args = 4).
import t, { type Test } from 'tap';
import { create, toBinary } from '@bufbuild/protobuf';
import { CreateContainerRequestSchema as CreateContainerRequest1x } from '../../protos/gen/compat_1x_pb.js';
import { CallError } from '../../agent-ctl/src/grpc-client.js';
import { Code } from '../../agent/src/rpc/status.js';
import { probeSeccomp } from '../../agent/src/seccomp/index.js';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { leftovers } from '../support/leftovers.js';
import { busyboxSpec, type SpecInit } from '../support/oci-spec.js';
import { dockerDefaultCaps, dockerDefaultProfile, seccomp1x, seccomp3x, type OciSeccomp } from '../support/seccomp-profiles.js';

const support = probeSeccomp();
const skip = containerTestSkipReason() ?? (support.ok ? undefined : support.why);
const tag = `s${process.pid}`;
type Wire = 'grpc' | 'ttrpc';

/** CreateContainer with `profile` in the wire's own numbering. */
async function createWith(h: AgentHarness, wire: Wire, id: string, spec: SpecInit, profile: OciSeccomp | undefined): Promise<void> {
  if (wire === 'ttrpc') {
    await h.call('createContainer', {
      containerId: id,
      execId: id,
      OCI: { ...spec, Linux: { ...spec.Linux, Seccomp: profile && seccomp3x(profile) } } as never,
    });
    return;
  }
  const req = create(CreateContainerRequest1x, {
    containerId: id,
    execId: id,
    OCI: { ...spec, Linux: { ...spec.Linux, Seccomp: profile && seccomp1x(profile) } } as never,
  });
  await h.callRaw('CreateContainer', toBinary(CreateContainerRequest1x, req));
}

/** Runs `args` to its end in a container with `profile`: exit status, stdout, stderr. */
async function run(h: AgentHarness, wire: Wire, id: string, args: string[], profile: OciSeccomp | undefined, edit: (s: SpecInit) => void = () => {}) {
  const spec = busyboxSpec(rootfs(h), args);
  edit(spec);
  await createWith(h, wire, id, spec, profile);
  await h.call('startContainer', { containerId: id });
  const [out, err] = await Promise.all([h.readAll('readStdout', id, id), h.readAll('readStderr', id, id)]);
  const { status } = await h.call('waitProcess', { containerId: id, execId: id });
  await h.call('removeContainer', { containerId: id });
  return { status, out, err };
}

const rootfsOf = new Map<AgentHarness, string>();
function rootfs(h: AgentHarness): string {
  let r = rootfsOf.get(h);
  if (!r) rootfsOf.set(h, (r = buildBusyboxRootfs(`${h.dir}/bb`)));
  return r;
}

// What Docker's profile forbids and a root container with every capability could otherwise do.
const denied = 'unshare -U true; echo unshare=$?; mount -t tmpfs t /tmp; echo mount=$?; hostname other; echo hostname=$?';

async function dockerDefault(t: Test, h: AgentHarness, wire: Wire) {
  const id = `${tag}-${wire}-docker`;
  // Root with every capability: whatever is denied here, the filter denied.
  await createWith(h, wire, id, busyboxSpec(rootfs(h), ['sleep', '1000']), dockerDefaultProfile());
  await h.call('startContainer', { containerId: id });
  await h.call('execProcess', {
    containerId: id,
    execId: 'probe',
    process: { Args: ['sh', '-c', `echo hi; ls /; cat /etc/hostname; grep -E '^(Seccomp|NoNewPrivs):' /proc/1/status; ${denied}`], Cwd: '/' },
  });
  const [out, err] = await Promise.all([h.readAll('readStdout', id, 'probe'), h.readAll('readStderr', id, 'probe')]);
  t.equal((await h.call('waitProcess', { containerId: id, execId: 'probe' })).status, 0);
  t.match(out, /^hi\n(.*\n)*etc\n(.*\n)*rootfs\n/, 'echo, ls and cat work');
  t.match(out, /Seccomp:\s+2\n/, 'the init runs under a filter');
  t.match(out, /NoNewPrivs:\s+0\n/, 'CAP_SYS_ADMIN is kept, so no_new_privs stays off as the spec says');
  t.match(out, /unshare=1\nmount=\d+\nhostname=1\n/, 'unshare, mount and sethostname fail in the exec, which inherits the filter');
  t.notMatch(out, /mount=0/);
  // busybox mount words EPERM as "permission denied (are you root?)".
  t.match(err, /unshare\(0x10000000\): Operation not permitted\nmount: permission denied.*\nhostname: sethostname: Operation not permitted/, 'each with EPERM');
  await h.call('signalProcess', { containerId: id, execId: id, signal: 9 });
  t.equal((await h.call('waitProcess', { containerId: id, execId: id })).status, 137);
  await h.call('removeContainer', { containerId: id });

  // Docker's default capabilities, without CAP_SYS_ADMIN: the load needs no_new_privs.
  const caps = (s: SpecInit) => {
    s.Process!.Capabilities = { Bounding: dockerDefaultCaps, Effective: dockerDefaultCaps, Permitted: dockerDefaultCaps, Inheritable: [], Ambient: [] };
  };
  const r = await run(
    h,
    wire,
    `${tag}-${wire}-docker-caps`,
    ['sh', '-c', "echo hi; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/d && echo mkdir ok"],
    dockerDefaultProfile(),
    caps,
  );
  t.same(r, { status: 0, out: 'hi\nNoNewPrivs:\t1\nSeccomp:\t2\nmkdir ok\n', err: '' }, "ordinary commands under Docker's caps and profile");
}

/** ALLOW by default; mkdir with a custom errno (3.x only: 1.x has no errnoret), personality(PER_LINUX32) refused, sync kills. */
const custom: OciSeccomp = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: [
    { names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 30 /* EROFS */ },
    { names: ['personality'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
    { names: ['sync'], action: 'SCMP_ACT_KILL_PROCESS' },
    { names: ['no_such_syscall_anywhere'], action: 'SCMP_ACT_KILL' },
  ],
};

async function customRules(t: Test, h: AgentHarness, wire: Wire) {
  const script = 'mkdir /tmp/x; echo mkdir=$?; linux32 true; echo linux32=$?; linux64 true; echo linux64=$?; exec sync';
  const r = await run(h, wire, `${tag}-${wire}-custom`, ['sh', '-c', script], custom);
  t.equal(r.out, 'mkdir=1\nlinux32=1\nlinux64=0\n', 'mkdir and personality(8) refused, personality(0) allowed');
  const mkdirErr = wire === 'ttrpc' ? 'Read-only file system' : 'Operation not permitted';
  t.match(r.err, new RegExp(`mkdir: can't create directory '/tmp/x': ${mkdirErr}`), `mkdir fails with ${mkdirErr}`);
  t.match(r.err, /linux32.*Operation not permitted/, 'the argument filter matched');
  t.equal(r.status, 128 + 31, 'sync killed the process with SIGSYS');
}

async function refusals(t: Test, h: AgentHarness, wire: Wire) {
  const bad = async (profile: OciSeccomp, id: string) => {
    try {
      await createWith(h, wire, id, busyboxSpec(rootfs(h), ['true']), profile);
      return 'OK';
    } catch (err) {
      if (!(err instanceof CallError)) throw err;
      return `${Code[err.code]}: ${err.details}`;
    }
  };
  const base = { defaultAction: 'SCMP_ACT_ALLOW' };
  t.match(
    await bad({ ...base, syscalls: [{ names: ['read'], action: 'SCMP_ACT_BOGUS' }] }, `${tag}-${wire}-b1`),
    /^INVALID_ARGUMENT: .*unknown action "SCMP_ACT_BOGUS".*container/,
  );
  t.match(
    await bad(
      { ...base, syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_ABOUT' }] }] },
      `${tag}-${wire}-b2`,
    ),
    /^INVALID_ARGUMENT: .*unknown operator "SCMP_CMP_ABOUT"/,
  );
  t.match(await bad({ ...base, syscalls: [{ names: ['read'], action: 'SCMP_ACT_NOTIFY' }] }, `${tag}-${wire}-b3`), /^INVALID_ARGUMENT: .*SCMP_ACT_NOTIFY/);
  t.match(await bad({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_PDP11'] }, `${tag}-${wire}-b4`), /^INVALID_ARGUMENT: .*"SCMP_ARCH_PDP11"/);
  if (wire === 'ttrpc')
    t.match(await bad({ ...base, flags: ['SECCOMP_FILTER_FLAG_FAST'] }, `${tag}-${wire}-b5`), /^INVALID_ARGUMENT: .*unknown flag "SECCOMP_FILTER_FLAG_FAST"/);
  // Refused before anything was set up: the id is free for a good request.
  t.equal((await run(h, wire, `${tag}-${wire}-b1`, ['true'], base)).status, 0);
}

for (const wire of ['grpc', 'ttrpc'] as const) {
  t.test(`seccomp over ${wire} (kata ${wire === 'grpc' ? '1.x' : '3.x'} numbering)`, { skip }, async (t) => {
    const h = await AgentHarness.start({}, wire);
    let stopped = false;
    t.teardown(async () => {
      if (!stopped) await h.stop();
    });
    const details = await h.call('getGuestDetails', {});
    t.equal(details.agentDetails?.supportsSeccomp, true, 'GetGuestDetails: supports_seccomp');
    await t.test("Docker's default profile", (t) => dockerDefault(t, h, wire));
    await t.test('ERRNO with errnoret, an argument filter, KILL_PROCESS', (t) => customRules(t, h, wire));
    await t.test('bad profiles fail CreateContainer with INVALID_ARGUMENT', (t) => refusals(t, h, wire));
    if (wire === 'ttrpc') {
      await t.test('without a profile the same commands succeed (the filter is what denied them)', async (t) => {
        const r = await run(h, wire, `${tag}-none`, ['sh', '-c', denied], undefined);
        t.match(r.out, /mount=0\nhostname=0\n$/, r.err);
      });
    }
    const dir = h.dir;
    await h.stop();
    stopped = true;
    t.same(leftovers(tag, dir), { mounts: [], cgroups: [], processes: [], zombies: [] }, 'nothing left behind');
  });
}
