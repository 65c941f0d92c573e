// The guest booted the way kata boots it, both generations: kernel, initrd and kernel_params from the
// configuration.toml snippets in docs/guest.md, kata's own kernel parameters, kata's console (a
// virtconsole, hvc0, no serial port) and the agent.channel.0 virtio-serial port. The agent must come
// up although PID 1 starts with no console, answer the host, and log its JSON lines on hvc0.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { parse } from 'smol-toml';
import t from 'tap';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { connectYamuxUnix } from '../../agent/src/transport/yamux/client.js';
import { CheckRequestSchema, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { agentReady, assetsIn, bootGuest, kataKernelParams, repoRoot, type BootOptions, type GuestVm } from '../support/qemu.js';

const skip = guestSkip;
if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const bootTimeout = 180_000;

type Generation = '1.x' | '3.x';

/** The ```toml block of docs/guest.md whose first line is `# kata <generation>`. */
function docSnippet(markdown: string, generation: Generation): Record<string, unknown> {
  const blocks = [...markdown.matchAll(/```toml\n([\s\S]*?)```/g)].map((m) => m[1]);
  const block = blocks.find((b) => b.split('\n', 1)[0].trim() === `# kata ${generation}`);
  if (!block) throw new Error(`docs/guest.md has no \`\`\`toml block starting "# kata ${generation}"`);
  return parse(block) as Record<string, unknown>;
}

/**
 * What kata's runtime makes of those lines for QEMU: `kernel` and `initrd` become -kernel/-initrd
 * (read from our build folder by file name, as an operator copies them), and the kernel command line
 * is kata's defaults, then `agent.log=debug` for `[agent.kata] enable_debug`, then `kernel_params`.
 * `default_maxvcpus` 0 or unset means the host's cores (nr_cpus).
 */
function kataBoot(conf: Record<string, unknown>, generation: Generation, serialSocket: string): BootOptions {
  const hv = (conf.hypervisor as Record<string, Record<string, unknown>> | undefined)?.qemu;
  if (!hv) throw new Error('no [hypervisor.qemu] section');
  if (hv.image !== undefined && hv.initrd !== undefined) throw new Error('kata refuses image and initrd together');
  if (typeof hv.kernel !== 'string' || typeof hv.initrd !== 'string') throw new Error('kernel and initrd must be set');
  if (hv.use_vsock === true) throw new Error('use_vsock = true needs vhost-vsock, which this harness does not have');
  if (hv.machine_type !== undefined && hv.machine_type !== 'q35') throw new Error(`machine_type ${String(hv.machine_type)}: the harness boots q35`);
  const built = assetsIn();
  const fromBuild = (p: string) => path.join(path.dirname(built.kernel), path.basename(p));
  const assets = { ...built, kernel: fromBuild(hv.kernel), initrd: fromBuild(hv.initrd) };
  for (const f of [assets.kernel, assets.initrd]) if (!fs.existsSync(f)) throw new Error(`${f} (named by the docs) is not a built file`);
  const agent = (conf.agent as Record<string, Record<string, unknown>> | undefined)?.kata ?? {};
  const maxVcpus = Number(hv.default_maxvcpus ?? 0) || os.cpus().length;
  const userParams = String(hv.kernel_params ?? '')
    .split(' ')
    .filter(Boolean);
  return {
    mode: 'initrd',
    assets,
    console: 'kata-hvc',
    baseParams: kataKernelParams(generation, maxVcpus),
    params: [...(agent.enable_debug === true ? ['agent.log=debug'] : []), ...userParams],
    maxVcpus,
    memoryMiB: Number(hv.default_memory ?? 2048),
    serialSocket,
  };
}

/** A JSON line of the agent's on the console capture, by its msg (and step for boot steps). */
function logLine(vm: GuestVm, msg: string, step?: string): Record<string, unknown> | undefined {
  for (const line of vm.console.split('\n')) {
    if (!line.includes(`"msg":"${msg}"`) || (step && !line.includes(`"step":"${step}"`))) continue;
    return JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>;
  }
  return undefined;
}

const docs = fs.readFileSync(path.join(repoRoot, 'docs', 'guest.md'), 'utf8');

for (const generation of ['1.x', '3.x'] as const) {
  t.test(`kata ${generation}: docs/guest.md's configuration.toml lines boot, the agent answers, its logs are on hvc0`, { skip }, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kata-boot-${generation}-`));
    const sock = path.join(dir, 'agent.sock');
    const opts = kataBoot(docSnippet(docs, generation), generation, sock);
    const vm = await bootGuest({ ...opts, consoleFile: path.join(dir, 'console.log') });
    t.teardown(async () => {
      await vm.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    try {
      t.equal(vm.args[vm.args.indexOf('-serial') + 1], 'none', 'no serial port: hvc0 is the only console');
      await vm.waitFor(agentReady, bootTimeout);
      // vm.console is what QEMU's virtconsole chardev got: the guest's hvc0.
      const listening = logLine(vm, 'agent listening');
      t.equal(listening?.level, 'info', 'the "agent listening" JSON line reached hvc0');
      t.match(vm.console, /"address":"serial:\/\/agent\.channel\.0"/, 'no vsock device: the agent serves agent.channel.0');
      const moved = logLine(vm, 'boot step done', 'console')?.result as { console?: string; waitedMs?: number } | undefined;
      t.equal(moved?.console, '/dev/hvc0', 'PID 1 started without a console and moved its logs to /dev/hvc0');
      t.comment(`hvc0 was there ${moved?.waitedMs} ms after the console driver began loading`);
      const cg = logLine(vm, 'boot step done', 'cgroups')?.result as { version?: number } | undefined;
      t.equal(cg?.version, 2, generation === '3.x' ? 'cgroup_no_v1=all: cgroup v2' : 'cgroup v2 by default');
      t.notMatch(vm.console, /boot step failed/, 'no boot step failed');
      t.notMatch(vm.console, /unknown kernel option/, "kata's kernel parameters raise no warning");

      let status: HealthCheckResponse_ServingStatus;
      if (generation === '1.x') {
        // kata 1.x: kata-proxy speaks yamux on the port and gRPC in each stream.
        const rpc = await GuestRpc.connect(sock);
        try {
          status = (await rpc.call('grpc.Health', 'Check', CheckRequestSchema, {}, HealthCheckResponseSchema, 30_000)).status;
        } finally {
          rpc.close();
        }
      } else {
        // kata 3.x speaks ttrpc over vsock, and this machine has no vhost-vsock: the same ttrpc goes
        // into a yamux stream on agent.channel.0, as bench/boot.bench.ts does (the agent's wire router
        // tells ttrpc from gRPC by the first bytes of each stream).
        const yamux = await connectYamuxUnix(sock, 10_000, { pingIntervalMs: 0 });
        try {
          const stream = yamux.open();
          stream.on('error', () => undefined);
          const bytes = await new TtrpcClient(stream).call('grpc.Health', 'Check', new Uint8Array(0), 30_000);
          status = fromBinary(HealthCheckResponseSchema, bytes).status;
        } finally {
          yamux.close();
        }
      }
      t.equal(status, HealthCheckResponse_ServingStatus.SERVING, 'Check answered SERVING over agent.channel.0');
      t.notMatch(vm.console, /Kernel panic|Attempted to kill init/, 'no kernel panic');
    } catch (err) {
      t.fail(`${(err as Error).message}\n--- guest console (hvc0) ---\n${vm.console.slice(-8000)}`);
    }
  });
}
