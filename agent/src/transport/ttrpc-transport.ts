import type { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import { dialect3x } from '../rpc/dialect.js';
import type { AgentRpcService } from '../rpc/service.js';
import type { TtrpcConnection } from './ttrpc/connection.js';
import { TtrpcServer } from './ttrpc/server.js';

/**
 * Calls one connection may have running before the agent stops reading its frames. kata 3.x hosts
 * keep one connection per pod and pipeline every container's calls on it; the long-polls among
 * them stay in flight for a process's whole life: ReadStdout, ReadStderr and WaitProcess per
 * process, plus one GetOOMEvent per pod. 256 leaves room for 85 processes streaming at once in one
 * pod, far more than pods run, while bounding what a host that pipelines without reading can make
 * the agent hold: a ReadStdout that finds output waiting hands out at most one read of the pipe
 * (64 KiB) once its stream is being read faster than it fills, so 256 such answers are 16 MiB,
 * beside a call's own few hundred bytes. Past the cap the host's further calls wait in the
 * kernel's buffers and its own, as they would behind a slow agent; none is refused.
 */
export const MAX_IN_FLIGHT = 256;

/**
 * Bytes of answers left unwritten (the host is not reading) past which the agent stops reading the
 * connection's requests until they drain: a host that floods Check without reading got the agent
 * from 164 to 578 MB before this. Eight ReadStdout answers of kata's 32 KiB, on top of what the
 * kernel's socket buffer holds (~200 KiB on unix sockets); a larger single answer just pauses
 * reading until it is written.
 */
export const WRITE_HIGH_WATER = 256 * 1024;

/** Serves the agent service as ttrpc (the kata 2.x/3.x wire), answering in the 3.x dialect. */
export class TtrpcTransport {
  private readonly server: TtrpcServer;

  constructor(service: AgentRpcService, log: Logger) {
    this.server = new TtrpcServer(
      (call) => service.call(call.service, call.method, call.payload, { dialect: dialect3x, signal: call.signal, delivery: call.delivery }),
      { maxInFlight: MAX_IN_FLIGHT, writeHighWater: WRITE_HIGH_WATER, log },
    );
  }

  /** Serves one host connection until it closes. */
  serve(conn: Duplex): TtrpcConnection {
    return this.server.serve(conn);
  }

  close(): void {
    this.server.close();
  }
}
