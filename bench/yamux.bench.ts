// yamux overhead against the same work on a plain unix socket, in the same run: gRPC Check round
// trips (one connection, sequential calls) and bulk bytes through one stream.
import { create, toBinary } from '@bufbuild/protobuf';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { GrpcClient } from '../agent-ctl/src/grpc-client.js';
import { healthHandlers } from '../agent/src/health/handlers.js';
import { createLogger } from '../agent/src/log/logger.js';
import { AgentRpcService } from '../agent/src/rpc/service.js';
import { GrpcTransport } from '../agent/src/transport/grpc-transport.js';
import { YamuxClient } from '../agent/src/transport/yamux/client.js';
import { serveYamux } from '../agent/src/transport/yamux/server.js';
import { CheckRequestSchema } from '../protos/gen/health_pb.js';
import type { BenchOptions, BenchRow } from './types.js';

type Opener = () => Promise<Duplex>;

/** A unix socket server whose connections go to `serve`, and a way to open connections to it. */
async function endpoint(serve: (conn: net.Socket) => void): Promise<{ connect: () => Promise<net.Socket>; close: () => void }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-yamux-'));
  const sock = path.join(dir, 's.sock');
  const server = net.createServer(serve);
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  return {
    connect: () =>
      new Promise((resolve, reject) => {
        const c = net.connect(sock, () => resolve(c));
        c.once('error', reject);
      }),
    close: () => {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function checkLatency(open: Opener, calls: number): Promise<number[]> {
  const rpc = new GrpcClient(await open());
  const req = toBinary(CheckRequestSchema, create(CheckRequestSchema, {}));
  for (let i = 0; i < 20; i++) await rpc.call('grpc.Health', 'Check', req, 10_000); // warm-up
  const out: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    await rpc.call('grpc.Health', 'Check', req, 10_000);
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  rpc.close();
  return out;
}

/** MB/s of `bytes` written on one stream and counted by a sink on the other side. */
async function throughput(open: Opener, sinkDone: () => Promise<number>, bytes: number): Promise<number> {
  const chunk = crypto.randomBytes(64 * 1024);
  const s = await open();
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!s.write(chunk)) await new Promise((resolve) => s.once('drain', resolve));
  }
  s.end();
  const got = await sinkDone();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (got !== bytes) throw new Error(`sink counted ${got} of ${bytes} bytes`);
  return bytes / 1e6 / secs;
}

function sink(conn: Duplex, done: (n: number) => void): void {
  let n = 0;
  conn.on('data', (c: Buffer) => (n += c.length));
  conn.on('end', () => {
    done(n);
    conn.end();
  });
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const calls = opts.quick ? 300 : 2000;
  const runs = opts.quick ? 3 : 10;
  const bytes = (opts.quick ? 32 : 128) * 1024 * 1024;
  const log = createLogger('fatal');
  const grpc = new GrpcTransport(new AgentRpcService(log, [], healthHandlers()), log);

  // Check round trips.
  const plain = await endpoint((c) => grpc.serve(c));
  const muxed = await endpoint((c) => serveYamux(c, (s) => grpc.serve(s)));
  const yc = new YamuxClient(await muxed.connect());
  opts.progress(`Check x${calls}: plain unix socket`);
  const plainLat = await checkLatency(plain.connect, calls);
  opts.progress(`Check x${calls}: yamux stream`);
  const muxLat = await checkLatency(async () => yc.open(), calls);
  yc.close();
  plain.close();
  muxed.close();

  // Bulk bytes.
  let resolveSink: (n: number) => void = () => undefined;
  const nextSink = () => new Promise<number>((resolve) => (resolveSink = resolve));
  const rawEnd = await endpoint((c) => sink(c, (n) => resolveSink(n)));
  const muxEnd = await endpoint((c) => serveYamux(c, (s) => sink(s, (n) => resolveSink(n))));
  const bulkClient = new YamuxClient(await muxEnd.connect());
  const rawMBs: number[] = [];
  const muxMBs: number[] = [];
  for (let i = 0; i < runs; i++) {
    opts.progress(`bulk ${bytes >> 20} MB run ${i + 1}/${runs}`);
    let p = nextSink();
    rawMBs.push(await throughput(rawEnd.connect, () => p, bytes));
    p = nextSink();
    muxMBs.push(
      await throughput(
        async () => bulkClient.open(),
        () => p,
        bytes,
      ),
    );
  }
  bulkClient.close();
  rawEnd.close();
  muxEnd.close();
  grpc.close();

  return [
    {
      measure: 'gRPC Check round trip, yamux stream vs plain unix socket',
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'yamux', samples: muxLat },
      peer: { name: 'unix socket', samples: plainLat },
    },
    {
      measure: `one-stream bulk transfer (${bytes >> 20} MB), yamux vs plain unix socket`,
      unit: 'MB/s',
      higherIsBetter: true,
      ours: { name: 'yamux', samples: muxMBs },
      peer: { name: 'unix socket', samples: rawMBs },
    },
  ];
}
