// VFIO devices, in the VM: QEMU runs with an emulated IOMMU (intel-iommu, guest intel_iommu=on) and
// kata's hot-plug bridge in slot 2, so each PCI function the guest sees has an IOMMU group. A
// virtio-rng function stands in for the host's passed-through device (the guest's virtio_pci binds
// it first, as a guest driver would a real one); kata names it in a Device's options as
// "<host BDF>=<guest PCI path>":
//  - vfio-pci: hot-plugged through QMP while CreateContainer waits; the agent moves it to vfio-pci
//    (loading the module), and the container gets /dev/vfio/<guest group> in place of the host's
//    group node, plus /dev/vfio/vfio, both openable under the spec's deny-all device cgroup; the
//    SR-IOV plugin's PCIDEVICE_* variable names the guest's address;
//  - vfio-pci-gk: the guest kernel's driver keeps the function; only the wait and the variable;
//  - a function that never comes is DEADLINE_EXCEEDED naming its PCI path.
import path from 'node:path';
import t from 'tap';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { CreateContainerRequestSchema, CreateSandboxRequestSchema, DestroySandboxRequestSchema } from '../../protos/gen/agent_pb.js';
import { guestBusyboxRootfs, runInPod } from '../support/guest-container.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { inGuest } from '../support/guest-vm.js';
import { qmp } from '../support/qmp.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const agent = 'grpc.AgentService';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hotplugTimeoutS = 10;

type RpcError = Error & { code?: number };
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: RpcError) => e,
  );

/** What the container reports of its VFIO nodes: each node's type and numbers, whether it opens, the driver, the variable. */
const script = [
  'for f in /dev/vfio/*; do echo "node $f $(stat -c "%F %t:%T" $f)"; done',
  'for f in /dev/vfio/*; do if exec 3<$f; then echo "open $f"; exec 3<&-; else echo "refused $f"; fi; done',
  'echo "driver $(basename $(readlink /sys/bus/pci/devices/$PCIDEVICE_TEST_COM_RNG/driver))"',
  'echo "env $PCIDEVICE_TEST_COM_RNG"',
].join('; ');

