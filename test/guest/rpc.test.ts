// The agent inside the VM, reached the kata 1.x way: virtio-serial port agent.channel.0 → QEMU
// chardev unix socket → yamux → gRPC. Also the bad-input cases of the channel: garbage from the host
// and a host that vanishes mid-call must cost only that session.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { agentVersion } from '../../agent/src/version.js';
import { GuestDetailsRequestSchema, GuestDetailsResponseSchema } from '../../protos/gen/agent_pb.js';
import { CheckRequestSchema, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema, VersionCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { agentReady, bootGuest, type GuestVm } from '../support/qemu.js';

const skip = guestSkip;
if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const bootTimeout = 180_000;

t.test('agent in the VM over virtio-serial + yamux', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-rpc-'));
  const sock = path.join(dir, 'agent.sock');
  const vm: GuestVm = await bootGuest({ mode: 'initrd', serialSocket: sock, consoleFile: path.join(dir, 'console.log') });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const withConsole = (err: unknown) => t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);

  try {
    await vm.waitFor(agentReady, bootTimeout);
    t.match(vm.console, /"address":"serial:\/\/agent\.channel\.0"/, 'no vsock device: the agent chose the serial channel');

    const checkOnce = async (label: string) => {
      const rpc = await GuestRpc.connect(sock);
      try {
        if (rpc.retries) t.comment(`${label}: ${rpc.retries} host session(s) failed before this one (guest kept the old yamux session)`);
        const h = await rpc.call('grpc.Health', 'Check', CheckRequestSchema, {}, HealthCheckResponseSchema);
        t.equal(h.status, HealthCheckResponse_ServingStatus.SERVING, `${label}: Check SERVING`);
      } finally {
        rpc.close();
      }
    };

    await t.test('Check, Version, GetGuestDetails', async (t) => {
      const rpc = await GuestRpc.connect(sock);
      t.teardown(() => rpc.close());
      const h = await rpc.call('grpc.Health', 'Check', CheckRequestSchema, {}, HealthCheckResponseSchema);
      t.equal(h.status, HealthCheckResponse_ServingStatus.SERVING);
      const v = await rpc.call('grpc.Health', 'Version', CheckRequestSchema, {}, VersionCheckResponseSchema);
      t.equal(v.agentVersion, agentVersion, 'guest agent reports the package version');
      t.equal(v.grpcVersion, '0.0.1');
      const d = await rpc.call('grpc.AgentService', 'GetGuestDetails', GuestDetailsRequestSchema, { memBlockSize: true }, GuestDetailsResponseSchema);
      t.equal(d.agentDetails?.initDaemon, true, 'agent runs as PID 1 (init_daemon)');
      t.ok(d.memBlockSizeBytes > 0n, `memory block size read from the guest's sysfs (${d.memBlockSizeBytes})`);
    });

    await t.test('garbage on the port drops that session; the next one works', async (t) => {
      const raw = net.connect(sock);
      await new Promise<void>((r, j) => raw.once('connect', r).once('error', j));
      raw.write(Buffer.from('this is not a yamux frame at all\n'.repeat(8)));
      // The guest answers garbage by ending the session (GoAway/close) or just dropping it; either
      // way our side sees nothing useful. Closing our end is what a broken host does next.
      await new Promise((r) => setTimeout(r, 500));
      raw.destroy();
      await checkOnce('after garbage');
    });

    await t.test('host vanishes mid-call; the next session works', async (t) => {
      const rpc = await GuestRpc.connect(sock);
      const pending = rpc.call('grpc.Health', 'Version', CheckRequestSchema, {}, VersionCheckResponseSchema).catch((e: Error) => e);
      rpc.close();
      t.ok((await pending) instanceof Error, 'the abandoned call fails on the host side');
      await checkOnce('after a vanished host');
      await checkOnce('and again');
    });
    t.notMatch(vm.console, /uncaught exception|unhandled rejection/, 'no uncaught errors in the guest');
    t.ok(vm.running, 'VM still running');
  } catch (err) {
    withConsole(err);
  }
});
