// An in-process agent service on a unix socket, with test handlers, for transport tests.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { healthHandlers } from '../../agent/src/health/handlers.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { AgentRpcService, type AgentHandlers } from '../../agent/src/rpc/service.js';
import { GrpcTransport } from '../../agent/src/transport/grpc-transport.js';
import type { TtrpcConnection } from '../../agent/src/transport/ttrpc/connection.js';
import { TtrpcTransport } from '../../agent/src/transport/ttrpc-transport.js';
import { routeConnection } from '../../agent/src/transport/wire-router.js';

export interface Served {
  socket: string;
  close(): Promise<void>;
}

export interface InProcessOptions {
  /** Told of each ttrpc connection the agent serves (to look at its back-pressure state). */
  onTtrpcConnection?: (c: TtrpcConnection) => void;
}

export async function serveInProcess(tag: string, handlers: AgentHandlers, opts: InProcessOptions = {}): Promise<Served> {
  const log = createLogger('silent');
  const service = new AgentRpcService(log, [handlers], healthHandlers());
  const grpc = new GrpcTransport(service, log);
  const ttrpc = new TtrpcTransport(service, log);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kata-${tag}-`));
  const socket = path.join(dir, 's.sock');
  const server = net.createServer((c) =>
    routeConnection(c, {
      grpc: (d) => grpc.serve(d),
      ttrpc: (d) => {
        const c = ttrpc.serve(d);
        opts.onTtrpcConnection?.(c);
      },
    }),
  );
  await new Promise<void>((r) => server.listen(socket, r));
  return {
    socket,
    async close() {
      ttrpc.close();
      grpc.close();
      await new Promise<void>((r) => server.close(() => r()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
