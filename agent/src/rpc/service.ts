import type { DescService, Message } from '@bufbuild/protobuf';
import type { AgentService } from '../../../protos/gen/agent_pb.js';
import type { Health } from '../../../protos/gen/health_pb.js';
import { healthMethods } from '../health/wire.js';
import type { Logger } from '../log/logger.js';
import type { Delivery } from './delivery.js';
import type { Dialect } from './dialect.js';
import type { CallContext, Handlers, LegacyFields } from './handlers.js';
import { agentProtos, healthProtos } from './lazy-protos.js';
import type { MethodCodec } from './method-codec.js';
import { Code, RpcError, toRpcError, unimplemented } from './status.js';

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

export interface MethodEntry {
  readonly service: string;
  readonly name: string;
  readonly codec: MethodCodec;
  readonly implemented: boolean;
  readonly call: (req: Message, ctx: CallContext) => Promise<unknown> | unknown;
}

export interface DispatchOptions {
  dialect: Dialect;
  signal: AbortSignal;
  /** Settled by the transport once it knows whether the answer was written; absent = always delivered. */
  delivery?: Delivery;
}

/**
 * The one implementation of grpc.AgentService and grpc.Health that every transport serves. It owns
 * decoding (so malformed bytes become INVALID_ARGUMENT whatever the wire), the UNIMPLEMENTED answer
 * for RPCs no domain handles yet, and the one log line per call.
 */
export class AgentRpcService {
  private readonly methods = new Map<string, MethodEntry>();
  private pendingAgent?: () => Promise<AgentHandlers[]>;
  private loadingAgent?: Promise<void>;

  /**
   * `agent` may be a function: the agent service's descriptors and domains are then loaded on its
   * first call, so an agent that has only been health-checked has paid for neither (they are most of
   * its start-up under emulation and of its idle memory: bench/boot.bench.ts, bench/memory.bench.ts).
   */
  constructor(
    private readonly log: Logger,
    agent: AgentHandlersSource,
    health: HealthHandlers,
  ) {
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

  /** Decodes, runs and encodes one call. Throws RpcError only; never anything else. */
  async dispatch(entry: MethodEntry, payload: Uint8Array, opts: DispatchOptions): Promise<Uint8Array> {
    const started = process.hrtime.bigint();
    const legacy: LegacyFields = {};
    let req: Message | undefined;
    let code = Code.OK;
    try {
      req = entry.codec.decode(payload, opts.dialect, legacy);
      const onUndelivered = (fn: () => void) => opts.delivery?.onUndelivered(fn);
      // Without a transport's word (in-process callers), the answer is out once this call has returned.
      const afterAnswer = (fn: () => void) => (opts.delivery ? opts.delivery.onSettled(fn) : setImmediate(fn));
      const ctx: CallContext = { method: entry.name, dialect: opts.dialect, signal: opts.signal, log: this.log, legacy, onUndelivered, afterAnswer };
      const init = await entry.call(req, ctx);
      return entry.codec.encode(init);
    } catch (err) {
      const rpcErr = toRpcError(err);
      code = rpcErr.code;
      if (!rpcErr.expected && (code === Code.INTERNAL || code === Code.UNKNOWN)) this.log.error({ method: entry.name, err }, 'rpc failed');
      throw rpcErr;
    } finally {
      if (this.log.isLevelEnabled('debug')) {
        const r = req as { containerId?: string; execId?: string } | undefined;
        this.log.debug(
          {
            method: entry.name,
            container_id: r?.containerId || undefined,
            exec_id: r?.execId || undefined,
            duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
            code: Code[code],
            wire: opts.dialect.name,
          },
          'rpc',
        );
      }
    }
  }
}

/** The agent service's methods coded through protobuf-es descriptors (loaded with them). */
function agentMethodCodecs(): readonly MethodCodec[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the protobuf-es descriptors load on the first agent call
  const { schemaCodecs } = require('./schema-codec.js') as typeof import('./schema-codec.js');
  return schemaCodecs(agentProtos().AgentService);
}

export type { RpcError };
