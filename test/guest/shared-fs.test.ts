// The pod's shared directory in the VM, as real kata hosts share it: a host folder exported by QEMU as
// 9p (kata 1.x) or virtio-fs through virtiofsd (2.x/3.x), tag kataShared, named by CreateSandbox's
// storage; the agent loads the filesystem module and mounts it; a container whose rootfs is in that
// share at /run/kata-containers/shared/containers/<cid>/rootfs runs and writes back through it. A file
// the host adds after CreateSandbox is seen (the share is live, not a copy taken at mount time), and a
// watchable-bind storage (3.x configmaps/secrets) follows a rewrite of its source on the host, and an
// overlayfs storage stacks a writable guest layer on a rootfs in the share.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import {
  CreateContainerRequestSchema,
  CreateSandboxRequestSchema,
  DestroySandboxRequestSchema,
  OnlineCPUMemRequestSchema,
  ReadStreamRequestSchema,
  ReadStreamResponseSchema,
  RemoveContainerRequestSchema,
  StartContainerRequestSchema,
  WaitProcessRequestSchema,
  WaitProcessResponseSchema,
} from '../../protos/gen/agent_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { StorageSchema } from '../../protos/gen/agent_pb.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { checkReadData, isEndOfStream, readToEnd } from '../support/end-of-stream.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { addMount, busyboxSpec } from '../support/oci-spec.js';
import { runInPod } from '../support/guest-container.js';
import { agentReady, bootGuest } from '../support/qemu.js';
import { startVirtiofsd, vhostUserFsArgs, virtiofsdMissing, type Virtiofsd } from '../support/virtiofsd.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const skip = guestSkip || containerTestSkipReason() || false;
const sharedInGuest = '/run/kata-containers/shared/containers';
const agent = 'grpc.AgentService';
type StorageInit = MessageInitShape<typeof StorageSchema>;

const shm: StorageInit = {
  driver: 'ephemeral',
  source: 'shm',
  fstype: 'tmpfs',
  options: ['noexec', 'nosuid', 'nodev', 'mode=1777', 'size=67108864'],
  mountPoint: '/run/kata-containers/sandbox/shm',
};

/** The configmap-like volume of the second container: its name as kata 3.x forms it (<cid>-<rand>-<volume>). */
const cfgVolume = (cid: string) => `${cid}-cfg-5f3a9c1e-app-config`;
const cfgV1 = 'version-1\n';
const cfgV2 = 'version-2-rewritten-by-host\n';

/**
 * The host's side of the share: the containers' rootfs, a data folder and a configmap volume, as the
 * kata runtime lays them out.
 */
function hostShare(dir: string, cid: string): string {
  const share = path.join(dir, 'share');
  for (const id of [cid, `${cid}-cfg`]) {
    const rootfs = buildBusyboxRootfs(path.join(share, id));
    fs.writeFileSync(path.join(rootfs, 'etc/marker'), `rootfs-from-host-${id}\n`);
  }
  fs.mkdirSync(path.join(share, `${cid}-data`));
  fs.writeFileSync(path.join(share, `${cid}-data/msg`), 'hello through the share\n');
  fs.mkdirSync(path.join(share, cfgVolume(`${cid}-cfg`)));
  fs.writeFileSync(path.join(share, cfgVolume(`${cid}-cfg`), 'key'), cfgV1);
  return share;
}

/** What the host changes in the volume: a new file beside, renamed over the old (a new inode, as kubelet's writer makes). */
function rewriteOnHost(file: string, content: string): void {
  fs.writeFileSync(`${file}.new`, content);
  fs.renameSync(`${file}.new`, file);
}

interface WatchRun {
  stdout: string;
  status: number;
  /** From the host's rewrite to the first ReadStdout answer carrying the new content. */
  latencyMs?: number;
}

/**
 * A container reading a watchable-bind storage's copy every 0.5 s until it sees the new content (at
 * most 120 reads, 60 s: a bound for a hung poller, far beyond kata's 2 s interval, not a timing
 * requirement); the host rewrites the source once the container printed the old content.
 */
