// nvdimm volumes, in the VM: QEMU gets an ext4 image file as an nvdimm at boot (machine nvdimm=on,
// memory slots, `-object memory-backend-file` + `-device nvdimm`), as kata gives a volume or its
// guest image; with no labels the whole file is one raw namespace, /dev/pmem0, filesystem at offset 0.
//  - coldplug loads nfit for the ACPI NFIT device and nd_pmem for its namespace, so /dev/pmem0 is
//    there before the agent serves;
//  - a storage {driver "nvdimm", source "/dev/pmem0", fstype ext4} is mounted at its mount point and
//    a container reads a file of the image through a bind mount of it;
//  - a second nvdimm is hot-plugged through QMP (object-add + device_add) while CreateContainer waits
//    for it as a container Device {type "nvdimm", vm_path "/dev/pmem1"}: its node in the container
//    has the guest's major:minor, not the host's;
//  - a pmem that never comes is DEADLINE_EXCEEDED after agent.hotplug_timeout, naming it, and a
//    source that is no /dev/pmem<N> path is INVALID_ARGUMENT.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { CreateContainerRequestSchema, CreateSandboxRequestSchema, DestroySandboxRequestSchema } from '../../protos/gen/agent_pb.js';
import { guestBusyboxRootfs, runInPod } from '../support/guest-container.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { addMount, busyboxSpec } from '../support/oci-spec.js';
import { inGuest } from '../support/guest-vm.js';
import { qmp } from '../support/qmp.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const agent = 'grpc.AgentService';
const shared = '/run/kata-containers/shared/containers';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hotplugTimeoutS = 10;
/** A multiple of the nvdimm alignment (the memory-backend's page size and QEMU's 2 MiB DIMM align). */
const MiB = 1024 * 1024;

type RpcError = Error & { code?: number };
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: RpcError) => e,
  );

