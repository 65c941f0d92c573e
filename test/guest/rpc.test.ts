// The agent inside the VM, reached the kata 1.x way: virtio-serial port agent.channel.0 → QEMU
// chardev unix socket → yamux → gRPC. Also the bad-input cases of the channel: garbage from the host
// and a host that vanishes mid-call must cost only that session.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { agentVersion } from '../../agent/src/version.js';
import { GuestDetailsRequestSchema, GuestDetailsResponseSchema } from '../../protos/gen/agent_pb.js';
import { CheckRequestSchema, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema, VersionCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { buildGoGrpcClient, checkGoGrpcCalls, goGrpcMissing, runGoGrpcClient, type GoGrpcReport } from '../support/go-grpc-client.js';
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

    // What the guest logged about hosts coming and going (serial-listener's info lines).
    const guestSaw = () => ({
      takeovers: vm.console.match(/new host took over the yamux session/g)?.length ?? 0,
      ends: vm.console.match(/serial: yamux session ended/g)?.length ?? 0,
    });
    const firstAnswerMs: number[] = [];
    /** A new host whose very first call must succeed (kata 1.x hosts do not retry). */
    const firstCall = async (t: Test, label: string): Promise<GuestRpc> => {
      const started = process.hrtime.bigint();
      const rpc = await GuestRpc.connect(sock);
      try {
        const h = await rpc.call('grpc.Health', 'Check', CheckRequestSchema, {}, HealthCheckResponseSchema, 20_000);
        firstAnswerMs.push(Number(process.hrtime.bigint() - started) / 1e6);
        t.equal(h.status, HealthCheckResponse_ServingStatus.SERVING, `${label}: the first call of the new host session is answered`);
      } catch (err) {
        rpc.close();
        throw err;
      }
      return rpc;
    };
    const checkOnce = async (t: Test, label: string) => (await firstCall(t, label)).close();

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
      t.equal(d.agentDetails?.supportsSeccomp, true, "the image's libseccomp.so.2 loads and the guest kernel takes filters");
    });

    await t.test(
      'grpc-go through hashicorp/yamux, as kata 1.x\'s proxy: :authority with "/", pings every second',
      { skip: goGrpcMissing() ?? false },
      async (t) => {
        const bin = buildGoGrpcClient(dir);
        const r = await runGoGrpcClient(bin, ['yamux', sock]);
        t.equal(r.code, 0, `client exit status (stderr: ${r.stderr.trim()})`);
        const report = JSON.parse(r.stdout) as GoGrpcReport;
        t.ok(report.authorities.length >= 3 && report.authorities.every((a) => a.includes('/')), `:authority sent: ${report.authorities[0]}`);
        checkGoGrpcCalls(t, report);
        t.same(report.pingErrors, [], 'no ping failed');
        t.ok(report.pingsOk >= 3, `${report.pingsOk} pings answered while the calls ran`);
      },
    );

    await t.test('garbage on the port drops that session; the next one works', async (t) => {
      const raw = net.connect(sock);
      await new Promise<void>((r, j) => raw.once('connect', r).once('error', j));
      const dropsBefore = vm.console.match(/session dropped/g)?.length ?? 0;
      raw.write(Buffer.from('this is not a yamux frame at all\n'.repeat(8)));
      // The guest answers garbage by dropping the session and closing the port, which discards what
      // is still unread there. Wait until it says so: a new host's bytes written before that would
      // be discarded with the garbage (on a loaded machine that took longer than a fixed 500 ms).
      const dropped = new RegExp(`(?:[\\s\\S]*?session dropped){${dropsBefore + 1}}`);
      await vm.waitFor(dropped, 30_000);
      // Closing our end is what a broken host does next.
      raw.destroy();
      await checkOnce(t, 'after garbage');
    });

    await t.test('clean host close, reconnect at once: the first call works, 5 times in a row', async (t) => {
      const before = guestSaw();
      for (let i = 1; i <= 5; i++) (await firstCall(t, `clean close #${i}`)).close();
      await checkOnce(t, 'after the clean closes');
      const after = guestSaw();
      t.comment(
        `guest saw, over 6 host sessions: ${after.takeovers - before.takeovers} takeover(s) by a new host's SYN, ${after.ends - before.ends} session end(s) (EOF)`,
      );
    });

    await t.test("host vanishes mid-call: the next host's first call works, 4 times in a row", async (t) => {
      const before = guestSaw();
      for (let i = 1; i <= 4; i++) {
        const rpc = await firstCall(t, i === 1 ? 'vanish setup' : `after vanish #${i - 1}`);
        const pending = rpc.call('grpc.Health', 'Version', CheckRequestSchema, {}, VersionCheckResponseSchema).catch((e: Error) => e);
        // No go-away, a call in flight: the host process died.
        rpc.yamux.session.destroy(new Error('host killed'));
        t.ok((await pending) instanceof Error, `vanish #${i}: the abandoned call fails on the host side`);
      }
      await checkOnce(t, 'after vanish #4');
      const after = guestSaw();
      t.comment(`guest saw: ${after.takeovers - before.takeovers} takeover(s), ${after.ends - before.ends} session end(s)`);
    });

    await t.test('host gone for 2 s (the guest reads EOF meanwhile): the next first call works', async (t) => {
      (await firstCall(t, 'before the pause')).close();
      const before = guestSaw();
      await new Promise((r) => setTimeout(r, 2000));
      const during = guestSaw();
      await checkOnce(t, 'after the pause');
      t.comment(
        `guest saw during the 2 s without a host: ${during.ends - before.ends} session end(s) (EOF); then ${guestSaw().takeovers - during.takeovers} takeover(s)`,
      );
    });
    await t.test('how long a host must stay away before the guest reads EOF (every first call must work)', async (t) => {
      const seen: string[] = [];
      for (const pauseMs of [0, 10, 50, 200, 500, 1000]) {
        (await firstCall(t, `before a ${pauseMs} ms gap`)).close();
        const before = guestSaw();
        await new Promise((r) => setTimeout(r, pauseMs));
        await checkOnce(t, `after a ${pauseMs} ms gap`);
        const after = guestSaw();
        seen.push(`${pauseMs} ms: ${after.ends > before.ends ? 'EOF' : after.takeovers > before.takeovers ? 'takeover' : 'neither'}`);
      }
      t.comment(`guest saw, by gap between hosts: ${seen.join(', ')}`);
    });
    const sorted = [...firstAnswerMs].sort((a, b) => a - b);
    t.comment(
      `first answer of a new host session (connect → Check answered), ${sorted.length} sessions: median ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms`,
    );
    t.notMatch(vm.console, /uncaught exception|unhandled rejection/, 'no uncaught errors in the guest');
    t.ok(vm.running, 'VM still running');
  } catch (err) {
    withConsole(err);
  }
});
