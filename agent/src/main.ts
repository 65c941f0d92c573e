import fs from 'node:fs';
import type { Duplex } from 'node:stream';
import { defaults, loadConfig, usage, type AgentConfig } from './config/config.js';
import { ConfigError } from './config/errors.js';
import { guestDetailsHandlers } from './guest/details.js';
import { healthHandlers } from './health/handlers.js';
import { createLogger, type Logger } from './log/logger.js';
import { AgentRpcService } from './rpc/service.js';
import { chooseServerAddress, probeChannels } from './transport/channel.js';
import { createListener } from './transport/create-listener.js';
import type { GrpcTransport } from './transport/grpc-transport.js';
import type { Listener } from './transport/listener.js';
import { TtrpcTransport } from './transport/ttrpc-transport.js';
import { routeConnection } from './transport/wire-router.js';
import { agentVersion } from './version.js';
import type { CgroupManager } from './cgroups/cgroup.js';
import { containerHandlers } from './container/handlers.js';
import { ContainerManager } from './container/manager.js';
import { libc as realLibc } from './linux/index.js';
import type { Libc } from './linux/libc.js';
import { preparePidNamespaces } from './namespace/pid-namespace.js';
import type { CreateProcessIO, ProcessIO } from './process/io-contract.js';
import { HelperPool } from './process/helper-pool.js';
import { WarmExecHelpers } from './process/warm-exec-helpers.js';
import { OrphanReaper } from './process/reaper.js';
import { trackAllChildProcesses } from './process/track-children.js';
import { PR_SET_CHILD_SUBREAPER } from './linux/libc.js';
import type { AgentHandlers } from './rpc/service.js';
import { Sandbox } from './sandbox/sandbox.js';
import { storageDrivers } from './storage/storages.js';
import { cgroupVersionFromConfig, createCgroupManager } from './cgroups/detect.js';
import { createProcessIO } from './io/process-io.js';
import { ioHandlers } from './io/handlers.js';

// When this module's imports had all been evaluated: logged with "agent listening".
const modulesLoadedMs = performance.now();

export interface RunningAgent {
  config: AgentConfig;
  log: Logger;
  listener: Listener;
  stop(): Promise<void>;
}

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
  /** Warm exec helpers (default: capped at DEFAULT_WARM_EXEC_MAX); tests pass their own to read its stats. */
  warmExec?: WarmExecHelpers;
}

/**
 * An idle node helper holds ~6 MB of RssAnon. Four bounds that to ~25 MB while covering the usual pod
 * (one or a few containers with exec probes); containers beyond it exec with a fresh helper.
 */
export const DEFAULT_WARM_EXEC_MAX = 4;

interface Domains {
  handlers: AgentHandlers[];
  /** Starts background work (the helper pool) once pid namespaces are prepared. */
  start(): void;
  /** Removes every container and the sandbox (agent shutdown). */
  shutdown(): Promise<void>;
}

function buildDomains(config: AgentConfig, log: Logger, deps: DomainDeps): Domains {
  const handlers: AgentHandlers[] = [];
  let cgroups = deps.cgroups;
  try {
    cgroups ??= createCgroupManager({ forceVersion: cgroupVersionFromConfig(config.unifiedCgroupHierarchy) });
  } catch (err) {
    // Without a cgroup driver the container RPCs stay UNIMPLEMENTED rather than half work.
    log.error({ err: (err as Error).message }, 'no cgroup driver: container RPCs are unavailable');
    return { handlers, start: () => undefined, shutdown: async () => undefined };
  }
  const libc = deps.libc ?? realLibc();
  const pool = new HelperPool(libc, deps.helperPoolSize ?? 1);
  const warmExec = deps.warmExec ?? new WarmExecHelpers(libc, DEFAULT_WARM_EXEC_MAX);
  // A state root other than the guest's own means a test or development run on some host: the pod's
  // DNS file must then not be bind-mounted over that host's /etc/resolv.conf.
  const resolvConfTarget = deps.resolvConfTarget ?? (config.stateRoot === defaults.stateRoot ? '/etc/resolv.conf' : `${config.stateRoot}/etc-resolv.conf`);
  const sandbox = new Sandbox({ libc, stateRoot: config.stateRoot, resolvConfTarget });
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
  });
  handlers.push(containerHandlers(containers, sandbox, deps.onSandboxDestroyed), (deps.ioHandlers ?? ioHandlers)((c, e) => containers.io(c, e)));
  return {
    handlers,
    start: () => pool.start(),
    async shutdown() {
      await pool.close();
      await warmExec.close();
      await containers.removeAll();
      if (sandbox.exists) sandbox.destroy();
    },
  };
}

function readCmdline(): string {
  try {
    return fs.readFileSync('/proc/cmdline', 'utf8');
  } catch {
    return '';
  }
}

/** Builds the one service implementation from every domain's handlers. */
function buildService(log: Logger, domains: Domains): AgentRpcService {
  const agent = [
    ...domains.handlers,
    guestDetailsHandlers({
      sysfs: '/sys',
      isInit: process.pid === 1,
      storageHandlers: () => (domains.handlers.length > 0 ? storageDrivers : []),
      deviceHandlers: () => [],
      supportsSeccomp: false,
    }),
  ];
  return new AgentRpcService(log, agent, healthHandlers());
}

