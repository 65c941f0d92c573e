// Agent start → first Check answered (standalone, unix socket), over ttrpc (kata 2.x/3.x hosts) and
// gRPC (kata 1.x), against Node's own start-up floor (`node -e 0`) measured in the same run.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { GrpcClient, type RpcClient } from '../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../agent-ctl/src/ttrpc-client.js';
import type { BenchOptions, BenchRow } from './types.js';
import { agentBin, connectWhenReady, runToExit, tempDir, time } from './support.js';

type Wire = 'ttrpc' | 'grpc';

async function startToFirstCheck(dir: string, i: number, wire: Wire): Promise<number> {
  const sock = path.join(dir, `s${i}.sock`);
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, [agentBin, '--state-root', path.join(dir, `state${i}`)], {
    env: { ...process.env, KATA_AGENT_SERVER_ADDR: `unix://${sock}`, KATA_AGENT_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    const conn = await connectWhenReady(sock, 10_000);
    const client: RpcClient = wire === 'grpc' ? new GrpcClient(conn) : new TtrpcClient(conn);
    await client.call('grpc.Health', 'Check', new Uint8Array(0), 5000);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    client.close();
    return ms;
  } finally {
    process.kill(child.pid!, 'SIGKILL');
    await exited;
  }
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const n = opts.quick ? 5 : 20;
  const dir = tempDir('kata-bench-start-');
  const ours: Record<Wire, number[]> = { ttrpc: [], grpc: [] };
  const peer: number[] = [];
  for (let i = 0; i < n; i++) {
    opts.progress(`start→first Check ${i + 1}/${n}`);
    // Interleaved so every series sees the same machine load.
    ours.ttrpc.push(await startToFirstCheck(dir, 2 * i, 'ttrpc'));
    ours.grpc.push(await startToFirstCheck(dir, 2 * i + 1, 'grpc'));
    peer.push(await time(() => runToExit(process.execPath, ['-e', '0'])));
  }
  return (['ttrpc', 'grpc'] as Wire[]).map((wire) => ({
    measure: `agent start → first Check (unix, ${wire})`,
    unit: 'ms',
    higherIsBetter: false,
    ours: { name: 'kata-agent-ts', samples: ours[wire] },
    peer: { name: 'node -e 0', samples: peer },
    target: '≤ 135 ms (Go agent 1.x)',
  }));
}
