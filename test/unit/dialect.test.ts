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
