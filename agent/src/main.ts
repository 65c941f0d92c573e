import fs from 'node:fs';
import type { Duplex } from 'node:stream';
import { loadConfig, usage, type AgentConfig } from './config/config.js';
import { ConfigError } from './config/errors.js';
import { guestDetailsHandlers } from './guest/details.js';
import { healthHandlers } from './health/handlers.js';
import { createLogger, type Logger } from './log/logger.js';
import { AgentRpcService } from './rpc/service.js';
import { chooseServerAddress, probeChannels } from './transport/channel.js';
import { createListener } from './transport/create-listener.js';
import { GrpcTransport } from './transport/grpc-transport.js';
import type { Listener } from './transport/listener.js';
import { TtrpcTransport } from './transport/ttrpc-transport.js';
import { routeConnection } from './transport/wire-router.js';
import { agentVersion } from './version.js';

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

/** Builds the one service implementation from every domain's handlers. */
export function buildService(config: AgentConfig, log: Logger): AgentRpcService {
  const agent = [
    guestDetailsHandlers({
      sysfs: '/sys',
      isInit: process.pid === 1,
      storageHandlers: () => [],
      deviceHandlers: () => [],
      supportsSeccomp: false,
    }),
  ];
  void config;
  return new AgentRpcService(log, agent, healthHandlers());
}

export async function startAgent(config: AgentConfig, log: Logger): Promise<RunningAgent> {
  const service = buildService(config, log);
  const grpc = new GrpcTransport(service, log);
  const ttrpc = new TtrpcTransport(service, log);
  // kata 1.x guests may offer only the virtio-serial port: pick the channel the way its agent did.
  const address = chooseServerAddress(config, () => probeChannels());
  const listener = createListener(address, (err) => log.warn({ err: err.message }, 'listener error'));
  // One listener for both generations: each connection's first bytes pick gRPC (1.x) or ttrpc (3.x).
  // On virtio-serial the listener itself runs yamux, so every yamux stream is routed the same way.
  const routes = { grpc: (c: Duplex) => grpc.serve(c), ttrpc: (c: Duplex) => ttrpc.serve(c) };
  const routeOpts = {
    onReject: (reason: string) => log.warn({ reason }, 'connection closed: unknown wire'),
    onRoute: (wire: string) => log.debug({ wire }, 'connection routed'),
  };
  await listener.listen((conn) => routeConnection(conn, routes, routeOpts));
  log.info({ address: listener.address, version: agentVersion }, 'agent listening');
  return {
    config,
    log,
    listener,
    async stop() {
      await listener.close();
      grpc.close();
      ttrpc.close();
    },
  };
}

function fail(message: string): never {
  process.stderr.write(`kata-agent: ${message}\n`);
  process.exit(2);
}

/** Entry point of bin/kata-agent in standalone mode. */
export async function main(argv: string[]): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig({ argv, env: process.env, cmdline: readCmdline(), readFile: (p) => fs.readFileSync(p, 'utf8') });
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
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

  let agent: RunningAgent;
  try {
    agent = await startAgent(loaded.config, log);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    agent.stop().finally(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
