import t from 'tap';
import { create, toBinary } from '@bufbuild/protobuf';
import { CreateContainerRequestSchema } from '../../protos/gen/agent_pb.js';
import { CreateContainerRequestSchema as CreateContainerRequest1x } from '../../protos/gen/compat_1x_pb.js';
import { dialect1x, dialect3x } from '../../agent/src/rpc/dialect.js';
import type { LegacyFields } from '../../agent/src/rpc/handlers.js';
import { Code, RpcError } from '../../agent/src/rpc/status.js';

// A 1.x host's CreateContainerRequest: agent_pidns in field 8, seccomp syscalls in LinuxSeccomp 3
// and their args in LinuxSyscall 3.
const old = toBinary(
  CreateContainerRequest1x,
  create(CreateContainerRequest1x, {
    containerId: 'c1',
    execId: 'c1',
    sandboxPidns: true,
    agentPidns: true,
    OCI: {
      Version: '1.0.1',
      Hostname: 'box',
      Linux: {
        CgroupsPath: '/kata/c1',
        Seccomp: {
          DefaultAction: 'SCMP_ACT_ERRNO',
          Architectures: ['SCMP_ARCH_X86_64'],
          Syscalls: [
            { Names: ['read', 'write'], Action: 'SCMP_ACT_ALLOW' },
            { Names: ['personality'], Action: 'SCMP_ACT_ALLOW', Args: [{ Index: 0n, Value: 8n, ValueTwo: 0n, Op: 'SCMP_CMP_EQ' }] },
          ],
        },
      },
    },
  }),
);

t.test('dialect1x decodes a 1.x CreateContainerRequest into the 3.x message', async (t) => {
  const legacy: LegacyFields = {};
  const req = dialect1x.decode(CreateContainerRequestSchema, old, legacy) as ReturnType<typeof create<typeof CreateContainerRequestSchema>>;
  t.equal(legacy.agentPidns, true, 'agent_pidns lands in ctx.legacy');
  t.equal(req.containerId, 'c1');
  t.equal(req.sandboxPidns, true);
  t.same(req.sharedMounts, [], 'field 8 is not read as shared_mounts');
  t.equal(req.OCI?.Hostname, 'box');
  const sc = req.OCI?.Linux?.Seccomp;
  t.equal(sc?.DefaultAction, 'SCMP_ACT_ERRNO');
  t.same(sc?.Flags, [], 'the 1.x syscall list is not mistaken for 3.x Flags');
  t.equal(sc?.Syscalls.length, 2);
  t.same(sc?.Syscalls[0].Names, ['read', 'write']);
  t.equal(sc?.Syscalls[1].Args.length, 1);
  t.match(sc?.Syscalls[1].Args[0], { Index: 0n, Value: 8n, Op: 'SCMP_CMP_EQ' });
});

t.test('the same bytes through dialect3x are not read with the 1.x numbering', async (t) => {
  const legacy: LegacyFields = {};
  // 3.x expects field 8 to be a repeated message; a 1.x bool there cannot decode.
  t.throws(() => dialect3x.decode(CreateContainerRequestSchema, old, legacy), { code: Code.INVALID_ARGUMENT });
  t.equal(legacy.agentPidns, undefined);
});

t.test('a 1.x request without agent_pidns decodes with agentPidns false', async (t) => {
  const legacy: LegacyFields = {};
  const bytes = toBinary(CreateContainerRequest1x, create(CreateContainerRequest1x, { containerId: 'c2' }));
  const req = dialect1x.decode(CreateContainerRequestSchema, bytes, legacy) as unknown as { containerId: string };
  t.equal(req.containerId, 'c2');
  t.equal(legacy.agentPidns, false);
});

t.test('garbage through dialect1x is INVALID_ARGUMENT', async (t) => {
  t.throws(() => dialect1x.decode(CreateContainerRequestSchema, Uint8Array.of(0x0a, 0x50), {}), { code: Code.INVALID_ARGUMENT });
});

t.test('end of stream is an RPC error on both generations, never an OK answer', async (t) => {
  const e3 = dialect3x.endOfStream('stdout of process c1 of container c1');
  t.ok(e3 instanceof RpcError);
  t.equal(e3.code, Code.INTERNAL, 'the Rust agent fails the read with INTERNAL');
  t.match(e3.message, /^EOF: stdout of process c1 of container c1 has ended$/);
  t.equal(e3.expected, true, 'logged as an ordinary event, not a failure');
  const e1 = dialect1x.endOfStream('stdout of process c1 of container c1');
  t.equal(e1.code, Code.UNKNOWN);
  t.equal(e1.message, 'EOF', 'exactly "EOF": the 1.x shim compares the message');
  t.equal(e1.expected, true);
});

t.test('seccomp numbering: 3.x Flags = 3, Syscalls = 4, errnoret = 3, Args = 4; 1.x has neither Flags nor errnoret', async (t) => {
  const rule = { Names: ['mkdir'], Action: 'SCMP_ACT_ERRNO', Args: [{ Index: 1n, Value: 0o700n, ValueTwo: 0n, Op: 'SCMP_CMP_EQ' }] };
  const new3x = toBinary(
    CreateContainerRequestSchema,
    create(CreateContainerRequestSchema, {
      containerId: 'c3',
      OCI: {
        Linux: {
          Seccomp: { DefaultAction: 'SCMP_ACT_ALLOW', Flags: ['SECCOMP_FILTER_FLAG_LOG'], Syscalls: [{ ...rule, ErrnoRet: { case: 'errnoret', value: 30 } }] },
        },
      },
    }),
  );
  const sc3 = (dialect3x.decode(CreateContainerRequestSchema, new3x, {}) as ReturnType<typeof create<typeof CreateContainerRequestSchema>>).OCI?.Linux?.Seccomp;
  t.same(sc3?.Flags, ['SECCOMP_FILTER_FLAG_LOG']);
  t.same(sc3?.Syscalls[0].ErrnoRet, { case: 'errnoret', value: 30 });
  t.match(sc3?.Syscalls[0].Args[0], { Index: 1n, Value: 0o700n, Op: 'SCMP_CMP_EQ' });

  const old1x = toBinary(
    CreateContainerRequest1x,
    create(CreateContainerRequest1x, { containerId: 'c1', OCI: { Linux: { Seccomp: { DefaultAction: 'SCMP_ACT_ALLOW', Syscalls: [rule] } } } }),
  );
  const sc1 = (dialect1x.decode(CreateContainerRequestSchema, old1x, {}) as ReturnType<typeof create<typeof CreateContainerRequestSchema>>).OCI?.Linux?.Seccomp;
  t.same(sc1?.Flags, []);
  t.equal(sc1?.Syscalls[0].ErrnoRet.case, undefined, 'no errnoret in 1.x: the 1.x Args (field 3) are not read as one');
  t.match(sc1?.Syscalls[0].Args[0], { Index: 1n, Value: 0o700n, Op: 'SCMP_CMP_EQ' });
  // The 3.x bytes read with the 1.x numbering would misplace both: 3.x's numbering must not decode over gRPC.
  t.throws(() => dialect1x.decode(CreateContainerRequestSchema, new3x, {}), { code: Code.INVALID_ARGUMENT });
});
