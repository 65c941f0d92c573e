import type { Message } from '@bufbuild/protobuf';
import type { Logger } from '../log/logger.js';
import type { Delivery } from './delivery.js';
import type { Dialect } from './dialect.js';
import type { CallContext, LegacyFields } from './handlers.js';
import type { MethodCodec } from './method-codec.js';
import { toRpcError } from './status.js';

/** One RPC as resolved from the service's registry. */
export interface MethodEntry {
  readonly service: string;
  readonly name: string;
  readonly codec: MethodCodec;
  readonly implemented: boolean;
  readonly call: (req: Message, ctx: CallContext) => Promise<unknown> | unknown;
}

/** What the transport that carried a call tells the call path about it. */
export interface DispatchOptions {
  dialect: Dialect;
  signal: AbortSignal;
  /** Settled by the transport once it knows whether the answer was written; absent = always delivered. */
  delivery?: Delivery;
}

/** What an interceptor is told about a call: it is already resolved and its request decoded. */
export interface CallInfo {
  readonly service: string;
  /** "CreateContainer", as on the wire. */
  readonly method: string;
  /** "/grpc.AgentService/CreateContainer", as a policy names it. */
  readonly fullMethod: string;
  readonly dialect: Dialect;
  readonly request: Message;
  /** What the handler will be given. */
  readonly ctx: CallContext;
}

/** The rest of the chain: the later interceptors, then the handler. Resolves with the encoded answer. */
export type Next = () => Promise<Uint8Array>;

/**
 * A step every call passes through between decoding and its handler. It may look at the call,
 * refuse it by throwing (an RpcError or a domain error; either is mapped like a handler's), or
 * call `next` once and see the outcome. The list's first interceptor is the outermost, so it sees
 * what every later one did.
 */
export type Interceptor = (call: CallInfo, next: Next) => Promise<Uint8Array>;

/** Runs `call` through `interceptors` in list order, then `handler`. */
export function runInterceptors(interceptors: readonly Interceptor[], call: CallInfo, handler: Next): Promise<Uint8Array> {
  const step = async (i: number): Promise<Uint8Array> => (i < interceptors.length ? interceptors[i](call, () => step(i + 1)) : handler());
  return step(0);
}

export interface CallEnv {
  readonly log: Logger;
  readonly interceptors: readonly Interceptor[];
  /**
   * Told of a call refused before the interceptors ran because its bytes did not decode (`err` as
   * thrown), so that call is still logged though no interceptor saw it.
   */
  readonly onUndecodable?: (method: string, dialect: Dialect, err: unknown, started: bigint) => void;
}

/**
 * Decodes, intercepts, handles and encodes one resolved call. Rejects with an RpcError only:
 * whatever a decoder, interceptor or handler threw is mapped here (status.ts says how).
 */
export async function runCall(env: CallEnv, entry: MethodEntry, payload: Uint8Array, opts: DispatchOptions): Promise<Uint8Array> {
  const started = process.hrtime.bigint();
  const legacy: LegacyFields = {};
  let request: Message;
  try {
    request = entry.codec.decode(payload, opts.dialect, legacy);
  } catch (err) {
    env.onUndecodable?.(entry.name, opts.dialect, err, started);
    throw toRpcError(err);
  }
  const onUndelivered = (fn: () => void) => opts.delivery?.onUndelivered(fn);
  // Without a transport's word (in-process callers), the answer is out once this call has returned.
  const afterAnswer = (fn: () => void) => (opts.delivery ? opts.delivery.onSettled(fn) : setImmediate(fn));
  const ctx: CallContext = { method: entry.name, dialect: opts.dialect, signal: opts.signal, log: env.log, legacy, onUndelivered, afterAnswer };
  const info: CallInfo = { service: entry.service, method: entry.name, fullMethod: `/${entry.service}/${entry.name}`, dialect: opts.dialect, request, ctx };
  try {
    // Encoding is inside the chain so an answer that cannot be encoded is an outcome interceptors see.
    return await runInterceptors(env.interceptors, info, async () => entry.codec.encode(await entry.call(request, ctx)));
  } catch (err) {
    throw toRpcError(err);
  }
}
