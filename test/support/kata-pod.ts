// One pod as a real kata host drives it (docs/facts/kata-pod-flow.md, measured with the kata 3.5
// shim and the kata 1.x Go client): the RPCs in order, with the ids, storages and spec shapes those
// hosts send. Used by the conformance tests on a unix socket and in the VM, on both wires.
//
// What differs per generation is spelled out where it happens: 3.x (ttrpc) shares the pod directory by
// virtio-fs, sends UpdateEphemeralMounts and RemoveStaleVirtiofsShareMounts, and stops a container with
// SignalProcess exec_id ""; 1.x (gRPC) shares it by 9p and signals the init by its exec id (= the
// container id). Both address the init process by the container id everywhere else.
import type { MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import type { AgentService } from '../../protos/gen/agent_pb.js';
import { checkReadData, isEndOfStream, readToEnd } from './end-of-stream.js';
import type { SpecInit } from './oci-spec.js';
import { dockerDefaultCaps } from './seccomp-profiles.js';

type Methods = typeof AgentService.method;
export type HostCall = <K extends keyof Methods>(
  method: K,
  req: MessageInitShape<Methods[K]['input']>,
  timeoutMs?: number,
) => Promise<MessageShape<Methods[K]['output']>>;

export type Generation = '1.x' | '3.x';

/** Where the guest side of the pod lives: /run/kata-containers in a guest, a temp dir in host tests. */
export interface PodPaths {
  stateRoot: string;
  /**
   * The pause container's OOMScoreAdj: kata sends -998, which only a process with CAP_SYS_RESOURCE
   * may set (a guest agent has it; root on these test machines does not).
   */
  pauseOomScoreAdj?: number;
}

export const sharedDir = (p: PodPaths) => `${p.stateRoot}/shared/containers`;
export const shmDir = (p: PodPaths) => `${p.stateRoot}/sandbox/shm`;

// Ids of the shape real hosts use: 64 hex digits for containers (the sandbox id is the pause
// container's), a UUID for exec ids, kubepods cgroup paths with the pod's UID.
export const sandboxId = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a';
export const appId = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0';
export const podUid = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
export const probeExecId = '3f333df6-90a4-4fda-8dd3-9485d27cee36';
export const ttyExecId = 'b8f6c2a0-5d1e-4c7b-9a3e-2f4d6e8a0c1b';
/** The share's per-container file names carry a random part, as containerd's CRI makes them. */
export const fileTag = (cid: string, name: string) => `${cid}-8b2f9c1d7e6a5b43-${name}`;

/** CreateSandbox's shared-directory storage: virtio-fs on 3.x, 9p on 1.x. */
export function shareStorage(gen: Generation, p: PodPaths) {
  return gen === '3.x'
    ? { driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', options: [], mountPoint: `${sharedDir(p)}/` }
    : {
        driver: '9p',
        source: 'kataShared',
        fstype: '9p',
        options: ['trans=virtio,version=9p2000.L,cache=mmap', 'nodev', 'msize=8192'],
        mountPoint: `${sharedDir(p)}/`,
      };
}

export function shmStorage(p: PodPaths) {
  return { driver: 'ephemeral', source: 'shm', fstype: 'tmpfs', options: ['noexec', 'nosuid', 'nodev', 'mode=1777', 'size=67108864'], mountPoint: shmDir(p) };
}

/** What the host put in the shared directory before CreateContainer (relative paths → file content). */
export function hostShareFiles(cid: string): Record<string, string> {
  return {
    [fileTag(cid, 'hosts')]: '127.0.0.1\tlocalhost\n192.0.2.10\tweb-0\n',
    [fileTag(cid, 'hostname')]: 'web-0\n',
    [fileTag(cid, 'resolv.conf')]: 'nameserver 192.0.2.53\nsearch default.svc.cluster.local\n',
    [fileTag(cid, 'termination-log')]: '',
  };
}

const defaultMounts = [
  { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
  { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
];

/**
 * The spec after kata's constrainGRPCSpec: pid, network and cgroup namespaces removed, the rest with
 * empty paths, hooks and most resources dropped, /dev/shm bound to the sandbox shm, cgroups path kept.
 */
function podSpec(
  p: PodPaths,
  cid: string,
  args: string[],
  extra: { oomScoreAdj: number; binds: { destination: string; source: string; options: string[] }[]; terminal?: boolean },
): SpecInit {
  return {
    Version: '1.1.0',
    Root: { Path: `${sharedDir(p)}/${cid}/rootfs`, Readonly: false },
    Hostname: 'web-0',
    Process: {
      Terminal: extra.terminal ?? false,
      User: { UID: 0, GID: 0, AdditionalGids: [0, 10] },
      Args: args,
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOSTNAME=web-0', 'KUBERNETES_SERVICE_HOST=192.0.2.1'],
      Cwd: '/',
      Capabilities: {
        Bounding: [...dockerDefaultCaps],
        Effective: [...dockerDefaultCaps],
        Permitted: [...dockerDefaultCaps],
      },
      NoNewPrivileges: false,
      OOMScoreAdj: BigInt(extra.oomScoreAdj),
    },
    Mounts: [
      ...defaultMounts,
      ...extra.binds.map((b) => ({ ...b, type: 'bind' })),
      { destination: '/dev/shm', type: 'bind', source: shmDir(p), options: ['rbind'] },
    ],
    Annotations: { 'io.kubernetes.cri.sandbox-id': sandboxId, 'io.kubernetes.cri.container-type': cid === sandboxId ? 'sandbox' : 'container' },
    Linux: {
      CgroupsPath: `/kubepods/besteffort/pod${podUid}/${cid}`,
      Namespaces: [
        { Type: 'ipc', Path: '' },
        { Type: 'uts', Path: '' },
        { Type: 'mount', Path: '' },
      ],
      MaskedPaths: [
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      ReadonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** The pause container: a process that waits for SIGTERM, as /pause does. */
export function pauseSpec(p: PodPaths): SpecInit {
  return podSpec(p, sandboxId, ['/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'], { oomScoreAdj: p.pauseOomScoreAdj ?? -998, binds: [] });
}

/** The app container: a server that logs to both streams and stays up until stopped. */
export function appSpec(p: PodPaths): SpecInit {
  const share = sharedDir(p);
  const bind = (destination: string, name: string, ro = false) => ({
    destination,
    source: `${share}/${fileTag(appId, name)}`,
    options: ['rbind', 'rprivate', ro ? 'ro' : 'rw'],
  });
  return podSpec(
    p,
    appId,
    [
      '/bin/sh',
      '-c',
      'echo "web-0 up: $(hostname) $(cat /etc/resolv.conf | head -n 1)"; echo "warming" >&2; trap "echo bye; exit 0" TERM; while :; do sleep 1; done',
    ],
    {
      oomScoreAdj: 1000,
      binds: [
        bind('/etc/hosts', 'hosts'),
        bind('/dev/termination-log', 'termination-log'),
        bind('/etc/hostname', 'hostname'),
        bind('/etc/resolv.conf', 'resolv.conf'),
      ],
    },
  );
}

export interface PodRun {
  /** Every RPC sent, in order ("Name" or "Name exec_id"). */
  sequence: string[];
  appStdout: string;
  appStderr: string;
  probe: { stdout: string; status: number };
  tty: { output: string; status: number };
  pauseStatus: number;
  appStatus: number;
  guestDetails: MessageShape<Methods['getGuestDetails']['output']>;
  stats: MessageShape<Methods['statsContainer']['output']>;
}

/**
 * Drives one pod from first Check to DestroySandbox. `call` sends one AgentService RPC; `check`
 * sends grpc.Health Check. Throws on the first RPC that fails where a real host's pod would fail.
 */
export async function runPod(
  gen: Generation,
  p: PodPaths,
  call: HostCall,
  check: () => Promise<void>,
  hooks: { appStarted?: () => void | Promise<void> } = {},
): Promise<PodRun> {
  const sequence: string[] = [];
  const send: HostCall = (method, req, timeoutMs) => {
    const r = req as { execId?: string };
    sequence.push(r.execId !== undefined ? `${String(method)} ${r.execId}` : String(method));
    return call(method, req, timeoutMs);
  };
  const onlineCpuMem = () => send('onlineCPUMem', { wait: false, nbCpus: 0, cpuOnly: false });
  const ephemeralMounts = async () => {
    if (gen === '3.x') await send('updateEphemeralMounts', { storages: [] });
  };

  sequence.push('Check');
  await check();
  await send('createSandbox', {
    hostname: 'web-0',
    dns: ['nameserver 192.0.2.53', 'search default.svc.cluster.local'],
    storages: [shareStorage(gen, p), shmStorage(p)],
    sandboxId,
  });
  const guestDetails = await send('getGuestDetails', { memBlockSize: true, memHotplugProbe: true });

  // The pause container; its init is addressed by its exec id (= its container id) from here on.
  await send('createContainer', { containerId: sandboxId, execId: sandboxId, OCI: pauseSpec(p), storages: [] });
  await onlineCpuMem();
  await ephemeralMounts();
  await send('startContainer', { containerId: sandboxId });
  const pauseWait = send('waitProcess', { containerId: sandboxId, execId: sandboxId }, 600_000);
  // The host keeps one GetOOMEvent in flight for the pod's life; it ends when the connection does.
  const oom = send('getOOMEvent', {}, 600_000).catch(() => undefined);
  void oom;

  await send('createContainer', { containerId: appId, execId: appId, OCI: appSpec(p), storages: [] });
  await onlineCpuMem();
  await ephemeralMounts();
  await send('startContainer', { containerId: appId });
  await onlineCpuMem();
  await hooks.appStarted?.();
  const read = (stream: 'readStdout' | 'readStderr', cid: string, eid: string) =>
    readToEnd(() => send(stream, { containerId: cid, execId: eid, len: 32768 }), `${stream} ${eid}`).then((b) => b.toString());
  const appOut = read('readStdout', appId, appId);
  const appErr = read('readStderr', appId, appId);

  // An exec probe: output read to its end, then WaitProcess.
  await send('execProcess', {
    containerId: appId,
    execId: probeExecId,
    process: { Args: ['/bin/sh', '-c', 'cat /etc/hostname; test -s /etc/hosts'], Env: ['PATH=/usr/bin:/bin'], Cwd: '/', User: { UID: 0, GID: 0 } },
  });
  const [probeOut] = await Promise.all([read('readStdout', appId, probeExecId), read('readStderr', appId, probeExecId)]);
  const probeStatus = (await send('waitProcess', { containerId: appId, execId: probeExecId })).status;

  // kubectl exec -it: a shell on a terminal, resized, fed, resized again, stdin closed.
  await send('execProcess', {
    containerId: appId,
    execId: ttyExecId,
    process: { Terminal: true, Args: ['/bin/sh'], Env: ['PATH=/usr/bin:/bin', 'TERM=xterm'], Cwd: '/', User: { UID: 0, GID: 0 } },
  });
  await send('ttyWinResize', { containerId: appId, execId: ttyExecId, row: 40, column: 120 });
  // The user types a line, sees its answer, resizes the window and types the next one.
  let ttyOutput = '';
  let ttyEnded = false;
  const readTty = async (until: (out: string) => boolean) => {
    while (!ttyEnded && !until(ttyOutput)) {
      try {
        ttyOutput += Buffer.from(checkReadData((await send('readStdout', { containerId: appId, execId: ttyExecId, len: 32768 })).data, 'tty')).toString();
      } catch (err) {
        if (!isEndOfStream(err)) throw err;
        ttyEnded = true;
      }
    }
  };
  await send('writeStdin', { containerId: appId, execId: ttyExecId, data: Buffer.from('tty; stty size; echo done-$((6*7))\n') });
  await readTty((out) => out.includes('done-42\r\n'));
  await send('ttyWinResize', { containerId: appId, execId: ttyExecId, row: 50, column: 132 });
  await send('writeStdin', { containerId: appId, execId: ttyExecId, data: Buffer.from('stty size; exit 3\n') });
  await readTty(() => false);
  await send('closeStdin', { containerId: appId, execId: ttyExecId });
  const ttyStatus = (await send('waitProcess', { containerId: appId, execId: ttyExecId })).status;

  const stats = await send('statsContainer', { containerId: appId });

  // Stop and delete the app container, then the pod.
  const stopId = gen === '3.x' ? '' : appId;
  await send('signalProcess', { containerId: appId, execId: stopId, signal: 15 });
  const [appStdout, appStderr] = await Promise.all([appOut, appErr]);
  // The shim's SIGKILL comes after the grace period even when the process has already exited.
  if (gen === '3.x') await send('signalProcess', { containerId: appId, execId: stopId, signal: 9 });
  const appStatus = (await send('waitProcess', { containerId: appId, execId: appId })).status;
  await send('removeContainer', { containerId: appId, timeout: 0 });
  if (gen === '3.x') await send('removeStaleVirtiofsShareMounts', {});

  await send('signalProcess', { containerId: sandboxId, execId: gen === '3.x' ? '' : sandboxId, signal: 15 });
  const pauseStatus = (await pauseWait).status;
  await send('removeContainer', { containerId: sandboxId, timeout: 0 });
  if (gen === '3.x') await send('removeStaleVirtiofsShareMounts', {});
  await send('destroySandbox', {});
  return {
    sequence,
    appStdout,
    appStderr,
    probe: { stdout: probeOut, status: probeStatus },
    tty: { output: ttyOutput, status: ttyStatus },
    pauseStatus,
    appStatus,
    guestDetails,
    stats,
  };
}
