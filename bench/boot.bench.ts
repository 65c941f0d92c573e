// Boot → agent ready: QEMU started until the agent's "agent listening" line on the console, against
// a busybox-shell init booted the same way (same kernel, initrd, QEMU flags) in the same run.
// Target from issue 4: ≤ 1.5× the shell init. Also: QEMU started until a host's first Check is
// answered over the virtio-serial channel (ttrpc in a yamux stream), the wait a kata host sees; and
// that wait with our own kernel (build/kata, `npm run image -- --kernel kata --out build/kata`) in
// each of kata's boot modes, against today's initrd boot with Debian's kernel.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TtrpcClient } from '../agent-ctl/src/ttrpc-client.js';
import { connectYamuxUnix } from '../agent/src/transport/yamux/client.js';
import { agentReady, assetsIn, bootGuest, chooseAccelerator, guestSkipReason, repoRoot, type BootOptions } from '../test/support/qemu.js';
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

/** QEMU start → the answer to a Check the host sent as soon as QEMU's channel socket existed. */
async function firstCheckOnce(boot: Omit<BootOptions, 'serialSocket'> = { mode: 'initrd' }): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-boot-bench-'));
  const sock = path.join(dir, 'agent.sock');
  const vm = await bootGuest({ ...boot, serialSocket: sock });
  try {
    // QEMU makes the socket a moment after it starts; the host's bytes then wait in the port until
    // the agent opens it, as a kata host's first call does.
    while (!fs.existsSync(sock)) await new Promise((r) => setTimeout(r, 2));
    const yamux = await connectYamuxUnix(sock, 10_000, { pingIntervalMs: 0 });
    try {
      const stream = yamux.open();
      stream.on('error', () => undefined);
      await new TtrpcClient(stream).call('grpc.Health', 'Check', new Uint8Array(0), 300_000);
      return Number(process.hrtime.bigint() - vm.startedAt) / 1e6;
    } finally {
      yamux.close();
    }
  } finally {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const reason = guestSkipReason();
  if (reason) throw new Error(`boot bench cannot run: ${reason}`);
  // The same choice as the tests and the demo, made before the first timed boot.
  const { accel, why } = await chooseAccelerator();
  opts.progress(`boot: QEMU under ${accel} (${why})`);
  const runs = opts.quick ? 3 : 9;
  const ours: number[] = [];
  const peer: number[] = [];
  const nodeFloor: number[] = [];
  const firstCheck: number[] = [];
  // Interleaved, so load from other work on the machine hits both sides alike.
  for (let i = 0; i < runs; i++) {
    peer.push(await bootOnce('/usr/share/kata-agent/shell-init', shellReady));
    ours.push(await bootOnce(undefined, agentReady));
    nodeFloor.push(await bootOnce('/usr/share/kata-agent/node-init', /node init ready/));
    firstCheck.push(await firstCheckOnce());
    opts.progress(
      `boot ${i + 1}/${runs}: shell ${peer[i].toFixed(0)} ms, agent ${ours[i].toFixed(0)} ms, node alone ${nodeFloor[i].toFixed(0)} ms, first Check ${firstCheck[i].toFixed(0)} ms`,
    );
  }
  // Our kernel in kata's three modes, if built: the same wait, against the Debian-kernel initrd boot.
  const kata = assetsIn(path.join(repoRoot, 'build', 'kata'));
  const kataModes: BootOptions['mode'][] = ['nvdimm', 'virtio-blk', 'initrd'];
  const kataRows: BenchRow[] = [];
  if ([kata.kernel, kata.initrd, kata.image].every((f) => fs.existsSync(f))) {
    for (const mode of kataModes) {
      const samples: number[] = [];
      for (let i = 0; i < runs; i++) samples.push(await firstCheckOnce({ mode, assets: kata }));
      opts.progress(`boot, our kernel, ${mode}: first Check ${samples.map((x) => x.toFixed(0)).join(', ')} ms`);
      kataRows.push({
        measure: `QEMU start → first Check answered, our kernel, ${mode === 'initrd' ? 'initrd =' : `image = over ${mode}`}`,
        unit: 'ms',
        higherIsBetter: false,
        ours: { name: `our kernel, ${mode}`, samples },
        peer: { name: "Debian's kernel, initrd (the row above)", samples: firstCheck },
        target: 'no slower than the Debian-kernel initrd boot',
      });
    }
  } else {
    opts.progress('boot: build/kata not built (npm run image -- --kernel kata --out build/kata): our-kernel rows left out');
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
    {
      measure: 'QEMU start → first Check answered (ttrpc over virtio-serial yamux)',
      unit: 'ms',
      higherIsBetter: false,
      ours: { name: 'kata-agent-ts as PID 1', samples: firstCheck },
      peer: { name: 'busybox sh as PID 1 (ready line)', samples: peer },
      target: 'what a kata host waits for',
    },
    ...kataRows,
  ];
}

if (require.main === module) {
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  measure({ quick: process.argv.includes('--quick'), progress: (m) => console.error(m) }).then(
    (rows) => {
      for (const r of rows) {
        const o = median(r.ours.samples);
        const p = r.peer ? median(r.peer.samples) : NaN;
        console.log(
          `${r.measure}: ours median ${o.toFixed(0)} ${r.unit}, ${r.peer?.name} median ${p.toFixed(0)} ${r.unit}, ratio ${(o / p).toFixed(2)} (target ${r.target})`,
        );
      }
    },
    (err) => {
      console.error(err.message);
      process.exit(1);
    },
  );
}
