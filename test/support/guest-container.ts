// One pod with one busybox container inside the guest, driven the way a kata 1.x host does it over
// virtio-serial: CreateSandbox → CreateContainer → StartContainer → ReadStdout to EOF → WaitProcess →
// RemoveContainer → DestroySandbox. Shared by `npm run demo` and the in-VM tests.
import type { MessageInitShape } from '@bufbuild/protobuf';
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
import { busyboxSpec, type SpecInit } from './oci-spec.js';

/** Carried in the image by rootfs-builder/make-tree.sh. */
export const guestBusyboxRootfs = '/usr/share/kata-agent/busybox-rootfs';

export const demoScript = 'echo "hello from $(hostname), pid $$, $(id)"; echo "memory.max $(cat /sys/fs/cgroup/memory.max)"';

export interface ContainerRun {
  stdout: string;
  status: number;
}

/**
 * One container of an existing pod, run to its end as kata hosts do: CreateContainer, StartContainer,
 * ReadStdout on the init's exec id (= container id) until the read fails, WaitProcess, RemoveContainer.
 */
export async function runInPod(
  rpc: GuestRpc,
  id: string,
  spec: SpecInit,
  /** The request's storages and devices (a disk the host hot-plugs for it). */
  extra: Pick<MessageInitShape<typeof CreateContainerRequestSchema>, 'storages' | 'devices'> = {},
  /** Called once CreateContainer has answered (how long a hot-plug wait took). */
  onCreated?: () => void,
): Promise<ContainerRun> {
  const agent = 'grpc.AgentService';
  await rpc.call(agent, 'CreateContainer', CreateContainerRequestSchema, { containerId: id, execId: id, OCI: spec, ...extra }, EmptySchema, 120_000);
  onCreated?.();
  await rpc.call(agent, 'StartContainer', StartContainerRequestSchema, { containerId: id }, EmptySchema);
  const stdout = (
    await readToEnd(
      () => rpc.call(agent, 'ReadStdout', ReadStreamRequestSchema, { containerId: id, execId: id, len: 32 * 1024 }, ReadStreamResponseSchema),
      `ReadStdout ${id}`,
    )
  ).toString();
  const { status } = await rpc.call(agent, 'WaitProcess', WaitProcessRequestSchema, { containerId: id, execId: id }, WaitProcessResponseSchema);
  await rpc.call(agent, 'RemoveContainer', RemoveContainerRequestSchema, { containerId: id }, EmptySchema);
  return { stdout, status };
}

export async function runGuestContainer(rpc: GuestRpc, opts: { memoryLimit: bigint; destroySandbox: boolean }): Promise<ContainerRun> {
  await rpc.call('grpc.AgentService', 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'demo-pod', sandboxId: 'demo' }, EmptySchema);
  const run = await runInPod(rpc, 'hello', busyboxSpec(guestBusyboxRootfs, ['/bin/sh', '-c', demoScript], { memoryLimit: opts.memoryLimit }));
  if (opts.destroySandbox) await rpc.call('grpc.AgentService', 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
  return run;
}
