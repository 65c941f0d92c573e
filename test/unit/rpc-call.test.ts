// AgentRpcService.call, the one path both transports take: resolve, UNIMPLEMENTED, decode, the
// interceptors in list order, the handler, encode, and one mapping of whatever failed to a status.
import t from 'tap';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { RemoveContainerRequestSchema } from '../../protos/gen/agent_pb.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { CallError, GrpcClient, type RpcClient } from '../../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import {
  AlreadyExists,
  Cancelled,
  DeadlineExceeded,
  FailedPrecondition,
  InvalidArgument,
  NotFound,
  PermissionDenied,
  ResourceExhausted,
  Unavailable,
} from '../../agent/src/errors.js';
import { healthHandlers } from '../../agent/src/health/handlers.js';
import { createLogger } from '../../agent/src/log/logger.js';
import type { CallInfo, Interceptor } from '../../agent/src/rpc/call.js';
import { dialect1x, dialect3x, type Dialect } from '../../agent/src/rpc/dialect.js';
import { AgentRpcService, defaultInterceptors, type AgentHandlers } from '../../agent/src/rpc/service.js';
import { Code, RpcError } from '../../agent/src/rpc/status.js';
import { serveInProcess } from '../helpers/in-process.js';

const silent = createLogger('silent');
const signal = new AbortController().signal;
const removeC1 = toBinary(RemoveContainerRequestSchema, create(RemoveContainerRequestSchema, { containerId: 'c1' }));
const dialects: Dialect[] = [dialect1x, dialect3x];

/** Each domain error kind and the status the host must see for it, on every wire. */
const domainErrors: [string, () => Error, Code][] = [
  ['InvalidArgument', () => new InvalidArgument('bad'), Code.INVALID_ARGUMENT],
  ['NotFound', () => new NotFound('bad'), Code.NOT_FOUND],
  ['AlreadyExists', () => new AlreadyExists('bad'), Code.ALREADY_EXISTS],
  ['FailedPrecondition', () => new FailedPrecondition('bad'), Code.FAILED_PRECONDITION],
  ['Unavailable', () => new Unavailable('bad'), Code.UNAVAILABLE],
  ['Cancelled', () => new Cancelled('bad'), Code.CANCELLED],
  ['DeadlineExceeded', () => new DeadlineExceeded('bad'), Code.DEADLINE_EXCEEDED],
  ['ResourceExhausted', () => new ResourceExhausted('bad'), Code.RESOURCE_EXHAUSTED],
  ['PermissionDenied', () => new PermissionDenied('bad'), Code.PERMISSION_DENIED],
  ['a plain Error', () => new Error('bad'), Code.INTERNAL],
  ['an errno error', () => Object.assign(new Error('bad'), { code: 'ENOENT' }), Code.NOT_FOUND],
  ['an RpcError', () => new RpcError(Code.OUT_OF_RANGE, 'bad'), Code.OUT_OF_RANGE],
];

async function failure(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    return err as RpcError;
  }
  throw new Error('the call succeeded');
}

t.test('an unknown method is UNIMPLEMENTED, naming it, on both dialects; nothing else runs', async (t) => {
  const seen: string[] = [];
  const service = new AgentRpcService(silent, [{}], healthHandlers(), { interceptors: [async (_c, next) => (seen.push('interceptor'), next())] });
  for (const dialect of dialects) {
    const err = await failure(service.call('grpc.AgentService', 'NoSuchCall', new Uint8Array(0), { dialect, signal }));
    t.ok(err instanceof RpcError, dialect.name);
    t.equal(err.code, Code.UNIMPLEMENTED);
    t.equal(err.message, 'unknown method /grpc.AgentService/NoSuchCall');
    const svc = await failure(service.call('grpc.NoService', 'Check', new Uint8Array(0), { dialect, signal }));
    t.equal(svc.message, 'unknown method /grpc.NoService/Check');
  }
  t.same(seen, [], 'no interceptor saw a call that has no method');
});

t.test('a known method no domain handles is UNIMPLEMENTED "not implemented yet"', async (t) => {
  const service = new AgentRpcService(silent, [{}], healthHandlers());
  for (const dialect of dialects) {
    const err = await failure(service.call('grpc.AgentService', 'RemoveContainer', removeC1, { dialect, signal }));
    t.match(err, { code: Code.UNIMPLEMENTED, message: 'RemoveContainer is not implemented yet' }, dialect.name);
  }
});