async function runWatchable(rpc: GuestRpc, share: string, cid: string): Promise<WatchRun> {
  const volume = cfgVolume(cid);
  const copy = `${sharedInGuest}/watchable/${volume}`;
  const storage: StorageInit = {
    driver: 'watchable-bind',
    source: `${sharedInGuest}/${volume}`,
    fstype: 'bind',
    options: ['bind'],
    mountPoint: copy,
  };
  const spec = busyboxSpec(`${sharedInGuest}/${cid}/rootfs`, [
    'sh',
    '-c',
    // One read per round, printed and tested: a second read could see the rewrite the printed one missed.
    `for i in $(seq 1 120); do v=$(cat /cfg/key); echo "$v"; case "$v" in *version-2*) exit 0;; esac; sleep 0.5; done; exit 3`,
  ]);
  addMount(spec, { destination: '/cfg', type: 'bind', source: copy, options: ['rbind', 'ro'] });
  await rpc.call(agent, 'CreateContainer', CreateContainerRequestSchema, { containerId: cid, execId: cid, OCI: spec, storages: [storage] }, EmptySchema);
  await rpc.call(agent, 'StartContainer', StartContainerRequestSchema, { containerId: cid }, EmptySchema);
  let stdout = '';
  let rewroteAt: number | undefined;
  let latencyMs: number | undefined;
  for (;;) {
    let data: Uint8Array;
    try {
      ({ data } = await rpc.call(agent, 'ReadStdout', ReadStreamRequestSchema, { containerId: cid, execId: cid, len: 32 * 1024 }, ReadStreamResponseSchema));
    } catch (err) {
      if (isEndOfStream(err)) break;
      throw err;
    }
    stdout += Buffer.from(checkReadData(data, `ReadStdout ${cid}`)).toString();
    if (rewroteAt === undefined && stdout.includes(cfgV1)) {
      rewriteOnHost(path.join(share, volume, 'key'), cfgV2);
      rewroteAt = performance.now();
    } else if (rewroteAt !== undefined && latencyMs === undefined && stdout.includes(cfgV2)) {
      latencyMs = performance.now() - rewroteAt;
    }
  }
  const { status } = await rpc.call(agent, 'WaitProcess', WaitProcessRequestSchema, { containerId: cid, execId: cid }, WaitProcessResponseSchema);
  await rpc.call(agent, 'RemoveContainer', RemoveContainerRequestSchema, { containerId: cid }, EmptySchema);
  return { stdout, status, latencyMs };
}

async function runPod(
  rpc: GuestRpc,
  shared: StorageInit,
  share: string,
  cid: string,
): Promise<{ stdout: string; status: number; watch: WatchRun; overlay: { stdout: string; status: number } }> {
  await rpc.call(agent, 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'shared-pod', sandboxId: cid, storages: [shared, shm] }, EmptySchema);
  // Written once the share is mounted in the guest: the container must see it through the mount.
  fs.writeFileSync(path.join(share, `${cid}-data/late`), 'written by the host after CreateSandbox\n');
  // What hosts send before every container: memory only (nb_cpus 0), on the guest's real sysfs.
  await rpc.call(agent, 'OnlineCPUMem', OnlineCPUMemRequestSchema, { wait: true, nbCpus: 0, cpuOnly: false }, EmptySchema);
  const spec = busyboxSpec(`${sharedInGuest}/${cid}/rootfs`, [
    'sh',
    '-c',
    'cat /etc/marker /data/msg /data/late; echo written-in-guest > /data/out; grep -c " /dev/shm " /proc/mounts',
  ]);
  addMount(spec, { destination: '/data', type: 'bind', source: `${sharedInGuest}/${cid}-data`, options: ['rbind'] });
  await rpc.call(agent, 'CreateContainer', CreateContainerRequestSchema, { containerId: cid, execId: cid, OCI: spec }, EmptySchema);
  await rpc.call(agent, 'StartContainer', StartContainerRequestSchema, { containerId: cid }, EmptySchema);
  const stdout = (
    await readToEnd(
      () => rpc.call(agent, 'ReadStdout', ReadStreamRequestSchema, { containerId: cid, execId: cid, len: 32 * 1024 }, ReadStreamResponseSchema),
      `ReadStdout ${cid}`,
    )
  ).toString();
  const { status } = await rpc.call(agent, 'WaitProcess', WaitProcessRequestSchema, { containerId: cid, execId: cid }, WaitProcessResponseSchema);
  await rpc.call(agent, 'RemoveContainer', RemoveContainerRequestSchema, { containerId: cid }, EmptySchema);
  const watch = await runWatchable(rpc, share, `${cid}-cfg`);
  const overlay = await runOverlay(rpc, cid);
  await rpc.call(agent, 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
  return { stdout, status, watch, overlay };
}

/**
 * A container on an overlayfs storage (kata 3.x driver "overlayfs"): the first container's rootfs in
 * the share as the read-only layer, overlay-rw so the agent makes the writable layer in guest memory.
 * The container rewrites a file; the host's copy must stay as it was.
 */
async function runOverlay(rpc: GuestRpc, cid: string): Promise<{ stdout: string; status: number }> {
  const id = `${cid}-ovl`;
  const rootfs = `${sharedInGuest}/${id}/rootfs`;
  const storage: StorageInit = {
    driver: 'overlayfs',
    source: 'overlay',
    fstype: 'overlay',
    options: [`lowerdir=${sharedInGuest}/${cid}/rootfs`, 'io.katacontainers.fs-opt.overlay-rw'],
    mountPoint: rootfs,
  };
  return runInPod(rpc, id, busyboxSpec(rootfs, ['sh', '-c', 'echo changed-in-overlay > /etc/marker; cat /etc/marker']), { storages: [storage] });
}