t.test('nvdimm: a pmem volume mounted as a storage, a hot-plugged pmem as a container device', { skip: guestSkip }, async (t) => {
  await inGuest(
    t,
    'kata-guest-nvdimm',
    (dir) => {
      // The volume: an ext4 image made from a directory, never mounted on the host.
      const src = path.join(dir, 'vol-src');
      fs.mkdirSync(path.join(src, 'data'), { recursive: true });
      fs.writeFileSync(path.join(src, 'data', 'hello.txt'), 'hello from pmem\n');
      const volume = path.join(dir, 'vol.img');
      execFileSync('mkfs.ext4', ['-q', '-F', '-d', src, '-E', 'root_owner=0:0', volume, '256M']);
      t.equal(fs.statSync(volume).size, 256 * MiB, 'the image is exactly the nvdimm size');
      // The raw one hot-plugged later: a magic at offset 0 (sparse after it).
      const raw = path.join(dir, 'raw.img');
      fs.writeFileSync(raw, 'PMEM-MAGIC-1\n');
      fs.truncateSync(raw, 128 * MiB);
      return {
        mode: 'initrd',
        params: [`agent.hotplug_timeout=${hotplugTimeoutS}s`, 'agent.log=debug'],
        extraArgs: [
          '-qmp',
          `unix:${path.join(dir, 'qmp.sock')},server=on,wait=off`,
          // Merged with the harness's -M and -m: nvdimms are memory devices, so they need slots.
          '-machine',
          'nvdimm=on',
          '-m',
          '512M,slots=4,maxmem=2G',
          '-object',
          `memory-backend-file,id=mem1,share=on,mem-path=${volume},size=256M`,
          '-device',
          'nvdimm,id=nv1,memdev=mem1',
        ],
      };
    },
    async ({ vm, dir, sock }) => {
      const coldplug = /"step":"coldplug","result":\{[^}]*"loaded":\[([^\]]*)\][^}]*"ms":\{([^}]*)\}[^}]*\},"ms":(\d+)/.exec(vm.console);
      t.ok(coldplug, 'the coldplug step is logged');
      t.match(coldplug?.[1], /"nfit".*"nd_pmem"/, 'coldplug loaded nfit, then nd_pmem for the namespace');
      t.comment(`coldplug: loaded ${coldplug?.[1]} (${coldplug?.[2]}), step ${coldplug?.[3]} ms`);
      const rpc = await GuestRpc.connect(sock);
      const q = await qmp(path.join(dir, 'qmp.sock'));
      await rpc.call(agent, 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'pmem-pod', sandboxId: 'pmem-pod' }, EmptySchema);

      // 1. The volume as a storage, bind-mounted into a container.
      const volMp = `${shared}/pmem-vol`;
      const spec = addMount(busyboxSpec(guestBusyboxRootfs, ['sh', '-c', 'cat /data/data/hello.txt; grep " /data " /proc/mounts | cut -d" " -f1,3']), {
        destination: '/data',
        type: 'bind',
        source: volMp,
        options: ['rbind', 'ro'],
      });
      const t0 = process.hrtime.bigint();
      const v = await runInPod(rpc, 'pmemc', spec, { storages: [{ driver: 'nvdimm', source: '/dev/pmem0', fstype: 'ext4', options: [], mountPoint: volMp }] });
      t.equal(v.stdout, 'hello from pmem\n/dev/pmem0 ext4\n', "the container reads the image's file; the mount is /dev/pmem0's ext4");
      t.equal(v.status, 0);
      t.comment(`storage nvdimm (present at boot): container run in ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(0)} ms`);

      // 2. A second nvdimm hot-plugged while CreateContainer waits for it as a Device.
      const devSpec = busyboxSpec(guestBusyboxRootfs, ['sh', '-c', 'head -c 13 /dev/xpmem; stat -c "%t:%T" /dev/xpmem; cat /sys/class/block/pmem1/dev']);
      devSpec.Linux!.Devices = [{ Path: '/dev/xpmem', Type: 'b', Major: 259n, Minor: 99n, FileMode: 0o660, UID: 0, GID: 0 }];
      devSpec.Linux!.Resources = { Devices: [{ Allow: true, Type: 'b', Major: 259n, Minor: 99n, Access: 'rwm' }] };
      let plugged = 0n;
      let createdAfterMs = 0;
      const dev = runInPod(
        rpc,
        'pmemdev',
        devSpec,
        { devices: [{ id: '', type: 'nvdimm', vmPath: '/dev/pmem1', containerPath: '/dev/xpmem', options: [] }] },
        () => {
          createdAfterMs = Number(process.hrtime.bigint() - plugged) / 1e6;
        },
      );
      await sleep(1500); // CreateContainer is waiting for /dev/pmem1 now
      plugged = process.hrtime.bigint();
      await q.cmd('object-add', { 'qom-type': 'memory-backend-file', id: 'mem2', share: true, 'mem-path': path.join(dir, 'raw.img'), size: 128 * MiB });
      await q.cmd('device_add', { driver: 'nvdimm', id: 'nv2', memdev: 'mem2' });
      const d = await dev;
      const [magic, numbers, guestDev] = d.stdout.split('\n');
      t.equal(magic, 'PMEM-MAGIC-1', 'the container reads the hot-plugged nvdimm through its node');
      const [maj, min] = guestDev.split(':').map(Number);
      t.equal(numbers, `${maj.toString(16)}:${min.toString(16)}`, `the node has the guest's numbers (${guestDev}), not the host's 259:99`);
      t.equal(d.status, 0);
      t.comment(`nvdimm device: CreateContainer answered ${createdAfterMs.toFixed(0)} ms after device_add`);

      // 3. A pmem never plugged, and a source that names no pmem.
      const create = (id: string, source: string) =>
        rpc.call(
          agent,
          'CreateContainer',
          CreateContainerRequestSchema,
          {
            containerId: id,
            execId: id,
            OCI: busyboxSpec(guestBusyboxRootfs, ['true']),
            storages: [{ driver: 'nvdimm', source, fstype: 'ext4', options: [], mountPoint: `${shared}/${id}` }],
          },
          EmptySchema,
          120_000,
        );
      const never = await failure(create('never', '/dev/pmem7'));
      t.equal(never?.code, 4, 'DEADLINE_EXCEEDED');
      t.match(never?.message, new RegExp(`nvdimm /dev/pmem7: not found within ${hotplugTimeoutS * 1000} ms`));
      const bad = await failure(create('bad', '/dev/vda'));
      t.equal(bad?.code, 3, 'INVALID_ARGUMENT');
      t.match(bad?.message, /nvdimm device "\/dev\/vda": a \/dev\/pmem<N> path expected/);

      q.close();
      await rpc.call(agent, 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
      rpc.close();
      t.equal(await vm.waitExit(120_000), 0);
    },
  );
});
