// `npm run demo`: builds the guest image when it is missing, boots it under QEMU, talks to the
// agent inside over virtio-serial + yamux + gRPC and prints what it answered, then stops the VM.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { toJson } from '@bufbuild/protobuf';
import { GuestDetailsRequestSchema, GuestDetailsResponseSchema } from '../../protos/gen/agent_pb.js';
import { CheckRequestSchema, HealthCheckResponseSchema, VersionCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { runGuestContainer } from '../../test/support/guest-container.js';
import { GuestRpc } from '../../test/support/guest-rpc.js';
import { accelerator, agentReady, assetsIn, bootGuest, guestSkipReason } from '../../test/support/qemu.js';
import { build } from './main.js';

async function demo(): Promise<void> {
  const assets = assetsIn();
  if (Object.values(assets).some((f) => !fs.existsSync(f))) {
    console.log('== guest image missing: building it (npm run image)');
    await build({ out: path.dirname(assets.kernel), kernel: 'debian' });
  }
  const reason = guestSkipReason(assets);
  if (reason) throw new Error(reason);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-demo-'));
  const sock = path.join(dir, 'agent.sock');
  console.log(`== booting ${assets.kernel} + ${path.basename(assets.initrd)} under QEMU (${await accelerator(assets.kernel)})`);
  const vm = await bootGuest({ mode: 'initrd', serialSocket: sock, consoleFile: path.join(dir, 'console.log') });
  try {
    await vm.waitFor(agentReady, 180_000);
    console.log(`== agent ready ${(Number(process.hrtime.bigint() - vm.startedAt) / 1e6).toFixed(0)} ms after QEMU started`);
    const rpc = await GuestRpc.connect(sock);
    try {
      const show = (name: string, v: unknown) => console.log(`${name}: ${JSON.stringify(v)}`);
      show('Check', toJson(HealthCheckResponseSchema, await rpc.call('grpc.Health', 'Check', CheckRequestSchema, {}, HealthCheckResponseSchema)));
      show('Version', toJson(VersionCheckResponseSchema, await rpc.call('grpc.Health', 'Version', CheckRequestSchema, {}, VersionCheckResponseSchema)));
      const details = await rpc.call('grpc.AgentService', 'GetGuestDetails', GuestDetailsRequestSchema, { memBlockSize: true }, GuestDetailsResponseSchema);
      show('GetGuestDetails', toJson(GuestDetailsResponseSchema, details));
      console.log(`== running a busybox container in the VM (CreateSandbox, CreateContainer, StartContainer, ReadStdout, WaitProcess)`);
      const run = await runGuestContainer(rpc, { memoryLimit: 64n << 20n, destroySandbox: true });
      console.log(`container output:\n${run.stdout.replace(/^/gm, '  | ')}`);
      console.log(`container exit status: ${run.status}`);
      if (run.status !== 0) process.exitCode = 1;
    } finally {
      rpc.close();
    }
    const code = await vm.waitExit(120_000);
    console.log(`== DestroySandbox: the VM powered itself off (QEMU exit ${code})`);
  } catch (err) {
    console.error(`demo failed: ${(err as Error).message}\n--- guest console (${vm.consoleFile}) ---\n${vm.console.slice(-4000)}`);
    process.exitCode = 1;
  } finally {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

demo().catch((err) => {
  console.error(`demo: ${(err as Error).message}`);
  process.exit(1);
});
