import type { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import { dialect3x } from '../rpc/dialect.js';
import type { AgentRpcService } from '../rpc/service.js';
import { Code, RpcError } from '../rpc/status.js';
import { TtrpcServer } from './ttrpc/server.js';

/** kata 3.x hosts keep one connection and pipeline every container's calls on it. */
const MAX_IN_FLIGHT = 1024;

/** Serves the agent service as ttrpc (the kata 2.x/3.x wire), answering in the 3.x dialect. */
export class TtrpcTransport {
  private readonly server: TtrpcServer;

  constructor(service: AgentRpcService, log: Logger) {
    this.server = new TtrpcServer(
      async (call) => {
        const entry = await service.resolve(call.service, call.method);
        if (!entry) throw new RpcError(Code.UNIMPLEMENTED, `unknown method /${call.service}/${call.method}`);
        return service.dispatch(entry, call.payload, { dialect: dialect3x, signal: call.signal });
      },
      { maxInFlight: MAX_IN_FLIGHT, log },
    );
  }

  /** Serves one host connection until it closes. */
  serve(conn: Duplex): void {
    this.server.serve(conn);
  }

  close(): void {
    this.server.close();
  }
}
