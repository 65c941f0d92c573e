// Disks kata hot-plugs, in the VM: QEMU starts with kata's PCI bridge (slot 2 of the root bus) and a
// virtio-scsi controller, as kata's runtime does; while CreateContainer waits, the test hot-plugs
// the disk through QMP (blockdev-add + device_add, kata's sequence):
//  - a virtio-blk disk behind the bridge, PCI path "02/01", holding the container's rootfs (a
//    storage {driver "blk", source "02/01", fstype ext4, mount_point .../containers/<cid>} as
//    devicemapper-backed 3.x pods send it);
//  - a SCSI disk (scsi-hd on the controller, "0:2") holding another container's rootfs;
//  - a raw virtio-blk disk passed as a `devices` entry, its node at /dev/xvdb in the container;
//  - an xfs volume (fstype xfs: the agent loads the module), written and read by a container.
// The agent must find each by uevent (loading virtio_blk, sd_mod as udev would), mount it, and
// unmount it at RemoveContainer, so QMP device_del completes. Then a volume grown (QMP block_resize +
// ResizeVolume) and swap on a mkswap'd disk (AddSwap by PCI slots). A device never plugged is
// DEADLINE_EXCEEDED after agent.hotplug_timeout, naming it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import {
  AddSwapRequestSchema,
  CreateContainerRequestSchema,
  CreateSandboxRequestSchema,
  DestroySandboxRequestSchema,
  RemoveContainerRequestSchema,
  ResizeVolumeRequestSchema,
  VolumeStatsRequestSchema,
} from '../../protos/gen/agent_pb.js';
import { VolumeStatsResponseSchema } from '../../protos/gen/csi_pb.js';
import { buildBusyboxRootfs } from '../support/busybox-rootfs.js';
import { guestBusyboxRootfs, runInPod } from '../support/guest-container.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { addMount, busyboxSpec } from '../support/oci-spec.js';
import { agentReady, bootGuest } from '../support/qemu.js';
import { qmp, type Qmp } from '../support/qmp.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const agent = 'grpc.AgentService';
const shared = '/run/kata-containers/shared/containers';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Long enough for TCG (a module load is ~0.5 s there); the figure measured is the wait itself. */
const hotplugTimeoutS = 20;

/** An ext4 image whose top folder holds `rootfs/` (busybox) and a marker file. */
function rootfsDisk(dir: string, name: string, marker: string): string {
  const src = path.join(dir, `${name}-src`);
  buildBusyboxRootfs(src);
  fs.writeFileSync(path.join(src, 'rootfs', 'marker'), marker);
  const img = path.join(dir, `${name}.img`);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', src, '-E', 'root_owner=0:0', img, '24M']);
  return img;
}

async function plug(q: Qmp, node: string, file: string, device: Record<string, unknown>): Promise<void> {
  await q.cmd('blockdev-add', { driver: 'raw', 'node-name': node, file: { driver: 'file', filename: file } });
  await q.cmd('device_add', { ...device, drive: node });
}

async function unplug(q: Qmp, id: string, node: string): Promise<void> {
  await q.cmd('device_del', { id });
  // Only once the guest let go (its driver released the device, after the agent unmounted it).
  await q.event('DEVICE_DELETED', (d) => d.device === id, 60_000);
  await q.cmd('blockdev-del', { 'node-name': node });
}

