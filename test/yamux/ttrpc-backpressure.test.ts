// ttrpc carried in a yamux stream: a host that pipelines ReadStdout of a chatty process on it and
// never reads makes the agent stop reading that stream (yamux then stops granting it window), and
// every answer still arrives once the host reads.
import t from 'tap';
import { create, toBinary } from '@bufbuild/protobuf';
import { ReadStreamRequestSchema } from '../../protos/gen/agent_pb.js';
import { RequestSchema } from '../../protos/gen/ttrpc_pb.js';
import { healthHandlers } from '../../agent/src/health/handlers.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { AgentRpcService } from '../../agent/src/rpc/service.js';
import type { TtrpcConnection } from '../../agent/src/transport/ttrpc/connection.js';
import { encodeFrame, FrameReader, FrameType } from '../../agent/src/transport/ttrpc/frame.js';
import { TtrpcTransport } from '../../agent/src/transport/ttrpc-transport.js';
import { YamuxClient } from '../../agent/src/transport/yamux/client.js';
import { serveYamux } from '../../agent/src/transport/yamux/server.js';
import { socketPair } from './pair.js';

const CHATTY = 32 * 1024;
const tick = () => new Promise((r) => setImmediate(r));

t.test('ttrpc over a yamux stream: a host that never reads is not buffered without bound', async (t) => {
  const log = createLogger('silent');
  const service = new AgentRpcService(log, [{ readStdout: () => ({ data: Buffer.alloc(CHATTY, 0x62) }) }], healthHandlers());
  const ttrpc = new TtrpcTransport(service, log);
  const pair = await socketPair();
  t.teardown(() => {
    ttrpc.close();
    pair.close();
  });
  const conns: TtrpcConnection[] = [];
  serveYamux(pair.server, (stream) => conns.push(ttrpc.serve(stream)));
  const client = new YamuxClient(pair.client, { pingIntervalMs: 0 });
  const stream = client.open();
  // Teardown closes the session under it.
  stream.on('error', () => undefined);
  stream.pause();
  const total = 1500;
  const payload = toBinary(ReadStreamRequestSchema, create(ReadStreamRequestSchema, { containerId: 'c', len: CHATTY }));
  const env = toBinary(RequestSchema, create(RequestSchema, { service: 'grpc.AgentService', method: 'ReadStdout', payload }));
  for (let i = 0; i < total; i++) stream.write(encodeFrame(1 + 2 * i, FrameType.Request, 0, env));
  while (!(conns[0] && ((conns[0].readingPaused && conns[0].inFlight === 0) || conns[0].framesRead === total))) await tick();
  t.ok(conns[0].framesRead < total, `the agent stopped reading: ${conns[0].framesRead} of ${total}`);

  const reader = new FrameReader();
  let answers = 0;
  let ok = 0;
  await new Promise<void>((resolve) => {
    stream.on('data', (chunk: Buffer) => {
      for (const ev of reader.push(chunk)) {
        answers++;
        if (ev.kind === 'frame' && ev.header.streamId === 2 * answers - 1 && ev.data.length > CHATTY) ok++;
      }
      if (answers === total) resolve();
    });
    stream.resume();
  });
  t.equal(ok, total, 'every answer arrived, in order, with its data');
});
