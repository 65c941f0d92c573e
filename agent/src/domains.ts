// The agent service's domains: sandbox, containers (cgroups, helpers, I/O), storage and guest
// details. startAgent builds them on the host's first AgentService call, not at start: with the
// agent.proto descriptors they import they were most of the agent's start-up under QEMU TCG and
// most of an idle agent's memory, and a host's first call (Check) needs none of them.
import { defaults, type AgentConfig } from './config/config.js';
import type { CgroupManager } from './cgroups/cgroup.js';
import { cgroupVersionFromConfig, createCgroupManager } from './cgroups/detect.js';
import { containerHandlers } from './container/handlers.js';
import { diagnosticDataHandlers } from './container/termination-message.js';
import { copyFileHandlers } from './storage/copy-file.js';
import { ContainerManager } from './container/manager.js';
import { guestDateTimeHandlers } from './guest/date-time.js';
import { guestDetailsHandlers } from './guest/details.js';
import { memProbeHandlers } from './guest/mem-probe.js';
import { metricsHandlers } from './guest/metrics.js';
import { randomHandlers } from './guest/random.js';
import { ioHandlers } from './io/handlers.js';
import { sharedContainersDir, staleShareMountHandlers } from './storage/stale-share-mounts.js';
import { createProcessIO } from './io/process-io.js';
import { libc as realLibc } from './linux/index.js';
import { PR_SET_CHILD_SUBREAPER, type Libc } from './linux/libc.js';
import type { Logger } from './log/logger.js';
import { preparePidNamespaces } from './namespace/pid-namespace.js';
import { networkHandlers } from './network/handlers.js';
import { HelperPool } from './process/helper-pool.js';
import type { CreateProcessIO, ProcessIO } from './io/process-io.js';
import { OrphanReaper } from './process/reaper.js';
import { WarmExecHelpers } from './process/warm-exec-helpers.js';
import type { AgentHandlers } from './rpc/service.js';
import { Sandbox } from './sandbox/sandbox.js';
import { onlineCpuMemHandlers } from './guest/online-cpu-mem.js';
import { filesystemEnsurer } from './storage/filesystems.js';
import { storageHandlers } from './storage/handlers.js';
import { StorageRegistry } from './storage/storages.js';
import { blockKinds, HotplugDevices } from './device/hotplug.js';
import { vfioKinds } from './device/vfio.js';
import { moduleAutoloader, moduleLoader } from './uevent/autoload.js';
import { UeventListener } from './uevent/listener.js';
import { resizeVolumeHandlers } from './storage/resize-volume.js';
import { swapHandlers } from './storage/swap.js';
import { probeSeccomp, type SeccompSupport } from './seccomp/index.js';
import type { Libseccomp } from './seccomp/libseccomp.js';
import { lazyValue } from './linux/lazy-table.js';

/** What the container domain is built from; tests substitute parts (a temp resolv.conf, for one). */
export interface DomainDeps {
  libc?: Libc;
  cgroups?: CgroupManager;
  createIO?: CreateProcessIO;
  ioHandlers?: (lookup: (containerId: string, execId: string) => ProcessIO) => AgentHandlers;
  /** /etc/resolv.conf unless a test says otherwise. */
  resolvConfTarget?: string;
  /**
   * Container-init helpers kept started ahead of need (default 1). A fresh node helper costs ~40 ms
   * of start-up, which a pooled one has already paid, so CreateContainer stays below runc's latency.
   */
  helperPoolSize?: number;
  /** Called once DestroySandbox has undone the pod (init mode powers the VM off after answering). */
  onSandboxDestroyed?: () => void;
  /** The create pool (default: helperPoolSize helpers); tests pass their own to reach its helpers. */
  pool?: HelperPool;
  /** Warm exec helpers (default: capped at DEFAULT_WARM_EXEC_MAX); tests pass their own to read its stats. */
  warmExec?: WarmExecHelpers;
  /** Root of sysfs (/sys); tests give a fake tree for OnlineCPUMem, MemHotplugByProbe and GetGuestDetails. */
  sysfs?: string;
  /** Root of procfs (/proc) GetMetrics reads; tests give a fixture tree. */
  proc?: string;
  /** Makes a filesystem type available (loads its modules); tests record what was asked. */
  ensureFilesystem?: (fstype: string) => void;
  /** watchable-bind poll interval (default 2 s, kata's). */
  watchIntervalMs?: number;
  /** Finds hot-plugged disks (default: on the guest, by uevents and /sys; off it, none). */
  devices?: HotplugDevices;
  /** Loads libseccomp (default: libseccomp.so.2 through koffi); tests make it fail. */
  libseccomp?: () => Libseccomp;
}

