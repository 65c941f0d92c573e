import type { Message } from '@bufbuild/protobuf';
import type { Logger } from '../log/logger.js';
import type { Interceptor } from './call.js';
import type { Dialect } from './dialect.js';
import { Code, toRpcError } from './status.js';

/**
 * The one log line per call (debug: method, ids, duration, status, wire), and an error line for a
 * failure that is the agent's fault (INTERNAL or UNKNOWN, unless it is the normal end of a stream).
 * The error line keeps what the handler threw, not its mapped status, so errno and stack survive.
 */
export function logCalls(log: Logger): Interceptor {
  return async (call, next) => {
    const started = process.hrtime.bigint();
    try {
      const answer = await next();
      logCall(log, call.method, call.dialect, call.request, Code.OK, started);
      return answer;
    } catch (err) {
      logFailure(log, call.method, call.dialect, call.request, err, started);
      throw err;
    }
  };
}

/** The same lines for a call whose request did not decode (CallEnv.onUndecodable). */
export function logUndecodable(log: Logger): (method: string, dialect: Dialect, err: unknown, started: bigint) => void {
  return (method, dialect, err, started) => logFailure(log, method, dialect, undefined, err, started);
}

function logFailure(log: Logger, method: string, dialect: Dialect, request: Message | undefined, err: unknown, started: bigint): void {
  const e = toRpcError(err);
  if (!e.expected && (e.code === Code.INTERNAL || e.code === Code.UNKNOWN)) log.error({ method, err }, 'rpc failed');
  logCall(log, method, dialect, request, e.code, started);
}

function logCall(log: Logger, method: string, dialect: Dialect, request: Message | undefined, code: Code, started: bigint): void {
  if (!log.isLevelEnabled('debug')) return;
  const r = request as { containerId?: string; execId?: string } | undefined;
  log.debug(
    {
      method,
      container_id: r?.containerId || undefined,
      exec_id: r?.execId || undefined,
      duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
      code: Code[code],
      wire: dialect.name,
    },
    'rpc',
  );
}
