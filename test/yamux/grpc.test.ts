// Real gRPC through yamux: the agent's GrpcTransport serves each accepted stream, and agent-ctl's
// HTTP/2 client calls through streams the host-side YamuxClient opens.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import t, { type Test } from 'tap';
import { GrpcClient } from '../../agent-ctl/src/grpc-client.js';
import { healthHandlers } from '../../agent/src/health/handlers.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { AgentRpcService } from '../../agent/src/rpc/service.js';
import { GrpcTransport } from '../../agent/src/transport/grpc-transport.js';
import { YamuxClient } from '../../agent/src/transport/yamux/client.js';
import { serveYamux } from '../../agent/src/transport/yamux/server.js';
import { CheckRequestSchema, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema, VersionCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { agentVersion } from '../../agent/src/version.js';
import { badOpenings } from '../helpers/raw-http2.js';
import { socketPair, whenClosed } from './pair.js';

const log = createLogger('fatal');

async function setup(t: Test) {
  const pair = await socketPair();
  const grpc = new GrpcTransport(new AgentRpcService(log, [], healthHandlers()), log);
  const server = serveYamux(pair.server, (s) => grpc.serve(s));
  const client = new YamuxClient(pair.client, { pingIntervalMs: 0 });
  t.teardown(() => {
    client.close();
    server.close();
    grpc.close();
    pair.close();
  });
  return { server, client };
}

const check = toBinary(CheckRequestSchema, create(CheckRequestSchema, {}));

t.test('Check and Version over a yamux stream', async (t) => {
  const { client } = await setup(t);
  const rpc = new GrpcClient(client.open());
  const health = fromBinary(HealthCheckResponseSchema, await rpc.call('grpc.Health', 'Check', check, 5000));
  t.equal(health.status, HealthCheckResponse_ServingStatus.SERVING);
  const version = fromBinary(VersionCheckResponseSchema, await rpc.call('grpc.Health', 'Version', check, 5000));
  t.equal(version.agentVersion, agentVersion);
  rpc.close();
});

t.test('50 gRPC connections on 50 streams at once, then all streams close', async (t) => {
  const { server, client } = await setup(t);
  const n = 50;
  const streams = Array.from({ length: n }, () => client.open());
  const rpcs = streams.map((s) => new GrpcClient(s));
  const answers = await Promise.all(
    rpcs.map(async (rpc) => {
      const replies = await Promise.all([1, 2, 3].map(() => rpc.call('grpc.Health', 'Check', check, 10_000)));
      return replies.every((r) => fromBinary(HealthCheckResponseSchema, r).status === HealthCheckResponse_ServingStatus.SERVING);
    }),
  );
  t.equal(answers.filter(Boolean).length, n, 'every connection got SERVING three times');
  t.equal(server.stats.streamsAccepted, n);
  rpcs.forEach((r) => r.close());
  await Promise.all(streams.map(whenClosed));
  await client.ping(5000); // the server has seen every FIN/RST by now
  t.equal(server.streamCount, 0, 'closing the gRPC clients released every stream on the agent side');
});

t.test('an unknown RPC is UNIMPLEMENTED and the session keeps serving', async (t) => {
  const { client } = await setup(t);
  const rpc = new GrpcClient(client.open());
  await t.rejects(rpc.call('grpc.AgentService', 'CreateContainer', new Uint8Array(), 5000), { code: 12 });
  const health = fromBinary(HealthCheckResponseSchema, await rpc.call('grpc.Health', 'Check', check, 5000));
  t.equal(health.status, HealthCheckResponse_ServingStatus.SERVING);
  rpc.close();
});

t.test('a stream whose HTTP/2 fails is closed by the agent, and the session keeps serving', async (t) => {
  const { server, client } = await setup(t);
  const bad = Object.values(badOpenings).map((bytes) => {
    const s = client.open();
    s.on('error', () => undefined);
    s.resume();
    s.write(bytes);
    return whenClosed(s);
  });
  // Each stream is ended and reset by the agent, not left open (bounded, so a leak fails instead of hanging).
  const closed = await Promise.race([Promise.all(bad).then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 5000).unref())]);
  t.ok(closed, `the agent closed all ${bad.length} streams`);
  await client.ping(5000);
  t.equal(server.streamCount, 0, `all ${bad.length} streams gone on the agent side`);
  const rpc = new GrpcClient(client.open());
  const health = fromBinary(HealthCheckResponseSchema, await rpc.call('grpc.Health', 'Check', check, 5000));
  t.equal(health.status, HealthCheckResponse_ServingStatus.SERVING);
  rpc.close();
});