t.test('vfio-pci and vfio-pci-gk: a hot-plugged PCI function bound to vfio-pci and given as its guest group', { skip: guestSkip }, async (t) => {
  await inGuest(
    t,
    'kata-guest-vfio',
    (dir) => ({
      mode: 'initrd',
      // iommu=pt: the guest's own devices keep identity mappings (no DMA remapping cost under TCG);
      // groups exist all the same, which is what vfio-pci needs.
      params: [`agent.hotplug_timeout=${hotplugTimeoutS}s`, 'intel_iommu=on', 'iommu=pt'],
      extraArgs: [
        '-qmp',
        `unix:${path.join(dir, 'qmp.sock')},server=on,wait=off`,
        '-device',
        'intel-iommu,intremap=off',
        '-device',
        'pci-bridge,bus=pcie.0,id=pci-bridge-0,chassis_nr=1,shpc=off,addr=2,io-reserve=4k,mem-reserve=1m,pref64-reserve=1m',
        // Present from boot, for vfio-pci-gk: slot 2 behind the bridge.
        '-device',
        'virtio-rng-pci,id=rng-gk,bus=pci-bridge-0,addr=02',
      ],
    }),
    async ({ vm, dir, sock }) => {
      const rpc = await GuestRpc.connect(sock);
      const q = await qmp(path.join(dir, 'qmp.sock'));
      await rpc.call(agent, 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'vfio-pod', sandboxId: 'vfio-pod' }, EmptySchema);

      // 1. vfio-pci, hot-plugged at 02/01 while CreateContainer waits. The host's spec names its own
      //    group 42 (241:3) and allows only that after a deny-all, as containerd writes it.
      const spec = busyboxSpec(guestBusyboxRootfs, ['sh', '-c', script]);
      spec.Process!.Env = [...(spec.Process!.Env ?? []), 'PCIDEVICE_TEST_COM_RNG=0000:3b:00.0'];
      spec.Linux!.Devices = [{ Path: '/dev/vfio/42', Type: 'c', Major: 241n, Minor: 3n, FileMode: 0o660, UID: 0, GID: 0 }];
      spec.Linux!.Resources = {
        Devices: [
          { Allow: false, Access: 'rwm' },
          { Allow: true, Type: 'c', Major: 241n, Minor: 3n, Access: 'rwm' },
        ],
      };
      let plugged = 0n;
      let createdAfterMs = 0;
      const run = runInPod(
        rpc,
        'vfioc',
        spec,
        { devices: [{ id: 'vfio-rng', type: 'vfio-pci', vmPath: '', containerPath: '/dev/vfio/42', options: ['0000:3b:00.0=02/01'] }] },
        () => {
          createdAfterMs = Number(process.hrtime.bigint() - plugged) / 1e6;
        },
      );
      await sleep(1500); // CreateContainer is waiting for the function now
      plugged = process.hrtime.bigint();
      await q.cmd('device_add', { driver: 'virtio-rng-pci', id: 'rng1', bus: 'pci-bridge-0', addr: '01' });
      const r = await run;
      t.equal(r.status, 0, 'the container exited 0');
      const lines = r.stdout.trim().split('\n');
      const group = lines.find((l) => /^node \/dev\/vfio\/\d+ /.test(l));
      t.match(group, /^node \/dev\/vfio\/\d+ character special file [0-9a-f]+:0$/, `the guest's group node: ${group}`);
      t.notOk(
        lines.some((l) => l.startsWith('node /dev/vfio/42 ') && !group?.startsWith('node /dev/vfio/42 ')),
        "the host's group number is not given as such (unless the guest's is also 42)",
      );
      t.ok(lines.includes('node /dev/vfio/vfio character special file a:c4'), '/dev/vfio/vfio is 10:196');
      t.same(
        lines.filter((l) => l.startsWith('open ') || l.startsWith('refused ')),
        [...lines.filter((l) => l.startsWith('node ')).map((l) => `open ${l.split(' ')[1]}`)],
        'every VFIO node opens under the deny-all device cgroup (the agent added their allow rules)',
      );
      t.ok(lines.includes('driver vfio-pci'), 'the function is bound to vfio-pci');
      t.ok(lines.includes('env 0000:01:01.0'), 'PCIDEVICE_* names the guest address of the function');
      t.match(vm.console, /"loaded":\[[^\]]*"vfio_pci"/, 'the agent loaded vfio_pci');
      t.comment(`vfio-pci: CreateContainer answered ${createdAfterMs.toFixed(0)} ms after device_add (${lines.join(' | ')})`);

      // 2. vfio-pci-gk: the function present from boot at 02/02 keeps its guest driver.
      const gkSpec = busyboxSpec(guestBusyboxRootfs, [
        'sh',
        '-c',
        'echo "driver $(basename $(readlink /sys/bus/pci/devices/$PCIDEVICE_TEST_COM_RNG/driver))"; echo "env $PCIDEVICE_TEST_COM_RNG"',
      ]);
      gkSpec.Process!.Env = [...(gkSpec.Process!.Env ?? []), 'PCIDEVICE_TEST_COM_RNG=0000:5e:00.1'];
      const gk = await runInPod(rpc, 'gkc', gkSpec, {
        devices: [{ id: 'vfio-gk', type: 'vfio-pci-gk', vmPath: '', containerPath: '/dev/vfio/43', options: ['0000:5e:00.1=02/02'] }],
      });
      t.same(
        gk,
        { stdout: 'driver virtio-pci\nenv 0000:01:02.0\n', status: 0 },
        "vfio-pci-gk: the guest's virtio-pci keeps it; the variable names its guest address",
      );

      // 3. A function that never comes.
      const never = await failure(
        rpc.call(
          agent,
          'CreateContainer',
          CreateContainerRequestSchema,
          {
            containerId: 'never',
            execId: 'never',
            OCI: busyboxSpec(guestBusyboxRootfs, ['true']),
            devices: [{ id: 'vfio-none', type: 'vfio-pci', vmPath: '', containerPath: '/dev/vfio/44', options: ['0000:3b:00.2=02/05'] }],
          },
          EmptySchema,
          120_000,
        ),
      );
      t.equal(never?.code, 4, 'DEADLINE_EXCEEDED');
      t.match(never?.message, /vfio-pci device vfio-none: PCI function at PCI path 02\/05/);

      q.close();
      await rpc.call(agent, 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
      rpc.close();
      t.equal(await vm.waitExit(120_000), 0);
    },
  );
});