t.test('an RPC this agent does not serve on purpose says why, on both wires', async (t) => {
  const service = new AgentRpcService(silent, [{}], healthHandlers());
  for (const dialect of dialects) {
    for (const [method, reason] of [
      ['StartTracing', /^StartTracing is not served by this agent: kata 1\.x's agent tracing/],
      ['MemAgentMemcgSet', /^MemAgentMemcgSet is not served by this agent: kata's mem-agent/],
      ['SetPolicy', /^SetPolicy is not served by this agent: it has no policy engine/],
      ['StopTracing', /^StopTracing is not served by this agent: it has no tracing to stop/],
      ['MemAgentCompactSet', /^MemAgentCompactSet is not served by this agent: kata's mem-agent \(PSI-driven memory compaction\)/],
    ] as const) {
      const err = await failure(service.call('grpc.AgentService', method, new Uint8Array(0), { dialect, signal }));
      t.match(err, { code: Code.UNIMPLEMENTED, message: reason }, `${method} ${dialect.name}`);
    }
  }
});

t.test('a failure to build the agent service is INTERNAL through call()', async (t) => {
  const service = new AgentRpcService(silent, () => Promise.reject(new Error('no cgroups')), healthHandlers());
  const err = await failure(service.call('grpc.AgentService', 'RemoveContainer', removeC1, { dialect: dialect3x, signal }));
  t.match(err, { code: Code.INTERNAL, message: 'agent service failed to start: no cgroups' });
});

t.test('interceptors run in list order around the handler, each seeing the decoded call', async (t) => {
  const trace: string[] = [];
  const infos: CallInfo[] = [];
  const step =
    (name: string): Interceptor =>
    async (call, next) => {
      trace.push(`${name} in`);
      infos.push(call);
      try {
        return await next();
      } finally {
        trace.push(`${name} out`);
      }
    };
  const handlers: AgentHandlers = {
    removeContainer: (req) => {
      trace.push(`handler ${req.containerId}`);
      return {};
    },
  };
  const service = new AgentRpcService(silent, [handlers], healthHandlers(), { interceptors: [step('a'), step('b'), step('c')] });
  const bytes = await service.call('grpc.AgentService', 'RemoveContainer', removeC1, { dialect: dialect1x, signal });
  t.same(fromBinary(EmptySchema, bytes), create(EmptySchema), 'the answer is encoded');
  t.same(trace, ['a in', 'b in', 'c in', 'handler c1', 'c out', 'b out', 'a out']);
  t.equal(infos.length, 3);
  for (const info of infos) {
    t.equal(info, infos[0], 'every interceptor sees the same call');
    t.equal(info.fullMethod, '/grpc.AgentService/RemoveContainer');
    t.equal(info.method, 'RemoveContainer');
    t.equal(info.service, 'grpc.AgentService');
    t.equal(info.dialect, dialect1x);
    t.equal((info.request as unknown as { containerId: string }).containerId, 'c1');
    t.equal(info.ctx.signal, signal);
  }
});

t.test('adding an interceptor after the defaults keeps them first: a gate refuses, the log still sees it', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('debug', 'test', { write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  let handled = 0;
  const outcomes: string[] = [];
  const observer: Interceptor = async (_call, next) => {
    try {
      return await next();
    } catch (err) {
      outcomes.push((err as Error).name);
      throw err;
    }
  };
  const gate: Interceptor = async (call, next) => {
    if (call.method === 'RemoveContainer') throw new PermissionDenied(`${call.fullMethod} is blocked by policy`);
    return next();
  };
  const handlers: AgentHandlers = { removeContainer: () => (handled++, {}) };
  const service = new AgentRpcService(log, [handlers], healthHandlers(), { interceptors: [...defaultInterceptors(log), observer, gate] });
  for (const dialect of dialects) {
    const err = await failure(service.call('grpc.AgentService', 'RemoveContainer', removeC1, { dialect, signal }));
    t.ok(err instanceof RpcError, dialect.name);
    t.match(err, { code: Code.PERMISSION_DENIED, message: '/grpc.AgentService/RemoveContainer is blocked by policy' });
  }
  t.equal(handled, 0, 'the handler never ran');
  t.same(outcomes, ['PermissionDenied', 'PermissionDenied'], 'an earlier interceptor sees the gate’s own error');
  const rpc = lines.filter((l) => l.msg === 'rpc');
  t.same(
    rpc.map((l) => [l.method, l.container_id, l.code, l.wire]),
    [
      ['RemoveContainer', 'c1', 'PERMISSION_DENIED', 'kata-1.x'],
      ['RemoveContainer', 'c1', 'PERMISSION_DENIED', 'kata-3.x'],
    ],
  );
});

t.test('the default log interceptor: one debug line per call, an error line for INTERNAL', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('debug', 'test', { write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  const handlers: AgentHandlers = {
    removeContainer: (req) => {
      if (req.containerId === 'boom') throw new Error('disk on fire');
      return {};
    },
  };
  const service = new AgentRpcService(log, [handlers], healthHandlers());
  await service.call('grpc.AgentService', 'RemoveContainer', removeC1, { dialect: dialect3x, signal });
  const boom = toBinary(RemoveContainerRequestSchema, create(RemoveContainerRequestSchema, { containerId: 'boom' }));
  await failure(service.call('grpc.AgentService', 'RemoveContainer', boom, { dialect: dialect3x, signal }));
  await failure(service.call('grpc.AgentService', 'RemoveContainer', Uint8Array.of(0x0a, 0x50), { dialect: dialect3x, signal }));
  t.match(
    lines.filter((l) => l.msg === 'rpc'),
    [
      { level: 'debug', method: 'RemoveContainer', container_id: 'c1', code: 'OK', wire: 'kata-3.x', duration_ms: Number },
      { level: 'debug', method: 'RemoveContainer', container_id: 'boom', code: 'INTERNAL' },
      { level: 'debug', method: 'RemoveContainer', code: 'INVALID_ARGUMENT', wire: 'kata-3.x' },
    ],
  );
  const failed = lines.filter((l) => l.msg === 'rpc failed');
  t.equal(failed.length, 1, 'only the INTERNAL failure is an error line');
  t.match(failed[0], { level: 'error', method: 'RemoveContainer' });
});

t.test('undecodable bytes are INVALID_ARGUMENT before any interceptor runs', async (t) => {
  let ran = 0;
  const service = new AgentRpcService(silent, [{ removeContainer: () => ({}) }], healthHandlers(), { interceptors: [async (_c, next) => (ran++, next())] });
  for (const dialect of dialects) {
    const err = await failure(service.call('grpc.AgentService', 'RemoveContainer', Uint8Array.of(0x0a, 0x50), { dialect, signal }));
    t.match(err, { code: Code.INVALID_ARGUMENT, message: /cannot decode grpc.RemoveContainerRequest/ }, dialect.name);
  }
  t.equal(ran, 0);
});

t.test('each domain error kind maps to its status on both dialects, message kept', async (t) => {
  let next: () => Error = () => new Error('unset');
  const service = new AgentRpcService(silent, [{ removeContainer: () => Promise.reject(next()) }], healthHandlers());
  for (const [what, make, code] of domainErrors) {
    for (const dialect of dialects) {
      next = make;
      const err = await failure(service.call('grpc.AgentService', 'RemoveContainer', removeC1, { dialect, signal }));
      t.ok(err instanceof RpcError, `${what} on ${dialect.name} is an RpcError`);
      t.equal(err.code, code, `${what} on ${dialect.name} → ${Code[code]}`);
      t.equal(err.message, 'bad');
    }
  }
  next = () => 'a string' as unknown as Error;
  t.match(await failure(service.call('grpc.AgentService', 'RemoveContainer', removeC1, { dialect: dialect1x, signal })), {
    code: Code.UNKNOWN,
    message: 'a string',
  });
});

t.test('a handler that throws synchronously is mapped like one that rejects', async (t) => {
  const service = new AgentRpcService(
    silent,
    [
      {
        removeContainer: () => {
          throw new NotFound('container c1 not found');
        },
      },
    ],
    healthHandlers(),
  );
  t.match(await failure(service.call('grpc.AgentService', 'RemoveContainer', removeC1, { dialect: dialect3x, signal })), {
    code: Code.NOT_FOUND,
    message: 'container c1 not found',
  });
});

t.test('on the wires: gRPC (1.x) and ttrpc (3.x) carry the same status for each domain error', async (t) => {
  let next: () => Error = () => new Error('unset');
  const srv = await serveInProcess('rpc-call', { removeContainer: () => Promise.reject(next()) });
  t.teardown(() => srv.close());
  const grpc: RpcClient = new GrpcClient(await connect(`unix://${srv.socket}`, { timeoutMs: 5000 }));
  const ttrpc: RpcClient = new TtrpcClient(await connect(`unix://${srv.socket}`, { timeoutMs: 5000 }));
  t.teardown(() => (grpc.close(), ttrpc.close()));
  for (const [what, make, code] of domainErrors) {
    for (const [wire, client] of [
      ['grpc', grpc],
      ['ttrpc', ttrpc],
    ] as const) {
      next = make;
      const err = await client.call('grpc.AgentService', 'RemoveContainer', removeC1, 5000).then(
        () => undefined,
        (e: CallError) => e,
      );
      t.match(err, { code, details: 'bad' }, `${what} over ${wire}`);
    }
  }
  // grpc-js answers a path it has no method for itself; ttrpc hands every call to call().
  const unknown = (client: RpcClient) =>
    client.call('grpc.AgentService', 'NoSuchCall', new Uint8Array(0), 5000).then(
      () => undefined,
      (e: CallError) => e,
    );
  t.match(await unknown(grpc), { code: Code.UNIMPLEMENTED });
  t.match(await unknown(ttrpc), { code: Code.UNIMPLEMENTED, details: 'unknown method /grpc.AgentService/NoSuchCall' });
});
