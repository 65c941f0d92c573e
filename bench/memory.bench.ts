// Agent memory from /proc: idle, after 1,000 RPCs. Peer: an idle Node process (the runtime's floor).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { GrpcClient } from '../agent-ctl/src/grpc-client.js';
import type { BenchOptions, BenchRow } from './types.js';
import { agentBin, connectWhenReady, memoryOf, sleep, tempDir } from './support.js';

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const rounds = opts.quick ? 2 : 5;
  const dir = tempDir('kata-bench-mem-');
  const idle: number[] = [];
  const busy: number[] = [];
  const idlePss: number[] = [];
  const nodeIdle: number[] = [];
  for (let r = 0; r < rounds; r++) {
    opts.progress(`memory round ${r + 1}/${rounds}`);
    const sock = path.join(dir, `m${r}.sock`);
    const agent = spawn(process.execPath, [agentBin], { env: { ...process.env, KATA_AGENT_SERVER_ADDR: `unix://${sock}`, KATA_AGENT_LOG_LEVEL: 'warn' }, stdio: 'ignore' });
    const peer = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const client = new GrpcClient(await connectWhenReady(sock, 10_000));
      await client.call('grpc.Health', 'Check', new Uint8Array(0), 5000);
      await sleep(1000);
      const m = memoryOf(agent.pid!);
      idle.push(m.rssAnon);
      idlePss.push(m.pss);
      nodeIdle.push(memoryOf(peer.pid!).rssAnon);
      for (let i = 0; i < 1000; i++) await client.call(i % 2 ? 'grpc.Health' : 'grpc.AgentService', i % 2 ? 'Check' : 'GetGuestDetails', new Uint8Array(0), 5000);
      await sleep(500);
      busy.push(memoryOf(agent.pid!).rssAnon);
      client.close();
    } finally {
      for (const c of [agent, peer]) {
        const exited = new Promise((res) => c.once('exit', res));
        process.kill(c.pid!, 'SIGKILL');
        await exited;
      }
    }
  }
  const peerRow = { name: 'idle node', samples: nodeIdle };
  return [
    { measure: 'agent RssAnon idle', unit: 'MB', higherIsBetter: false, ours: { name: 'kata-agent-ts', samples: idle }, peer: peerRow, target: '≤ 15 MB' },
    { measure: 'agent RssAnon after 1,000 RPCs', unit: 'MB', higherIsBetter: false, ours: { name: 'kata-agent-ts', samples: busy }, peer: peerRow },
    { measure: 'agent PSS idle', unit: 'MB', higherIsBetter: false, ours: { name: 'kata-agent-ts', samples: idlePss } },
  ];
}
