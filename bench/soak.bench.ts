// Soak: one agent process (bin/kata-agent on a unix socket) through two rounds of 100 containers run
// in parallel, 1,000 execs and 100k fuzzed frames, with its open fds, RssAnon and zombie children read before and
// after. The "peer" column of each figure is its value before the soak, so the ratio shows growth.
// Root only (containers). `npm run bench -- --only soak`; --quick runs a tenth of it.
import fs from 'node:fs';
import { create, fromBinary, toBinary, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { AgentService, GuestDetailsRequestSchema } from '../protos/gen/agent_pb.js';
import { HTTP2_PREFACE } from '../agent/src/transport/wire-router.js';
import { connect } from '../agent-ctl/src/connect.js';
import { TtrpcClient } from '../agent-ctl/src/ttrpc-client.js';
import { startAgentProcess, tempDir } from '../test/support/agent-process.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../test/support/busybox-rootfs.js';
import { readToEnd } from '../test/support/end-of-stream.js';
import { fdsSettle, fdsSteady, fuzzFrames, grpcSeeds, mutate, prng, ttrpcSeeds, zombiesOf } from '../test/support/fuzz.js';
import { busyboxSpec } from '../test/support/oci-spec.js';
import type { BenchOptions, BenchRow } from './types.js';

type Methods = typeof AgentService.method;

function rssAnonMB(pid: number): number {
  const m = /^RssAnon:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Runs `n` tasks, at most `parallel` at a time. */
async function pool(n: number, parallel: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, n) }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

export async function measure(opts: BenchOptions): Promise<BenchRow[]> {
  const skip = containerTestSkipReason();
  if (skip) {
    opts.progress(`soak: skipped (${skip})`);
    return [];
  }
  const scale = opts.quick ? 0.1 : 1;
  const containers = Math.round(100 * scale);
  const execs = Math.round(1000 * scale);
  const frames = Math.round(100_000 * scale);
  const agent = await startAgentProcess({ env: { KATA_AGENT_LOG_LEVEL: 'info' } });
  const ctl = new TtrpcClient(await connect(`unix://${agent.socketPath}`, { timeoutMs: 5000 }));
  const call = async <K extends keyof Methods>(
    method: K,
    req: MessageInitShape<Methods[K]['input']>,
    timeoutMs = 120_000,
  ): Promise<MessageShape<Methods[K]['output']>> => {
    const m = AgentService.method[method];
    return fromBinary(m.output, await ctl.call('grpc.AgentService', m.name, toBinary(m.input, create(m.input, req as never)), timeoutMs)) as MessageShape<
      Methods[K]['output']
    >;
  };
  try {
    // Before: after the first AgentService call (domains built, helper pool started) has settled.
    await ctl.call('grpc.AgentService', 'GetGuestDetails', toBinary(GuestDetailsRequestSchema, create(GuestDetailsRequestSchema)), 30_000);
    const before = { fds: await fdsSteady(agent.pid), rss: rssAnonMB(agent.pid), zombies: zombiesOf(agent.pid).length };
    const rootfs = buildBusyboxRootfs(tempDir('kata-soak-rootfs-'));

    // Two identical rounds: what a round leaves behind shows as growth from the first to the second;
    // V8 keeping its heap after the first burst does not (it is reused).
    const lifecycle: number[] = [];
    let execFailures = 0;
    const rand = prng(20261203);
    const tt = ttrpcSeeds();
    const h2 = await grpcSeeds();
    const round = async (r: number): Promise<void> => {
      opts.progress(`soak round ${r}: ${containers} containers in parallel (create, start, read to EOF, wait, remove)`);
      const ids = Array.from({ length: containers }, (_, i) => `soak-${process.pid}-${r}-${i}`);
      await pool(containers, containers, async (i) => {
        const id = ids[i];
        const t0 = process.hrtime.bigint();
        await call('createContainer', {
          containerId: id,
          execId: id,
          OCI: busyboxSpec(rootfs, ['/bin/sh', '-c', `echo started ${i}; while :; do sleep 1; done`]),
        });
        await call('startContainer', { containerId: id });
        lifecycle.push(Number(process.hrtime.bigint() - t0) / 1e6);
      });

      opts.progress(`soak round ${r}: ${execs} execs across them, 16 at a time`);
      await pool(execs, 16, async (i) => {
        const id = ids[i % containers];
        const execId = `x${r}-${i}`;
        await call('execProcess', {
          containerId: id,
          execId,
          process: { Args: ['/bin/echo', `exec ${i}`], Env: ['PATH=/bin'], Cwd: '/', User: { UID: 0, GID: 0 } },
        });
        const out = await readToEnd(() => call('readStdout', { containerId: id, execId, len: 32768 }), `exec ${execId}`);
        const { status } = await call('waitProcess', { containerId: id, execId });
        if (status !== 0 || out.toString() !== `exec ${i}\n`) execFailures++;
      });

      opts.progress(`soak round ${r}: ${frames} fuzzed frames (half ttrpc, half HTTP/2) while the containers run`);
      await fuzzFrames(agent.socketPath, frames / 2, () => ({
        first: Buffer.alloc(0),
        frames: Array.from({ length: 50 }, () => mutate(rand, tt[Math.floor(rand() * tt.length)], 10)),
      }));
      await fuzzFrames(agent.socketPath, frames / 2, () => ({
        first: HTTP2_PREFACE,
        frames: Array.from({ length: 50 }, () => mutate(rand, h2[Math.floor(rand() * h2.length)], 9)),
      }));

      opts.progress(`soak round ${r}: stopping every container`);
      await pool(containers, containers, async (i) => {
        const id = ids[i];
        await call('signalProcess', { containerId: id, execId: '', signal: 9 });
        await readToEnd(() => call('readStdout', { containerId: id, execId: id, len: 32768 }), `init ${id}`);
        await call('waitProcess', { containerId: id, execId: id });
        await call('removeContainer', { containerId: id });
      });
    };
    await round(1);
    await fdsSettle(agent.pid, before.fds);
    await new Promise((r) => setTimeout(r, 1000));
    const afterFirst = rssAnonMB(agent.pid);
    await round(2);
    const fdsAfter = await fdsSettle(agent.pid, before.fds);
    await new Promise((r) => setTimeout(r, 1000));
    const after = { fds: fdsAfter, rss: rssAnonMB(agent.pid), zombies: zombiesOf(agent.pid).length };
    opts.progress(
      `soak: fds ${before.fds} → ${after.fds}, RssAnon ${before.rss.toFixed(1)} → ${afterFirst.toFixed(1)} (round 1) → ${after.rss.toFixed(1)} MB (round 2), zombies ${before.zombies} → ${after.zombies}, exec failures ${execFailures}`,
    );
    if (execFailures > 0) throw new Error(`${execFailures} of ${2 * execs} execs failed or lost output`);
    const beforeSoak = (v: number) => ({ name: 'before the soak', samples: [v] });
    return [
      { measure: `soak: ${containers} parallel containers, create+start`, unit: 'ms', higherIsBetter: false, ours: { name: 'agent', samples: lifecycle } },
      {
        measure: 'soak: agent open fds after / before',
        unit: 'fds',
        higherIsBetter: false,
        ours: { name: 'agent', samples: [after.fds] },
        peer: beforeSoak(before.fds),
        target: 'ratio 1.00',
      },
      {
        measure: 'soak: agent RssAnon after round 1 / before',
        unit: 'MB',
        higherIsBetter: false,
        ours: { name: 'agent', samples: [afterFirst] },
        peer: beforeSoak(before.rss),
      },
      {
        measure: 'soak: agent RssAnon after round 2 / after round 1 (growth per round)',
        unit: 'MB',
        higherIsBetter: false,
        ours: { name: 'agent', samples: [after.rss] },
        peer: { name: 'after round 1', samples: [afterFirst] },
      },
      { measure: 'soak: zombie children after', unit: 'processes', higherIsBetter: false, ours: { name: 'agent', samples: [after.zombies] }, target: '0' },
    ];
  } finally {
    ctl.close();
    await agent.stop();
  }
}
