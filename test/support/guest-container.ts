// One pod with one busybox container inside the guest, driven the way a kata 1.x host does it over
// virtio-serial: CreateSandbox → CreateContainer → StartContainer → ReadStdout to EOF → WaitProcess →
// RemoveContainer → DestroySandbox. Shared by `npm run demo` and the in-VM tests.
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import {
  CreateContainerRequestSchema,
  CreateSandboxRequestSchema,
  DestroySandboxRequestSchema,
  ReadStreamRequestSchema,
  ReadStreamResponseSchema,
  RemoveContainerRequestSchema,
  StartContainerRequestSchema,
  WaitProcessRequestSchema,
  WaitProcessResponseSchema,
} from '../../protos/gen/agent_pb.js';
import { readToEnd } from './end-of-stream.js';
import type { GuestRpc } from './guest-rpc.js';
import { busyboxSpec } from './oci-spec.js';

/** Carried in the image by rootfs-builder/make-tree.sh. */
export const guestBusyboxRootfs = '/usr/share/kata-agent/busybox-rootfs';

export const demoScript = 'echo "hello from $(hostname), pid $$, $(id)"; echo "memory.max $(cat /sys/fs/cgroup/memory.max)"';

export interface ContainerRun {
  stdout: string;
  status: number;
}

export async function runGuestContainer(rpc: GuestRpc, opts: { memoryLimit: bigint; destroySandbox: boolean }): Promise<ContainerRun> {
  const agent = 'grpc.AgentService';
  await rpc.call(agent, 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'demo-pod', sandboxId: 'demo' }, EmptySchema);
  const spec = busyboxSpec(guestBusyboxRootfs, ['/bin/sh', '-c', demoScript], { memoryLimit: opts.memoryLimit });
  await rpc.call(agent, 'CreateContainer', CreateContainerRequestSchema, { containerId: 'hello', execId: 'hello', OCI: spec }, EmptySchema);
  await rpc.call(agent, 'StartContainer', StartContainerRequestSchema, { containerId: 'hello' }, EmptySchema);
  // As kata hosts do: the init is addressed by its CreateContainer exec id, read until the read fails.
  const stdout = (
    await readToEnd(
      () => rpc.call(agent, 'ReadStdout', ReadStreamRequestSchema, { containerId: 'hello', execId: 'hello', len: 32 * 1024 }, ReadStreamResponseSchema),
      'ReadStdout hello',
    )
  ).toString();
  const { status } = await rpc.call(agent, 'WaitProcess', WaitProcessRequestSchema, { containerId: 'hello', execId: 'hello' }, WaitProcessResponseSchema);
  await rpc.call(agent, 'RemoveContainer', RemoveContainerRequestSchema, { containerId: 'hello' }, EmptySchema);
  if (opts.destroySandbox) await rpc.call(agent, 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
  return { stdout, status };
}
