// agent-ctl --proto auto against servers that speak only one wire (a kata 1.x or a 3.x agent).
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { CheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from '../../protos/gen/health_pb.js';
import { healthHandlers } from '../../agent/src/health/handlers.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { AgentRpcService } from '../../agent/src/rpc/service.js';
import { GrpcTransport } from '../../agent/src/transport/grpc-transport.js';
import { TtrpcTransport } from '../../agent/src/transport/ttrpc-transport.js';
import { openClient } from '../../agent-ctl/src/main.js';
import { GrpcClient } from '../../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';

async function singleWireServer(t: { teardown(f: () => unknown): void }, serve: (c: net.Socket) => void, close: () => void) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-ctl-auto-'));
  const socket = path.join(dir, 's.sock');
  const server = net.createServer(serve);
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(async () => {
    close();
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return socket;
}

const log = createLogger('silent');
const service = new AgentRpcService(log, [], healthHandlers());
const check = toBinary(CheckRequestSchema, create(CheckRequestSchema));

for (const wire of ['grpc', 'ttrpc'] as const) {
  t.test(`auto against a ${wire}-only server picks ${wire}`, async (t) => {
    const transport = wire === 'grpc' ? new GrpcTransport(service, log) : new TtrpcTransport(service, log);
    const socket = await singleWireServer(
      t,
      (c) => transport.serve(c),
      () => transport.close(),
    );
    const client = await openClient({ address: `unix://${socket}`, proto: 'auto', hybridVsock: false, hybridVsockPort: 1024, timeoutMs: 5000 });
    t.teardown(() => client.close());
    t.ok(client instanceof (wire === 'grpc' ? GrpcClient : TtrpcClient), `a ${wire} client`);
    const res = fromBinary(HealthCheckResponseSchema, await client.call('grpc.Health', 'Check', check, 5000));
    t.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
  });
}