/**
 * An idle node helper holds ~6 MB of RssAnon. Four bounds that to ~25 MB while covering the usual pod
 * (one or a few containers with exec probes); containers beyond it exec with a fresh helper.
 */
export const DEFAULT_WARM_EXEC_MAX = 4;

interface Domains {
  handlers: AgentHandlers[];
  /** Whether container seccomp profiles are enforced (GetGuestDetails' supports_seccomp). */
  seccomp(): SeccompSupport;
  /** GetGuestDetails' storage_handlers. */
  storageDrivers(): string[];
  /** GetGuestDetails' device_handlers. */
  deviceTypes(): string[];
  /** Finds hot-plugged disks (AddSwap too); undefined off the guest. */
  devices?: HotplugDevices;
  /** Starts background work (the helper pool) once pid namespaces are prepared. */
  start(): void;
  /** Removes every container and the sandbox (agent shutdown). */
  shutdown(): Promise<void>;
}

/**
 * The guest's own agent runs with the default state root; any other state root is a test or
 * development run on some host, whose kernel, clock and files the agent must leave alone.
 */
const onTheGuest = (config: AgentConfig): boolean => config.stateRoot === defaults.stateRoot;

/** Probes libseccomp on first use, once, and says in one log line why profiles cannot be enforced. */
function seccompProbe(log: Logger, load: (() => Libseccomp) | undefined): () => SeccompSupport {
  return lazyValue(() => {
    const s = probeSeccomp(load);
    if (s.ok) log.debug({ libseccomp: `${s.version.major}.${s.version.minor}.${s.version.micro}`, api: s.version.api }, 'seccomp profiles are enforced');
    else log.warn({ why: s.why }, 'seccomp profiles cannot be enforced: GetGuestDetails says supports_seccomp false');
    return s;
  });
}

function buildDomains(config: AgentConfig, log: Logger, deps: DomainDeps): Domains {
  const handlers: AgentHandlers[] = [];
  const seccomp = seccompProbe(log, deps.libseccomp);
  let cgroups = deps.cgroups;
  try {
    cgroups ??= createCgroupManager({ forceVersion: cgroupVersionFromConfig(config.unifiedCgroupHierarchy) });
  } catch (err) {
    // Without a cgroup driver the container RPCs stay UNIMPLEMENTED rather than half work.
    log.error({ err: (err as Error).message }, 'no cgroup driver: container RPCs are unavailable');
    return { handlers, seccomp, storageDrivers: () => [], deviceTypes: () => [], start: () => undefined, shutdown: async () => undefined };
  }
  const libc = deps.libc ?? realLibc();
  const pool = deps.pool ?? new HelperPool(libc, deps.helperPoolSize ?? 1, config.helperIdleTimeoutMs);
  const warmExec = deps.warmExec ?? new WarmExecHelpers(libc, DEFAULT_WARM_EXEC_MAX, config.helperIdleTimeoutMs);
  // Off the guest the pod's DNS file must not be bind-mounted over that host's /etc/resolv.conf, and
  // no module may go into that host's kernel nor any of its memory be onlined.
  const guest = onTheGuest(config);
  const resolvConfTarget = deps.resolvConfTarget ?? (guest ? '/etc/resolv.conf' : `${config.stateRoot}/etc-resolv.conf`);
  // Listening starts now, before the host can hot-plug anything for this pod. Off the guest the
  // host's devices are not ours to wait for, nor its kernel ours to load drivers into.
  // Drivers by modalias (uevents) and by name (vfio_pci) share one record of the files tried.
  const modules = { libc, log, tried: new Set<string>() };
  const uevents = guest && !deps.devices ? new UeventListener({ libc, log, onModalias: moduleAutoloader(modules) }).open() : undefined;
  const devices =
    deps.devices ??
    (uevents && new HotplugDevices({ uevents, sysfs: deps.sysfs ?? '/sys', timeoutMs: config.hotplugTimeoutMs, loadModules: moduleLoader(modules) }));
  const storages = new StorageRegistry({
    devices,
    libc,
    log,
    ensureFilesystem: deps.ensureFilesystem ?? (guest ? filesystemEnsurer({ libc, log }) : () => undefined),
    watchIntervalMs: deps.watchIntervalMs,
    stateRoot: config.stateRoot,
  });
  const sandbox = new Sandbox({ libc, stateRoot: config.stateRoot, resolvConfTarget, storages });
  const containers = new ContainerManager({
    libc,
    log,
    stateRoot: config.stateRoot,
    pipeSize: config.containerPipeSize,
    cgroups,
    createIO: deps.createIO ?? createProcessIO,
    sandbox,
    pool,
    warmExec,
    devices,
    seccomp,
  });
  handlers.push(
    containerHandlers(containers, sandbox, deps.onSandboxDestroyed),
    (deps.ioHandlers ?? ioHandlers)((c, e) => containers.io(c, e)),
    staleShareMountHandlers({ sharedDir: sharedContainersDir(config.stateRoot), log }),
    diagnosticDataHandlers({ libc, sharedDir: sharedContainersDir(config.stateRoot), specOf: (id) => containers.get(id).spec }),
    storageHandlers(storages),
    onlineCpuMemHandlers({
      sysfs: deps.sysfs ?? (guest ? '/sys' : undefined),
      log,
      hotplugTimeoutMs: config.hotplugTimeoutMs,
      containerCgroups: () =>
        containers.ids().map((id) => {
          const c = containers.get(id);
          return { id, cgroup: c.cgroup, cpus: c.spec.Linux?.Resources?.CPU?.Cpus || undefined };
        }),
    }),
  );
  return {
    handlers,
    seccomp,
    storageDrivers: () => storages.drivers,
    devices,
    deviceTypes: () => (devices ? [...blockKinds, ...vfioKinds] : []),
    start: () => pool.start(),
    async shutdown() {
      await pool.close();
      await warmExec.close();
      await containers.removeAll();
      if (sandbox.exists) sandbox.destroy();
      storages.close();
      uevents?.close();
    },
  };
}

