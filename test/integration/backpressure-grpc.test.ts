// gRPC (kata 1.x) hosts: the agent announces at most MAX_CONCURRENT_CALLS open calls per
// connection in its HTTP/2 SETTINGS, so a host's HTTP/2 layer holds further calls back itself
// instead of the agent keeping every call it is sent open at once. Nothing is refused: the held
// calls run as earlier ones finish, and other connections are served meanwhile.
import t from 'tap';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { WaitProcessRequestSchema, WaitProcessResponseSchema } from '../../protos/gen/agent_pb.js';
import { CheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from '../../protos/gen/health_pb.js';
import { GrpcClient } from '../../agent-ctl/src/grpc-client.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { MAX_CONCURRENT_CALLS } from '../../agent/src/transport/grpc-transport.js';
import { serveInProcess } from '../helpers/in-process.js';

// WaitProcess blocks until the test releases it, like a real long-poll; counted while it runs.
const running = { now: 0, max: 0 };
const waiting: ((status: number) => void)[] = [];
const handlers = {
  waitProcess: () => {
    running.max = Math.max(running.max, ++running.now);
    return new Promise<{ status: number }>((resolve) => waiting.push((status) => resolve({ status }))).finally(() => running.now--);
  },
};
const tick = () => new Promise((r) => setImmediate(r));

t.test(`more than ${MAX_CONCURRENT_CALLS} long calls on one gRPC connection: held back by HTTP/2, all answered`, async (t) => {
  const srv = await serveInProcess('iorel-bp-grpc', handlers as never);
  t.teardown(() => srv.close());
  const client = new GrpcClient(await connect(`unix://${srv.socket}`, 5000));
  t.teardown(() => client.close());
  const total = MAX_CONCURRENT_CALLS + 44;
  const req = toBinary(WaitProcessRequestSchema, create(WaitProcessRequestSchema, { containerId: 'c' }));
  let answered = 0;
  const calls = Array.from({ length: total }, (_, i) =>
    client.call('grpc.AgentService', 'WaitProcess', req, 60_000).then((bytes) => {
      answered++;
      return fromBinary(WaitProcessResponseSchema, bytes).status === i % 7;
    }),
  );
  while (running.now < MAX_CONCURRENT_CALLS) await tick();
  t.equal(waiting.length, MAX_CONCURRENT_CALLS, 'the agent has the announced number open');

  const other = new GrpcClient(await connect(`unix://${srv.socket}`, 5000));
  t.teardown(() => other.close());
  const check = fromBinary(
    HealthCheckResponseSchema,
    await other.call('grpc.Health', 'Check', toBinary(CheckRequestSchema, create(CheckRequestSchema)), 10_000),
  );
  t.equal(check.status, HealthCheckResponse_ServingStatus.SERVING, 'another connection is served meanwhile');

  // Release calls in the order they started; held-back calls start as slots free up.
  let released = 0;
  while (answered < total) {
    while (released < waiting.length) waiting[released](released++ % 7);
    await tick();
  }
  t.ok((await Promise.all(calls)).every(Boolean), 'every call answered with its own result');
  t.equal(running.max, MAX_CONCURRENT_CALLS, `never more than ${MAX_CONCURRENT_CALLS} calls open at once`);
});
