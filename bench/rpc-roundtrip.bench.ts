// Check round trip per wire against a real agent process on one unix socket: ttrpc (ours, the kata
// 3.x wire) against gRPC (the 1.x wire) measured in the same run, sequential calls on one
// connection each, alternating in blocks so machine noise falls on both alike.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { CheckRequestSchema } from '../protos/gen/health_pb.js';
import { connect } from '../agent-ctl/src/connect.js';
import { GrpcClient, type RpcClient } from '../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../agent-ctl/src/ttrpc-client.js';
import type { BenchOptions, BenchRow } from './types.js';

const repoRoot = path.resolve(__dirname, '../..');

async function startAgent(socket: string, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/kata-agent'), '--server-addr', `unix://${socket}`, '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let log = '';
  child.stderr!.on('data', (c: Buffer) => (log += c));
  // warn level hides "agent listening": poll for the socket instead.
  for (let i = 0; i < 200 && !fs.existsSync(socket); i++) {
    if (child.exitCode !== null) throw new Error(`agent exited: ${log}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!fs.existsSync(socket)) throw new Error(`agent did not listen on ${socket}: ${log}`);
  return child;
}

async function block(client: RpcClient, req: Uint8Array, n: number, out: number[]) {
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await client.call('grpc.Health', 'Check', req, 5000);
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-bench-rpc-'));
  const socket = path.join(dir, 'agent.sock');
  const child = await startAgent(socket);
  const ttrpc = new TtrpcClient(await connect(`unix://${socket}`, { timeoutMs: 5000 }));
  const grpc = new GrpcClient(await connect(`unix://${socket}`, { timeoutMs: 5000 }));
  const req = toBinary(CheckRequestSchema, create(CheckRequestSchema));
  const total = opts.quick ? 4000 : 40000;
  const blockSize = 500;
  // The same agent with its heap tuning off (agent/src/memory/heap-tuning.ts): what the tuning costs.
  const untunedSocket = path.join(dir, 'untuned.sock');
  const untunedChild = await startAgent(untunedSocket, { KATA_AGENT_HEAP_TUNING: '0' });
  const untuned = new TtrpcClient(await connect(`unix://${untunedSocket}`, { timeoutMs: 5000 }));
  // gRPC on our own HTTP/2 (agent/src/transport/grpc-h2-server.ts) instead of grpc-js.
  const ownSocket = path.join(dir, 'own.sock');
  const ownChild = await startAgent(ownSocket, { KATA_AGENT_GRPC_SERVER: 'own' });
  const own = new GrpcClient(await connect(`unix://${ownSocket}`, { timeoutMs: 5000 }));
  const ownSamples: number[] = [];
  const ours: number[] = [];
  const peer: number[] = [];
  const untunedSamples: number[] = [];
  try {
    await block(ttrpc, req, 300, []);
    await block(grpc, req, 300, []);
    await block(untuned, req, 300, []);
    await block(own, req, 300, []);
    for (let done = 0; done < total; done += blockSize) {
      await block(ttrpc, req, blockSize, ours);
      await block(grpc, req, blockSize, peer);
      await block(untuned, req, blockSize, untunedSamples);
      await block(own, req, blockSize, ownSamples);
      opts.progress(`rpc-roundtrip: ${done + blockSize}/${total} calls per wire`);
    }
  } finally {
    ttrpc.close();
    grpc.close();
    untuned.close();
    own.close();
    for (const c of [child, untunedChild, ownChild]) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return [
    {
      measure: 'Check round trip, one unix socket (ttrpc vs gRPC)',
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'ttrpc', samples: ours },
      peer: { name: 'gRPC (HTTP/2)', samples: peer },
      target: 'ttrpc median ≤ 0.3 ms',
    },
    {
      measure: "ttrpc Check round trip, heap tuned vs not (the memory tuning's price)",
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'tuned (default)', samples: ours },
      peer: { name: 'KATA_AGENT_HEAP_TUNING=0', samples: untunedSamples },
      target: 'stated trade: memory after bursts against latency',
    },
    {
      measure: 'gRPC Check round trip, our own HTTP/2 server (KATA_AGENT_GRPC_SERVER=own) vs grpc-js',
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'own HTTP/2', samples: ownSamples },
      peer: { name: 'grpc-js (default)', samples: peer },
      target: "issue 15: at or below the Go agent's",
    },
  ];
}
