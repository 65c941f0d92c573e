import fs from 'node:fs';
import type { Duplex } from 'node:stream';
import { loadConfig, usage, type AgentConfig } from './config/config.js';
import { ConfigError } from './config/errors.js';
import { healthHandlers } from './health/handlers.js';
import { createLogger, type Logger } from './log/logger.js';
import { AgentRpcService, defaultInterceptors } from './rpc/service.js';
import { chooseServerAddress, probeChannels } from './transport/channel.js';
import { createListener, type Listener } from './transport/listener.js';
import type { GrpcTransport } from './transport/grpc-transport.js';
import { TtrpcTransport } from './transport/ttrpc-transport.js';
import { routeConnection } from './transport/wire-router.js';
import { agentVersion } from './version.js';
import type { AgentDomains, DomainDeps } from './domains.js';
import { uptimeMs } from './log/uptime.js';
import { tuneHeap } from './memory/heap-tuning.js';
import { idleReclaimer } from './memory/idle-reclaim.js';
import { libc as realLibc } from './linux/index.js';

export type { DomainDeps } from './domains.js';

// When this module's imports had all been evaluated: logged with "agent listening".
const modulesLoadedMs = uptimeMs();

export interface RunningAgent {
  config: AgentConfig;
  log: Logger;
  listener: Listener;
  stop(): Promise<void>;
}

function readCmdline(): string {
  try {
    return fs.readFileSync('/proc/cmdline', 'utf8');
  } catch {
    return '';
  }
}

export async function startAgent(config: AgentConfig, log: Logger, deps: DomainDeps = {}): Promise<RunningAgent> {
  // Built on the first AgentService call; AgentRpcService makes that one build at a time and tries
  // again on the next call after a failed one. Kept here for stop().
  let domains: Promise<AgentDomains> | undefined;
  const buildAgentService = async () => {
    const t0 = uptimeMs();
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- built on the first AgentService call
    const { startDomains } = require('./domains.js') as typeof import('./domains.js');
    domains = startDomains(config, log, deps);
    const { handlers } = await domains;
    log.info({ ms: Math.round(uptimeMs() - t0) }, 'agent service ready');
    return handlers;
  };
  // libc (koffi) loads on the first reclaim, after the first quiet second, not at start-up.
  const reclaimer = idleReclaimer(log, () => (deps.libc ?? realLibc()).mallocTrim(0));
  const interceptors = [...defaultInterceptors(log), ...(reclaimer ? [reclaimer.interceptor] : [])];
  const service = new AgentRpcService(log, buildAgentService, healthHandlers(), { interceptors });
  // kata 2.x/3.x hosts speak only ttrpc, so grpc-js (~5 MB of heap and a noticeable share of
  // start-up) is loaded when the first gRPC connection arrives, not before.
  // KATA_AGENT_GRPC_SERVER=own serves it on our own HTTP/2 instead (transport/grpc-h2-server.ts;
  // less memory, no reflection yet): opt-in while it is proven against every host.
  let grpc: Pick<GrpcTransport, 'serve' | 'close'> | undefined;
  const grpcTransport = (): Pick<GrpcTransport, 'serve' | 'close'> => {
    if (!grpc) {
      if (process.env.KATA_AGENT_GRPC_SERVER === 'own') {
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- loads on the first gRPC connection
        const { OwnGrpcTransport } = require('./transport/grpc-h2-server.js') as typeof import('./transport/grpc-h2-server.js');
        grpc = new OwnGrpcTransport(service, log);
      } else {
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- grpc-js loads on the first gRPC connection
        const { GrpcTransport: Transport } = require('./transport/grpc-transport.js') as typeof import('./transport/grpc-transport.js');
        grpc = new Transport(service, log);
      }
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
  // code_cache says whether V8 started from the bytecode cached in the image (rootfs-builder/loader.js).
  // compiled_ms, modules_ms and uptime_ms (since the process started) split a slow start into node,
  // loading the bundle and the agent's own steps.
  log.info(
    {
      address: listener.address,
      version: agentVersion,
      code_cache: process.env.KATA_AGENT_CODE_CACHE,
      compiled_ms: Number(process.env.KATA_AGENT_COMPILED_MS) || undefined,
      modules_ms: Math.round(modulesLoadedMs),
      uptime_ms: Math.round(uptimeMs()),
    },
    'agent listening',
  );
  tuneHeap(log);
  return {
    config,
    log,
    listener,
    async stop() {
      reclaimer?.stop();
      await listener.close();
      grpc?.close();
      ttrpc.close();
      if (domains) await (await domains.catch(() => undefined))?.shutdown();
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
  // Fires once the DestroySandbox answer has been written to the host's connection. On virtio-serial
  // that write lands in the yamux session, which still has to pass it to the port: the short grace
  // lets it, before stop() ends every connection.
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