async function check(t: Test, name: string, extraArgs: (share: string, dir: string) => Promise<string[]>, shared: StorageInit, memoryBackend: boolean) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kata-guest-${name}-`));
  const cid = `storage-${name}-${process.pid}`;
  const share = hostShare(dir, cid);
  const sock = path.join(dir, 'agent.sock');
  const vm = await bootGuest({
    mode: 'initrd',
    serialSocket: sock,
    consoleFile: path.join(dir, 'console.log'),
    extraArgs: [
      ...(memoryBackend ? ['-object', 'memory-backend-memfd,id=mem,size=512M,share=on', '-numa', 'node,memdev=mem'] : []),
      ...(await extraArgs(share, dir)),
    ],
  });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    await vm.waitFor(agentReady, 300_000);
    const rpc = await GuestRpc.connect(sock);
    const run = await runPod(rpc, shared, share, cid);
    rpc.close();
    t.equal(run.status, 0, 'the container exited 0');
    t.same(
      run.stdout.split('\n'),
      [`rootfs-from-host-${cid}`, 'hello through the share', 'written by the host after CreateSandbox', '1', ''],
      'rootfs and data read from the host share, including a file the host wrote after CreateSandbox',
    );
    const lines = run.watch.stdout.split('\n').filter((l) => l !== '');
    t.equal(run.watch.status, 0, 'the watchable-bind reader saw the new content before its 120 reads ran out');
    t.equal(lines[0], cfgV1.trim(), 'the container first read the source as copied at CreateContainer');
    t.equal(lines.at(-1), cfgV2.trim(), "the host's rewrite reached the container's copy");
    t.same(new Set(lines), new Set([cfgV1.trim(), cfgV2.trim()]), 'only whole old or new contents were read, never a torn file');
    t.comment(
      `watchable-bind over ${shared.fstype}: host rewrite → new content in the container's output after ${run.watch.latencyMs?.toFixed(0)} ms (${lines.length} reads at 0.5 s; agent polls every 2 s)`,
    );
    t.equal(fs.readFileSync(path.join(share, `${cid}-data/out`), 'utf8'), 'written-in-guest\n', 'a file the container wrote is on the host');
    t.same(run.overlay, { stdout: 'changed-in-overlay\n', status: 0 }, 'the overlayfs container wrote to its rootfs and exited 0');
    t.equal(
      fs.readFileSync(path.join(share, cid, 'rootfs/etc/marker'), 'utf8'),
      `rootfs-from-host-${cid}\n`,
      "its write stayed in the guest's layer: the host's copy is unchanged",
    );
    t.notOk(fs.existsSync(path.join(share, `${cid}-ovl`, 'rootfs')), 'the mount point made in the share went with RemoveContainer');
    const loaded = vm.console.split('\n').find((l) => l.includes(`"fstype":"${shared.fstype}","loaded":[`));
    if (shared.fstype === 'virtiofs') {
      // virtiofs is also the vhost-user-fs device's driver: PID 1's coldplug loaded it at boot, so
      // the mount found it in /proc/filesystems and loaded nothing.
      t.notOk(loaded, 'virtiofs was there before the mount (coldplugged with its device)');
    } else {
      // 9p is a filesystem, not a device driver: the agent loads it for the mount.
      t.ok(loaded, 'the filesystem module was loaded by the agent');
      t.comment(`agent log: ${loaded?.slice(loaded.indexOf('{'))}`);
    }
    t.equal(await vm.waitExit(120_000), 0, 'DestroySandbox unmounted everything and powered off');
  } catch (err) {
    t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);
  }
}

t.test('kata 1.x: 9p kataShared', { skip }, async (t) => {
  await check(
    t,
    '9p',
    async (share) => ['-fsdev', `local,id=fs0,path=${share},security_model=none`, '-device', 'virtio-9p-pci,fsdev=fs0,mount_tag=kataShared'],
    {
      driver: '9p',
      source: 'kataShared',
      fstype: '9p',
      options: ['trans=virtio,version=9p2000.L,cache=mmap', 'nodev', 'msize=8192'],
      mountPoint: `${sharedInGuest}/`,
    },
    false,
  );
});

t.test('kata 3.x: virtio-fs kataShared through virtiofsd', { skip: skip || virtiofsdMissing() || false }, async (t) => {
  let daemon: Virtiofsd | undefined;
  t.teardown(() => daemon?.stop());
  await check(
    t,
    'virtiofs',
    async (share, dir) => {
      daemon = await startVirtiofsd(share, dir);
      return vhostUserFsArgs(daemon.socket);
    },
    { driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', options: [], mountPoint: `${sharedInGuest}/` },
    true,
  );
});