export async function startAgent(config: AgentConfig, log: Logger, deps: DomainDeps = {}): Promise<RunningAgent> {
  const domains = buildDomains(config, log, deps);
  let reaper: OrphanReaper | undefined;
  if (domains.handlers.length > 0) {
    // Before any request: the pid-namespace switch must never be the threadpool's first use.
    await preparePidNamespaces();
    // Container processes re-parent to us when their parent dies: reap them, never child_process's own.
    trackAllChildProcesses();
    const l = deps.libc ?? realLibc();
    l.prctl(PR_SET_CHILD_SUBREAPER, 1);
    reaper = new OrphanReaper({ libc: l, onReaped: (c) => log.debug({ pid: c.pid, code: c.code }, 'reaped orphan') });
    reaper.start();
  }
  const service = buildService(log, domains);
  // kata 2.x/3.x hosts speak only ttrpc, so grpc-js (~5 MB of heap and a noticeable share of
  // start-up) is loaded when the first gRPC connection arrives, not before.
  let grpc: GrpcTransport | undefined;
  const grpcTransport = (): GrpcTransport => {
    if (!grpc) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { GrpcTransport: Transport } = require('./transport/grpc-transport.js') as typeof import('./transport/grpc-transport.js');
      grpc = new Transport(service, log);
    }
    return grpc;
  };
  const ttrpc = new TtrpcTransport(service, log);
  // kata 1.x guests may offer only the virtio-serial port: pick the channel the way its agent did.
  const address = chooseServerAddress(config, () => probeChannels());
  const listener = createListener(
    address,
    (err) => log.warn({ err: err.message }, 'listener error'),
    (msg, fields) => log.info(fields, msg),
  );
  // One listener for both generations: each connection's first bytes pick gRPC (1.x) or ttrpc (3.x).
  // On virtio-serial the listener itself runs yamux, so every yamux stream is routed the same way.
  const routes = { grpc: (c: Duplex) => grpcTransport().serve(c), ttrpc: (c: Duplex) => ttrpc.serve(c) };
  const routeOpts = {
    onReject: (reason: string) => log.warn({ reason }, 'connection closed: unknown wire'),
    onRoute: (wire: string) => log.debug({ wire }, 'connection routed'),
  };
  await listener.listen((conn) => routeConnection(conn, routes, routeOpts));
  // Helpers are started ahead of need only once the host can reach us: a node helper starting up
  // competes for the guest's few CPUs, and the host's first calls (Check, CreateSandbox) need none.
  domains.start();
  // code_cache says whether V8 started from the bytecode cached in the image (rootfs-builder/loader.js).
  // compiled_ms, modules_ms and uptime_ms (since the process started) split a slow start into node, loading the
  // bundle and the agent's own steps.
  log.info(
    {
      address: listener.address,
      version: agentVersion,
      code_cache: process.env.KATA_AGENT_CODE_CACHE,
      compiled_ms: Number(process.env.KATA_AGENT_COMPILED_MS) || undefined,
      modules_ms: Math.round(modulesLoadedMs),
      uptime_ms: Math.round(performance.now()),
    },
    'agent listening',
  );
  return {
    config,
    log,
    listener,
    async stop() {
      await listener.close();
      grpc?.close();
      ttrpc.close();
      await domains.shutdown();
      reaper?.stop();
    },
  };
}

/** What init (PID 1) changes about the agent's start and end. */
export interface MainHooks {
  /** Runs once config and logger exist, before the agent listens (boot duties). */
  beforeStart?: (config: AgentConfig, log: Logger) => Promise<void>;
  /** Replaces process.exit: PID 1 must power off instead of exiting. */
  exit?: (code: number) => void;
  /** kata 3.x in init mode: the VM has no work left once its sandbox is destroyed, so it powers off. */
  stopAfterDestroySandbox?: boolean;
}

/** Entry point of bin/kata-agent in standalone mode, and of init after its boot duties. */
export async function main(argv: string[], hooks: MainHooks = {}): Promise<void> {
  const exit = hooks.exit ?? ((code: number) => process.exit(code));
  const fail = (message: string) => {
    process.stderr.write(`kata-agent: ${message}\n`);
    exit(2);
  };
  let loaded;
  try {
    loaded = loadConfig({ argv, env: process.env, cmdline: readCmdline(), readFile: (p) => fs.readFileSync(p, 'utf8') });
  } catch (err) {
    if (err instanceof ConfigError) return fail(err.message);
    throw err;
  }
  if (loaded.action === 'help') {
    process.stdout.write(usage + '\n');
    return;
  }
  if (loaded.action === 'version') {
    process.stdout.write(`kata-agent version ${agentVersion}\n`);
    return;
  }
  const log = createLogger(loaded.config.logLevel);
  for (const w of loaded.warnings) log.warn(w);

  // The agent must outlive a bug in one call: log it and keep serving the others.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  if (hooks.beforeStart) await hooks.beforeStart(loaded.config, log);
  let agent: RunningAgent;
  // Answer DestroySandbox first, then stop: the reply is already queued on the host's stream when
  // this fires, and stop() ends every connection.
  const afterDestroy = hooks.stopAfterDestroySandbox ? () => setTimeout(() => shutdown('DestroySandbox'), 100) : undefined;
  try {
    agent = await startAgent(loaded.config, log, { onSandboxDestroyed: afterDestroy });
  } catch (err) {
    if (err instanceof ConfigError) return fail(err.message);
    throw err;
  }
  function shutdown(reason: string) {
    log.info({ reason }, 'shutting down');
    agent.stop().finally(() => exit(0));
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