export interface AgentDomains {
  handlers: AgentHandlers[];
  /** Removes every container and the sandbox, stops helpers and the orphan reaper (agent shutdown). */
  shutdown(): Promise<void>;
}

/** Builds and starts the domains; their handlers plus GetGuestDetails make up the agent service. */
export async function startDomains(config: AgentConfig, log: Logger, deps: DomainDeps): Promise<AgentDomains> {
  const domains = buildDomains(config, log, deps);
  let reaper: OrphanReaper | undefined;
  if (domains.handlers.length > 0) {
    // Before any container request: the pid-namespace switch must never be the threadpool's first use.
    const l = deps.libc ?? realLibc();
    await preparePidNamespaces(l);
    // Container processes re-parent to us when their parent dies: reap them, never child_process's own
    // (every child the agent starts goes through process/spawn.ts, which marks it owned).
    l.prctl(PR_SET_CHILD_SUBREAPER, 1);
    reaper = new OrphanReaper({ libc: l, onReaped: (c) => log.debug({ pid: c.pid, code: c.code }, 'reaped orphan') });
    reaper.start();
  }
  // The network needs no cgroup driver: it is served even when the container domain is not.
  const network = networkHandlers(deps.libc ?? realLibc());
  // Off the guest the host's clock, RNG and memory stay alone.
  const guest = onTheGuest(config);
  const handlers = [
    ...domains.handlers,
    network.handlers,
    // Nor does CopyFile: it only writes files, and the host sends them before any container exists.
    copyFileHandlers({ libc: deps.libc ?? realLibc(), sharedDir: sharedContainersDir(config.stateRoot) }),
    guestDateTimeHandlers({ libc: deps.libc ?? realLibc(), log, guest }),
    randomHandlers({ libc: deps.libc ?? realLibc(), log, guest }),
    swapHandlers({ libc: deps.libc ?? realLibc(), log, devices: domains.devices }),
    resizeVolumeHandlers({ libc: deps.libc ?? realLibc(), log, guest }),
    memProbeHandlers({ sysfs: deps.sysfs ?? (guest ? '/sys' : undefined), log }),
    metricsHandlers({ proc: deps.proc ?? '/proc', log }),
    guestDetailsHandlers({
      sysfs: deps.sysfs ?? '/sys',
      isInit: process.pid === 1,
      storageHandlers: () => domains.storageDrivers(),
      deviceHandlers: () => domains.deviceTypes(),
      supportsSeccomp: () => domains.seccomp().ok,
    }),
  ];
  // The host can already reach us (this runs on its first call), so helpers start ahead of need now.
  domains.start();
  return {
    handlers,
    async shutdown() {
      await domains.shutdown();
      reaper?.stop();
      network.close();
    },
  };
}
