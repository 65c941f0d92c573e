import type { DescService } from '@bufbuild/protobuf';
import type { AgentService } from '../../../protos/gen/agent_pb.js';
import type { Health } from '../../../protos/gen/health_pb.js';
import { healthMethods } from '../health/wire.js';
import type { Logger } from '../log/logger.js';
import { runCall, type CallEnv, type DispatchOptions, type Interceptor, type MethodEntry } from './call.js';
import type { Handlers } from './handlers.js';
import { agentProtos, healthProtos } from './lazy-protos.js';
import { logCalls, logUndecodable } from './log-interceptor.js';
import type { MethodCodec } from './method-codec.js';
import { Code, RpcError, toRpcError, unimplemented } from './status.js';

export type { DispatchOptions, MethodEntry } from './call.js';

export const agentServiceName = 'grpc.AgentService';
export const healthServiceName = 'grpc.Health';

/** Both services' descriptors (for gRPC, reflection and agent-ctl), loaded by this call if need be. */
export function serviceDescs(): readonly DescService[] {
  return [agentProtos().AgentService, healthProtos().Health];
}

export type AgentHandlers = Handlers<typeof AgentService>;
export type HealthHandlers = Handlers<typeof Health>;

/** The agent service's handlers, or how to build them on its first call. */
export type AgentHandlersSource = AgentHandlers[] | (() => Promise<AgentHandlers[]>);

export interface ServiceOptions {
  /**
   * What every call passes through between decoding and its handler, first outermost (see
   * Interceptor). Default: defaultInterceptors(log). A gate that may refuse calls goes after the
   * logging one, so refused calls are logged like any other.
   */
  interceptors?: readonly Interceptor[];
}

/** The interceptors every agent runs: the per-call log. */
export const defaultInterceptors = (log: Logger): Interceptor[] => [logCalls(log)];

/**
 * The one implementation of grpc.AgentService and grpc.Health that every transport serves, through
 * one path (call): it owns resolving the method (UNIMPLEMENTED for one it does not know or no domain
 * handles yet), decoding (so malformed bytes become INVALID_ARGUMENT whatever the wire), the
 * interceptors (the one log line per call among them) and mapping every failure to a status.
 */
export class AgentRpcService {
  private readonly methods = new Map<string, MethodEntry>();
  private pendingAgent?: () => Promise<AgentHandlers[]>;
  private loadingAgent?: Promise<void>;
  private readonly env: CallEnv;

  /**
   * `agent` may be a function: the agent service's descriptors and domains are then loaded on its
   * first call, so an agent that has only been health-checked has paid for neither (they are most of
   * its start-up under emulation and of its idle memory: bench/boot.bench.ts, bench/memory.bench.ts).
   */
  constructor(log: Logger, agent: AgentHandlersSource, health: HealthHandlers, opts: ServiceOptions = {}) {
    this.env = { log, interceptors: opts.interceptors ?? defaultInterceptors(log), onUndecodable: logUndecodable(log) };
    this.register(healthServiceName, healthMethods, health);
    if (typeof agent === 'function') this.pendingAgent = agent;
    else this.register(agentServiceName, agentMethodCodecs(), Object.assign({}, ...agent));
  }

  private register(service: string, codecs: readonly MethodCodec[], handlers: Record<string, unknown>): void {
    for (const m of codecs) {
      const h = handlers[m.localName] as MethodEntry['call'] | undefined;
      this.methods.set(`${service}/${m.name}`, {
        service,
        name: m.name,
        codec: m,
        implemented: h !== undefined,
        call:
          h ??
          (() => {
            throw unimplemented(m.name);
          }),
      });
    }
  }

  /**
   * The entry for a call, building the agent service first if this is its first call. Concurrent
   * first calls share one build; if the build fails each waiting call fails with it, and the next
   * call tries again.
   */
  async resolve(service: string, method: string): Promise<MethodEntry | undefined> {
    if (service === agentServiceName && this.pendingAgent) {
      this.loadingAgent ??= this.loadAgent(this.pendingAgent).finally(() => (this.loadingAgent = undefined));
      try {
        await this.loadingAgent;
      } catch (err) {
        throw new RpcError(Code.INTERNAL, `agent service failed to start: ${(err as Error).message}`);
      }
    }
    return this.lookup(service, method);
  }

  private async loadAgent(build: () => Promise<AgentHandlers[]>): Promise<void> {
    const handlers = await build();
    this.register(agentServiceName, agentMethodCodecs(), Object.assign({}, ...handlers));
    this.pendingAgent = undefined;
  }

  /** "grpc.AgentService", "CreateContainer" → the entry, or undefined (also while not built yet). */
  lookup(service: string, method: string): MethodEntry | undefined {
    return this.methods.get(`${service}/${method}`);
  }

  /**
   * Serves one call as a transport received it: "grpc.AgentService", "CreateContainer" and the
   * request's bytes. Resolves with the answer's bytes; rejects with an RpcError only, never anything
   * else, so a transport just frames what it gets.
   */
  async call(service: string, method: string, payload: Uint8Array, opts: DispatchOptions): Promise<Uint8Array> {
    let entry: MethodEntry | undefined;
    try {
      entry = await this.resolve(service, method);
    } catch (err) {
      throw toRpcError(err);
    }
    if (!entry) throw new RpcError(Code.UNIMPLEMENTED, `unknown method /${service}/${method}`);
    return runCall(this.env, entry, payload, opts);
  }

  /** The part of call() after resolving, for in-process callers that hold an entry already. */
  dispatch(entry: MethodEntry, payload: Uint8Array, opts: DispatchOptions): Promise<Uint8Array> {
    return runCall(this.env, entry, payload, opts);
  }
}

/** The agent service's methods coded through protobuf-es descriptors (loaded with them). */
function agentMethodCodecs(): readonly MethodCodec[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the protobuf-es descriptors load on the first agent call
  const { schemaCodecs } = require('./schema-codec.js') as typeof import('./schema-codec.js');
  return schemaCodecs(agentProtos().AgentService);
}

export type { RpcError };