t.test('hot-plugged virtio-blk and SCSI disks: found by uevent while CreateContainer waits, mounted, released', { skip: guestSkip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-blk-'));
  const sock = path.join(dir, 'agent.sock');
  const qmpSock = path.join(dir, 'qmp.sock');
  const blkDisk = rootfsDisk(dir, 'blk', 'on-virtio-blk\n');
  const scsiDisk = rootfsDisk(dir, 'scsi', 'on-scsi\n');
  const rawDisk = path.join(dir, 'raw.img');
  fs.writeFileSync(rawDisk, Buffer.concat([Buffer.from('RAWDISK-MAGIC\n'), Buffer.alloc(1024 * 1024 - 14)]));
  const vm = await bootGuest({
    mode: 'initrd',
    serialSocket: sock,
    consoleFile: path.join(dir, 'console.log'),
    params: [`agent.hotplug_timeout=${hotplugTimeoutS}s`],
    extraArgs: [
      '-qmp',
      `unix:${qmpSock},server=on,wait=off`,
      // kata's hot-plug bridge and its SCSI controller.
      '-device',
      'pci-bridge,bus=pcie.0,id=pci-bridge-0,chassis_nr=1,shpc=off,addr=2,io-reserve=4k,mem-reserve=1m,pref64-reserve=1m',
      '-device',
      'virtio-scsi-pci,id=scsi0,bus=pcie.0,addr=3',
    ],
  });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    await vm.waitFor(agentReady, 300_000);
    const rpc = await GuestRpc.connect(sock);
    const q = await qmp(qmpSock);
    await rpc.call(agent, 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'blk-pod', sandboxId: 'blk-pod' }, EmptySchema);

    // 1. The rootfs on a virtio-blk disk at PCI path 02/01.
    const show = ['sh', '-c', 'cat /marker; grep " / " /proc/mounts | cut -d" " -f3'];
    let plugged = 0n;
    let createdAfterMs = 0;
    const blk = runInPod(
      rpc,
      'blkc',
      busyboxSpec(`${shared}/blkc/rootfs`, show),
      { storages: [{ driver: 'blk', source: '02/01', fstype: 'ext4', options: [], mountPoint: `${shared}/blkc` }] },
      () => (createdAfterMs = Number(process.hrtime.bigint() - plugged) / 1e6),
    );
    await sleep(1500); // CreateContainer is waiting for the disk now
    plugged = process.hrtime.bigint();
    await plug(q, 'blk1', blkDisk, { driver: 'virtio-blk-pci', id: 'dev-blk1', bus: 'pci-bridge-0', addr: '01' });
    const b = await blk;
    t.equal(b.stdout, 'on-virtio-blk\next4\n', 'the container runs from the hot-plugged disk');
    t.equal(b.status, 0);
    t.comment(`virtio-blk: CreateContainer answered ${createdAfterMs.toFixed(0)} ms after device_add`);
    t.match(vm.console, /"loaded":\["virtio_blk"\]/, 'the agent loaded virtio_blk for the new device');
    await unplug(q, 'dev-blk1', 'blk1');
    t.pass('the disk could be unplugged after RemoveContainer (the agent unmounted it)');

    // 2. The rootfs on a SCSI disk, target 2 LUN 0.
    let scsiPlugged = 0n;
    let scsiMs = 0;
    const scsi = runInPod(
      rpc,
      'scsic',
      busyboxSpec(`${shared}/scsic/rootfs`, show),
      { storages: [{ driver: 'scsi', source: '2:0', fstype: 'ext4', options: [], mountPoint: `${shared}/scsic` }] },
      () => (scsiMs = Number(process.hrtime.bigint() - scsiPlugged) / 1e6),
    );
    await sleep(1500);
    scsiPlugged = process.hrtime.bigint();
    await plug(q, 'scsi1', scsiDisk, { driver: 'scsi-hd', id: 'dev-scsi1', bus: 'scsi0.0', 'scsi-id': 2, lun: 0 });
    const s = await scsi;
    t.equal(s.stdout, 'on-scsi\next4\n', 'the container runs from the hot-plugged SCSI disk');
    t.comment(`scsi: CreateContainer answered ${scsiMs.toFixed(0)} ms after device_add`);
    await unplug(q, 'dev-scsi1', 'scsi1');

    // 3. A raw disk as a container device: the host's numbers in the spec, the guest's in the container.
    const rawSpec = busyboxSpec(guestBusyboxRootfs, ['sh', '-c', 'head -c 14 /dev/xvdb; stat -c "%t:%T" /dev/xvdb']);
    rawSpec.Linux!.Devices = [{ Path: '/dev/xvdb', Type: 'b', Major: 8n, Minor: 99n, FileMode: 0o660, UID: 0, GID: 0 }];
    rawSpec.Linux!.Resources = { Devices: [{ Allow: true, Type: 'b', Major: 8n, Minor: 99n, Access: 'rwm' }] };
    const raw = runInPod(rpc, 'rawc', rawSpec, { devices: [{ id: '02/02', type: 'blk', vmPath: '', containerPath: '/dev/xvdb', options: [] }] });
    await sleep(1500);
    await plug(q, 'raw1', rawDisk, { driver: 'virtio-blk-pci', id: 'dev-raw1', bus: 'pci-bridge-0', addr: '02' });
    const r = await raw;
    const [magic, numbers] = r.stdout.split('\n');
    t.equal(magic, 'RAWDISK-MAGIC', 'the container reads the disk through its node');
    t.match(numbers, /^[0-9a-f]+:[0-9a-f]+$/, 'stat shows the node');
    t.not(numbers, '8:63', "the guest's numbers, not the host's 8:99");
    await unplug(q, 'dev-raw1', 'raw1');

    // 3b. An xfs volume (the agent loads xfs for it): mounted, written and read by a container.
    const xfsDisk = path.join(dir, 'xfs.img');
    fs.writeFileSync(xfsDisk, '');
    fs.truncateSync(xfsDisk, 320 * 1024 * 1024); // xfsprogs 6.1 makes nothing under 300 MB; sparse
    execFileSync('mkfs.xfs', ['-q', xfsDisk]);
    const xfsMp = `${shared}/xfsvol`;
    const xfsSpec = addMount(busyboxSpec(guestBusyboxRootfs, ['sh', '-c', 'echo on-xfs > /vol/f; cat /vol/f; grep " /vol " /proc/mounts | cut -d" " -f3']), {
      destination: '/vol',
      type: 'bind',
      source: xfsMp,
      options: ['rbind'],
    });
    const xfs = runInPod(rpc, 'xfsc', xfsSpec, { storages: [{ driver: 'blk', source: '02/05', fstype: 'xfs', options: [], mountPoint: xfsMp }] });
    await sleep(1000);
    await plug(q, 'xfs1', xfsDisk, { driver: 'virtio-blk-pci', id: 'dev-xfs1', bus: 'pci-bridge-0', addr: '05' });
    t.same(await xfs, { stdout: 'on-xfs\nxfs\n', status: 0 }, 'the container wrote and read its xfs volume');
    t.match(vm.console, /"fstype":"xfs","loaded":\[[^\]]*"xfs"/, 'the agent loaded xfs for the mount');
    await unplug(q, 'dev-xfs1', 'xfs1');

    // 4. A direct-assigned volume grown: the host resizes the disk (QMP block_resize), then
    // ResizeVolume grows its ext4 online; GetVolumeStats sees the new size.
    const growDisk = rootfsDisk(dir, 'grow', 'grow\n');
    const growMp = `${shared}/growc`;
    const create = rpc.call(
      agent,
      'CreateContainer',
      CreateContainerRequestSchema,
      {
        containerId: 'growc',
        execId: 'growc',
        OCI: busyboxSpec(`${growMp}/rootfs`, ['true']),
        storages: [{ driver: 'blk', source: '02/04', fstype: 'ext4', options: [], mountPoint: growMp }],
      },
      EmptySchema,
      120_000,
    );
    await sleep(1000);
    await plug(q, 'grow1', growDisk, { driver: 'virtio-blk-pci', id: 'dev-grow1', bus: 'pci-bridge-0', addr: '04' });
    await create;
    const bytes = async () =>
      (await rpc.call(agent, 'GetVolumeStats', VolumeStatsRequestSchema, { volumeGuestPath: growMp }, VolumeStatsResponseSchema)).usage[0].total;
    const before = await bytes();
    await q.cmd('block_resize', { 'node-name': 'grow1', size: 48 * 1024 * 1024 });
    await sleep(500); // the guest takes the capacity change from virtio's config interrupt
    await rpc.call(agent, 'ResizeVolume', ResizeVolumeRequestSchema, { volumeGuestPath: growMp, size: BigInt(48 * 1024 * 1024) }, EmptySchema);
    const after = await bytes();
    t.ok(after > before + 20n * 1024n * 1024n, `the volume grew (${before} -> ${after} bytes)`);
    // Two containers on one storage: kata counts it by mount point, so the second needs no wait and
    // the disk stays mounted until the last of them is removed.
    const growStorage = { driver: 'blk', source: '02/04', fstype: 'ext4', options: [], mountPoint: growMp };
    const twin = { containerId: 'growc2', execId: 'growc2', OCI: busyboxSpec(guestBusyboxRootfs, ['true']), storages: [growStorage] };
    await rpc.call(agent, 'CreateContainer', CreateContainerRequestSchema, twin, EmptySchema, 20_000);
    await rpc.call(agent, 'RemoveContainer', RemoveContainerRequestSchema, { containerId: 'growc' }, EmptySchema);
    t.equal(await bytes(), after, 'after the first RemoveContainer the volume is still mounted (the second container holds it)');
    await rpc.call(agent, 'RemoveContainer', RemoveContainerRequestSchema, { containerId: 'growc2' }, EmptySchema);
    await t.rejects(
      bytes(),
      { code: 5, message: /NOT_FOUND: GetVolumeStats: no volume at/ },
      'the second RemoveContainer unmounted it and removed its directory',
    );
    await unplug(q, 'dev-grow1', 'grow1');

    // 5. Swap on a hot-plugged disk the host formatted (kata's enable_guest_swap), named by slots.
    const swapDisk = path.join(dir, 'swap.img');
    fs.writeFileSync(swapDisk, Buffer.alloc(16 * 1024 * 1024));
    execFileSync('mkswap', ['-q', swapDisk]);
    const swap = rpc.call(agent, 'AddSwap', AddSwapRequestSchema, { PCIPath: [2, 3] }, EmptySchema, 120_000);
    await sleep(1000);
    await plug(q, 'swap1', swapDisk, { driver: 'virtio-blk-pci', id: 'dev-swap1', bus: 'pci-bridge-0', addr: '03' });
    await swap;
    const swaps = (await runInPod(rpc, 'swaps', busyboxSpec(guestBusyboxRootfs, ['cat', '/proc/swaps']))).stdout;
    t.match(swaps, /^\/dev\/vd[a-z]+\s+partition\s+16380/m, 'the guest swaps on it');

    // 6. Nothing plugged at 02/07: DEADLINE_EXCEEDED naming it, after agent.hotplug_timeout.
    const refused = await rpc
      .call(
        agent,
        'CreateContainer',
        CreateContainerRequestSchema,
        {
          containerId: 'never',
          execId: 'never',
          OCI: busyboxSpec(`${shared}/never/rootfs`, ['true']),
          storages: [{ driver: 'blk', source: '02/07', fstype: 'ext4', options: [], mountPoint: `${shared}/never` }],
        },
        EmptySchema,
        120_000,
      )
      .then(
        () => undefined,
        (e: Error & { code?: number }) => e,
      );
    t.ok(refused, 'refused');
    t.equal(refused?.code, 4, 'DEADLINE_EXCEEDED');
    t.match(refused?.message, /virtio-blk PCI path 02\/07: not found within 20000 ms/);

    q.close();
    await rpc.call(agent, 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
    rpc.close();
    t.equal(await vm.waitExit(120_000), 0);
  } catch (err) {
    t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);
  }
});
