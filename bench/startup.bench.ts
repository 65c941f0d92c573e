// Agent start → first Check answered (standalone, unix socket), against Node's own start-up floor
// (`node -e 0`) measured in the same run: what the agent adds on top of the runtime it runs on.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { GrpcClient } from '../agent-ctl/src/grpc-client.js';
import type { BenchOptions, BenchRow } from './types.js';
import { agentBin, connectWhenReady, runToExit, tempDir, time } from './support.js';

async function startToFirstCheck(dir: string, i: number): Promise<number> {
  const sock = path.join(dir, `s${i}.sock`);
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, [agentBin], { env: { ...process.env, KATA_AGENT_SERVER_ADDR: `unix://${sock}`, KATA_AGENT_LOG_LEVEL: 'warn' }, stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    const client = new GrpcClient(await connectWhenReady(sock, 10_000));
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
  const ours: number[] = [];
  const peer: number[] = [];
  for (let i = 0; i < n; i++) {
    opts.progress(`start→first Check ${i + 1}/${n}`);
    // Interleave so both see the same machine load.
    ours.push(await startToFirstCheck(dir, i));
    peer.push(await time(() => runToExit(process.execPath, ['-e', '0'])));
  }
  return [
    {
      measure: 'agent start → first Check (unix)',
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'kata-agent-ts', samples: ours },
      peer: { name: 'node -e 0', samples: peer },
      target: '≤ 135 ms (Go agent 1.x)',
    },
  ];
}
