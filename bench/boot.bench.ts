// Boot → agent ready: QEMU started until the agent's "agent listening" line on the console, against
// a busybox-shell init booted the same way (same kernel, initrd, QEMU flags) in the same run.
// Target from issue 4: ≤ 1.5× the shell init.
import { agentReady, bootGuest, guestSkipReason } from '../test/support/qemu.js';
import type { BenchOptions, BenchRow } from './types.js';

const shellReady = /shell init ready/;

async function bootOnce(init: string | undefined, ready: RegExp): Promise<number> {
  const vm = await bootGuest({ mode: 'initrd', init });
  try {
    await vm.waitFor(ready, 300_000);
    return Number(process.hrtime.bigint() - vm.startedAt) / 1e6;
  } finally {
    await vm.kill();
  }
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const reason = guestSkipReason();
  if (reason) throw new Error(`boot bench cannot run: ${reason}`);
  const runs = opts.quick ? 3 : 9;
  const ours: number[] = [];
  const peer: number[] = [];
  const nodeFloor: number[] = [];
  // Interleaved, so load from other work on the machine hits both sides alike.
  for (let i = 0; i < runs; i++) {
    peer.push(await bootOnce('/usr/share/kata-agent/shell-init', shellReady));
    ours.push(await bootOnce(undefined, agentReady));
    nodeFloor.push(await bootOnce('/usr/share/kata-agent/node-init', /node init ready/));
    opts.progress(`boot ${i + 1}/${runs}: shell ${peer[i].toFixed(0)} ms, agent ${ours[i].toFixed(0)} ms, node alone ${nodeFloor[i].toFixed(0)} ms`);
  }
  return [
    {
      measure: 'QEMU start → ready (initrd)',
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'kata-agent-ts as PID 1', samples: ours },
      peer: { name: 'busybox sh as PID 1', samples: peer },
      target: '≤ 1.5× the shell init',
    },
    {
      measure: 'QEMU start → ready (initrd), against Node alone as PID 1',
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'kata-agent-ts as PID 1', samples: ours },
      peer: { name: 'node -e as PID 1', samples: nodeFloor },
      target: 'what the agent adds to the runtime it runs on',
    },
  ];
}

if (require.main === module) {
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  measure({ quick: process.argv.includes('--quick'), progress: (m) => console.error(m) }).then(
    (rows) => {
      for (const r of rows) {
        const o = median(r.ours.samples);
        const p = r.peer ? median(r.peer.samples) : NaN;
        console.log(`${r.measure}: ours median ${o.toFixed(0)} ${r.unit}, ${r.peer?.name} median ${p.toFixed(0)} ${r.unit}, ratio ${(o / p).toFixed(2)} (target ${r.target})`);
      }
    },
    (err) => {
      console.error(err.message);
      process.exit(1);
    },
  );
}
