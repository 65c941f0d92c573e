import { create, toBinary, type DescMessage, type DescMethod, type DescService, type Message } from '@bufbuild/protobuf';
import { AgentService } from '../../../protos/gen/agent_pb.js';
import { Health } from '../../../protos/gen/health_pb.js';
import type { Logger } from '../log/logger.js';
import type { Dialect } from './dialect.js';
import type { CallContext, Handlers, LegacyFields } from './handlers.js';
import { Code, RpcError, toRpcError, unimplemented } from './status.js';

export const services: readonly DescService[] = [AgentService, Health];

export type AgentHandlers = Handlers<typeof AgentService>;
export type HealthHandlers = Handlers<typeof Health>;

export interface MethodEntry {
  readonly service: string;
  readonly name: string;
  readonly input: DescMessage;
  readonly output: DescMessage;
  readonly implemented: boolean;
  readonly call: (req: Message, ctx: CallContext) => Promise<unknown> | unknown;
}

export interface DispatchOptions {
  dialect: Dialect;
  signal: AbortSignal;
}

/**
 * The one implementation of grpc.AgentService and grpc.Health that every transport serves. It owns
 * decoding (so malformed bytes become INVALID_ARGUMENT whatever the wire), the UNIMPLEMENTED answer
 * for RPCs no domain handles yet, and the one log line per call.
 */
export class AgentRpcService {
  private readonly methods = new Map<string, MethodEntry>();

  constructor(
    private readonly log: Logger,
    agent: AgentHandlers[],
    health: HealthHandlers,
  ) {
    this.register(AgentService, Object.assign({}, ...agent));
    this.register(Health, health);
  }

  private register(service: DescService, handlers: Record<string, unknown>): void {
    for (const m of service.methods) {
      const h = handlers[m.localName] as MethodEntry['call'] | undefined;
      this.methods.set(`${service.typeName}/${m.name}`, {
        service: service.typeName,
        name: m.name,
        input: m.input,
        output: m.output,
        implemented: h !== undefined,
        call: h ?? (() => {
          throw unimplemented(m.name);
        }),
      });
    }
  }

  /** "grpc.AgentService", "CreateContainer" → the entry, or undefined. */
  lookup(service: string, method: string): MethodEntry | undefined {
    return this.methods.get(`${service}/${method}`);
  }

  list(): MethodEntry[] {
    return [...this.methods.values()];
  }

  /** Decodes, runs and encodes one call. Throws RpcError only; never anything else. */
  async dispatch(entry: MethodEntry, payload: Uint8Array, opts: DispatchOptions): Promise<Uint8Array> {
    const started = process.hrtime.bigint();
    const legacy: LegacyFields = {};
    let req: Message | undefined;
    let code = Code.OK;
    try {
      req = opts.dialect.decode(entry.input, payload, legacy);
      const ctx: CallContext = { method: entry.name, dialect: opts.dialect, signal: opts.signal, log: this.log, legacy };
      const init = await entry.call(req, ctx);
      return toBinary(entry.output, create(entry.output, init as never));
    } catch (err) {
      const rpcErr = toRpcError(err);
      code = rpcErr.code;
      if (code === Code.INTERNAL || code === Code.UNKNOWN) this.log.error({ method: entry.name, err }, 'rpc failed');
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

export type { DescMethod, RpcError };
