// The pod network in the VM, as a kata 3.x host sets it up: a virtio-net NIC present at boot (QEMU
// `-netdev user,restrict=on`: no packet reaches anything outside QEMU), found by its MAC, then
// UpdateInterface and UpdateRoutes over ttrpc with TEST-NET addresses. PID 1 loaded virtio_net itself
// (coldplug through modules.alias: the guest has no udev). A container of the pod then sees the
// address and the default route.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import {
  CreateSandboxRequestSchema,
  DestroySandboxRequestSchema,
  ListRoutesRequestSchema,
  ReseedRandomDevRequestSchema,
  SetGuestDateTimeRequestSchema,
  RoutesSchema,
  UpdateInterfaceRequestSchema,
  UpdateRoutesRequestSchema,
} from '../../protos/gen/agent_pb.js';
import { InterfaceSchema, IPFamily } from '../../protos/gen/types_pb.js';
import { guestBusyboxRootfs, runInPod } from '../support/guest-container.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { agentReady, bootGuest } from '../support/qemu.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const agent = 'grpc.AgentService';
const mac = '02:42:c0:00:02:0a';

t.test('UpdateInterface + UpdateRoutes on a virtio-net NIC, SetGuestDateTime, ReseedRandomDev: seen from a container', { skip: guestSkip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-net-'));
  const sock = path.join(dir, 'agent.sock');
  const vm = await bootGuest({
    mode: 'initrd',
    serialSocket: sock,
    consoleFile: path.join(dir, 'console.log'),
    extraArgs: ['-netdev', 'user,id=pod0,restrict=on', '-device', `virtio-net-pci,netdev=pod0,mac=${mac}`],
  });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    await vm.waitFor(agentReady, 300_000);
    // Found by its MAC only because PID 1 loaded virtio_net (without coldplug: "Link not found").
    const rpc = await GuestRpc.connect(sock, 10_000, { wire: 'ttrpc' });
    await rpc.call(agent, 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'net-pod', sandboxId: 'net-pod' }, EmptySchema);
    const iface = await rpc.call(
      agent,
      'UpdateInterface',
      UpdateInterfaceRequestSchema,
      {
        interface: {
          name: 'eth0',
          hwAddr: mac.toUpperCase(),
          mtu: 1480n,
          IPAddresses: [{ family: IPFamily.v4, address: '192.0.2.10', mask: '24' }],
          type: 'veth',
        },
      },
      InterfaceSchema,
    );
    t.match(iface, { name: 'eth0', mtu: 1480n, hwAddr: mac, IPAddresses: [{ address: '192.0.2.10', mask: '24' }] });
    await rpc.call(
      agent,
      'UpdateRoutes',
      UpdateRoutesRequestSchema,
      {
        routes: {
          Routes: [
            { dest: '', gateway: '192.0.2.1', device: 'eth0', family: IPFamily.v4 },
            { dest: '192.0.2.0/24', device: 'eth0', source: '192.0.2.10', scope: 253, family: IPFamily.v4 },
          ],
        },
      },
      RoutesSchema,
    );
    const routes = await rpc.call(agent, 'ListRoutes', ListRoutesRequestSchema, {}, RoutesSchema);
    t.ok(
      routes.Routes.some((r) => r.dest === '' && r.gateway === '192.0.2.1' && r.device === 'eth0'),
      'the default route is listed',
    );

    // The other guest calls of a pod's set-up: the host's clock (kata sends it after a VM resume) and
    // entropy for the guest's RNG.
    const hostTime = 1893456000n; // 2030-01-01T00:00:00Z: far from the guest's own clock
    await rpc.call(agent, 'SetGuestDateTime', SetGuestDateTimeRequestSchema, { Sec: hostTime, Usec: 0n }, EmptySchema);
    await rpc.call(agent, 'ReseedRandomDev', ReseedRandomDevRequestSchema, { data: Buffer.alloc(64, 0x5a) }, EmptySchema);

    const spec = busyboxSpec(guestBusyboxRootfs, ['sh', '-c', 'ip -4 -o addr show dev eth0; ip route show; echo "now $(date +%s)"']);
    const { stdout: out, status } = await runInPod(rpc, 'net', spec);
    t.equal(status, 0);
    t.match(out, /eth0\s+inet 192\.0\.2\.10\/24/, 'the container sees the address');
    t.match(out, /default via 192\.0\.2\.1 dev eth0/, 'and the default route');
    const now = BigInt(/now (\d+)/.exec(out)?.[1] ?? '0');
    t.ok(now >= hostTime && now < hostTime + 120n, `the container's clock is the one SetGuestDateTime set (${now})`);
    await rpc.call(agent, 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
    rpc.close();
    t.equal(await vm.waitExit(120_000), 0);
  } catch (err) {
    t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);
  }
});
