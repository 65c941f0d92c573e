// Our own guest kernel (`npm run image -- --kernel kata --out build/kata`: linux-source-6.1 with
// every driver built in) booting the three ways kata boots a guest, with kata's kernel parameters
// and console:
//  - `image =` over nvdimm (kata's default): the image as a read-only nvdimm, root=/dev/pmem0p1
//    rootflags=dax, no initramfs: the kernel must find the DAX metadata and the partition itself;
//  - `image =` over virtio-blk (`disable_image_nvdimm = true`): root=/dev/vda1;
//  - `initrd =`: the whole tree as initramfs, now without kernel modules.
// Each reaches the agent, which answers Check and runs a container; the nvdimm boot's root is
// checked to be pmem0p1 mounted with DAX.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { CheckRequestSchema, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { guestBusyboxRootfs, runGuestContainer, runInPod } from '../support/guest-container.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { addMount, busyboxSpec } from '../support/oci-spec.js';
import { inGuest } from '../support/guest-vm.js';
import { assetsIn, guestSkipReason, kataKernelParams, repoRoot, type BootOptions } from '../support/qemu.js';
import { CreateSandboxRequestSchema, DestroySandboxRequestSchema } from '../../protos/gen/agent_pb.js';
import { EmptySchema } from '@bufbuild/protobuf/wkt';

const kataAssets = assetsIn(process.env.KATA_KERNEL_ASSETS ?? path.join(repoRoot, 'build', 'kata'));
// This build has no stage 1 (nothing to load before the root): the other three files must be there.
const missing = [kataAssets.kernel, kataAssets.initrd, kataAssets.image].filter((f) => !fs.existsSync(f));
const reason =
  guestSkipReason({ ...kataAssets, stage1: kataAssets.kernel }) ??
  (missing.length ? `our kernel's image is not built: ${missing.join(', ')} (run \`npm run image -- --kernel kata --out build/kata\`)` : undefined);
if (process.env.CI && reason) t.fail(`CI must run the kata-kernel boots: ${reason}`);
const skip = (!process.env.CI && reason) || false;

const modes: { mode: BootOptions['mode']; what: string }[] = [
  { mode: 'nvdimm', what: 'image = over nvdimm (root=/dev/pmem0p1, DAX)' },
  { mode: 'virtio-blk', what: 'image = over virtio-blk (disable_image_nvdimm, root=/dev/vda1)' },
  { mode: 'initrd', what: 'initrd =' },
];

for (const { mode, what } of modes) {
  t.test(`our kernel, ${what}: boots to the agent, which runs a container`, { skip }, async (t) => {
    const started = process.hrtime.bigint();
    await inGuest(
      t,
      `kata-kernel-${mode}`,
      () => ({ mode, assets: kataAssets, console: 'kata-hvc', baseParams: kataKernelParams('3.x', 1) }),
      async ({ vm, sock }) => {
        const rpc = await GuestRpc.connect(sock);
        try {
          const { status } = await rpc.call('grpc.Health', 'Check', CheckRequestSchema, {}, HealthCheckResponseSchema, 30_000);
          t.equal(status, HealthCheckResponse_ServingStatus.SERVING, 'Check answered');
          t.comment(`${what}: QEMU start → first Check answered in ${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(0)} ms`);
          if (mode === 'initrd') {
            const run = await runGuestContainer(rpc, { memoryLimit: 64n << 20n, destroySandbox: true });
            t.equal(run.status, 0, 'the container ran');
            t.match(run.stdout, /memory\.max 67108864/, 'its cgroup v2 limit was applied');
          } else {
            // The agent's own mounts, through a bind of its /proc/1 on the rootfs's /root (the root is
            // read-only here, so the mount point must exist already): what the root is.
            await rpc.call('grpc.AgentService', 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'kernel-pod', sandboxId: 'kernel-pod' }, EmptySchema);
            const spec = addMount(
              busyboxSpec(guestBusyboxRootfs, [
                'sh',
                '-c',
                // The kernel calls the root it mounted itself /dev/root: its numbers name the device.
                'grep " / " /root/mounts | grep -v "^rootfs "; set -- $(grep " / / " /root/mountinfo); echo "$3 $(basename $(readlink /sys/dev/block/$3))"',
              ]),
              {
                destination: '/root',
                type: 'bind',
                source: '/proc/1',
                options: ['rbind', 'ro'],
              },
            );
            const run = await runInPod(rpc, 'rootc', spec);
            t.equal(run.status, 0, 'the container ran');
            const [mounts, device] = run.stdout.trim().split('\n');
            const [, , type, opts] = mounts.split(' ');
            const [numbers, name] = device.split(' ');
            t.equal(name, mode === 'nvdimm' ? 'pmem0p1' : 'vda1', `the root is ${name} (${numbers})`);
            t.equal(type, 'ext4');
            t.match(opts, /^ro,/, 'mounted read-only');
            if (mode === 'nvdimm') t.match(opts, /dax/, `with DAX (${opts})`);
            await rpc.call('grpc.AgentService', 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
          }
        } finally {
          rpc.close();
        }
        t.notMatch(vm.console, /boot step failed|module load failed/, 'no boot step failed; no module was looked for');
        t.equal(await vm.waitExit(120_000), 0, 'DestroySandbox powered the VM off');
        t.notMatch(vm.console, /Kernel panic/, 'no kernel panic');
      },
    );
  });
}
