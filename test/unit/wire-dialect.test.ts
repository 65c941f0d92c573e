// The wire a connection arrives on picks its generation: the same handlers see kata 1.x semantics
// over gRPC and 3.x over ttrpc, with no test of the generation in the handler.
import t from 'tap';
import { create, toBinary } from '@bufbuild/protobuf';
import { CreateContainerRequestSchema, ReadStreamRequestSchema } from '../../protos/gen/agent_pb.js';
import { CreateContainerRequestSchema as CreateContainerRequest1x } from '../../protos/gen/compat_1x_pb.js';
import type { CallContext } from '../../agent/src/rpc/handlers.js';
import { Code } from '../../agent/src/rpc/status.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { CallError, GrpcClient, type RpcClient } from '../../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { serveInProcess } from '../helpers/in-process.js';

const seen: { wire: string; agentPidns?: boolean; syscalls: number }[] = [];
const handlers = {
  createContainer: (req: { OCI?: { Linux?: { Seccomp?: { Syscalls: unknown[] } } } }, ctx: CallContext) => {
    seen.push({ wire: ctx.dialect.name, agentPidns: ctx.legacy.agentPidns, syscalls: req.OCI?.Linux?.Seccomp?.Syscalls.length ?? 0 });
    return {};
  },
  // A stream whose writers have all closed: what each generation expects at end of output.
  readStdout: (_req: unknown, ctx: CallContext) => {
    throw ctx.dialect.endOfStream('stdout of process c of container c');
  },
};

const old1x = toBinary(
  CreateContainerRequest1x,
  create(CreateContainerRequest1x, {
    containerId: 'c',
    agentPidns: true,
    OCI: { Linux: { Seccomp: { Syscalls: [{ Names: ['read'], Action: 'SCMP_ACT_ALLOW', Args: [{ Index: 1n, Op: 'SCMP_CMP_EQ' }] }] } } },
  }),
);
const new3x = toBinary(
  CreateContainerRequestSchema,
  create(CreateContainerRequestSchema, {
    containerId: 'c',
    sharedMounts: [{ name: 'm', srcCtr: 'a', srcPath: '/x', dstCtr: 'b', dstPath: '/y' }],
    OCI: { Linux: { Seccomp: { Flags: ['SECCOMP_FILTER_FLAG_LOG'], Syscalls: [{ Names: ['read'], Action: 'SCMP_ACT_ALLOW' }] } } },
  }),
);

t.test('the wire decides the dialect', async (t) => {
  const srv = await serveInProcess('wire-dialect', handlers as never);
  t.teardown(() => srv.close());
  const grpc: RpcClient = new GrpcClient(await connect(`unix://${srv.socket}`, { timeoutMs: 5000 }));
  const ttrpc: RpcClient = new TtrpcClient(await connect(`unix://${srv.socket}`, { timeoutMs: 5000 }));
  t.teardown(() => (grpc.close(), ttrpc.close()));
  const fails = (p: Promise<unknown>) =>
    p.then(
      () => undefined,
      (e: CallError) => e,
    );

  t.test('gRPC reads CreateContainerRequest with the 1.x numbering', async (t) => {
    await grpc.call('grpc.AgentService', 'CreateContainer', old1x, 5000);
    t.same(seen.pop(), { wire: 'kata-1.x', agentPidns: true, syscalls: 1 });
  });

  t.test('ttrpc reads it with the 3.x numbering, and refuses 1.x bytes', async (t) => {
    await ttrpc.call('grpc.AgentService', 'CreateContainer', new3x, 5000);
    t.same(seen.pop(), { wire: 'kata-3.x', agentPidns: undefined, syscalls: 1 });
    const err = await fails(ttrpc.call('grpc.AgentService', 'CreateContainer', old1x, 5000));
    t.match(err, { code: Code.INVALID_ARGUMENT });
  });

  t.test('end of output: an "EOF" error on gRPC, an error (never empty OK data) on ttrpc', async (t) => {
    const req = toBinary(ReadStreamRequestSchema, create(ReadStreamRequestSchema, { containerId: 'c', execId: '', len: 32768 }));
    const err = await fails(grpc.call('grpc.AgentService', 'ReadStdout', req, 5000));
    t.match(err, { code: Code.UNKNOWN, details: 'EOF' });
    const err3 = await fails(ttrpc.call('grpc.AgentService', 'ReadStdout', req, 5000));
    t.match(err3, { code: Code.INTERNAL, details: 'EOF: stdout of process c of container c has ended' });
  });
});
