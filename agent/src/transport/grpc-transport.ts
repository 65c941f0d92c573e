import * as grpc from '@grpc/grpc-js';
import type { Duplex } from 'node:stream';
import { Delivery } from '../rpc/delivery.js';
import { dialect1x } from '../rpc/dialect.js';
import { serviceMethods } from '../../../protos/gen/service_methods.js';
import { agentServiceName, healthServiceName, type AgentRpcService } from '../rpc/service.js';
import type { RpcError } from '../rpc/status.js';
import type { Logger } from '../log/logger.js';
import { GrpcDeliveries } from './grpc-delivery.js';
import { addLazyReflection } from './grpc-reflection.js';
import { Http2HostConn } from './http2-host-conn.js';
import { MAX_CONCURRENT_CALLS, MAX_MESSAGE } from './grpc-limits.js';

export { MAX_CONCURRENT_CALLS };

const passthrough = (b: Buffer) => b;

/**
 * Serves the agent service as gRPC over HTTP/2 (the kata 1.x wire) on any Duplex handed to it.
 * Payloads pass through grpc-js undecoded so AgentRpcService decodes them and answers malformed
 * bytes with INVALID_ARGUMENT instead of grpc-js's INTERNAL.
 */
export class GrpcTransport {
  private readonly server: grpc.Server;
  private readonly injector: ReturnType<grpc.Server['createConnectionInjector']>;

  constructor(
    service: AgentRpcService,
    private readonly log: Logger,
  ) {
    const deliveries = new GrpcDeliveries();
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': MAX_MESSAGE,
      'grpc.max_send_message_length': MAX_MESSAGE,
      'grpc.max_concurrent_streams': MAX_CONCURRENT_CALLS,
      interceptors: [deliveries.interceptor],
    });
    // Method names, not descriptors: the agent service's descriptors load on its first call.
    for (const typeName of [agentServiceName, healthServiceName]) {
      const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
      const impl: grpc.UntypedServiceImplementation = {};
      for (const name of serviceMethods[typeName]) {
        definition[name] = {
          path: `/${typeName}/${name}`,
          requestStream: false,
          responseStream: false,
          requestSerialize: passthrough,
          requestDeserialize: passthrough,
          responseSerialize: passthrough,
          responseDeserialize: passthrough,
        };
        impl[name] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          const abort = new AbortController();
          const delivery = new Delivery();
          call.once('cancelled', () => abort.abort());
          service.call(typeName, name, call.request, { dialect: dialect1x, signal: abort.signal, delivery }).then(
            (bytes) => {
              const answer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
              deliveries.track(answer, delivery);
              callback(null, answer);
            },
            // call() rejects with an RpcError only.
            (e: RpcError) => {
              delivery.undelivered();
              callback({ code: e.code as number, details: e.message });
            },
          );
        };
      }
      this.server.addService(definition, impl);
    }
    addLazyReflection(this.server);
    this.injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  }

  /**
   * Serves one host connection until it closes. Node's HTTP/2 gets it through Http2HostConn, which
   * fixes kata 1.x's `:authority` and closes the connection after an HTTP/2 connection error (see
   * there). It is done here, not in each listener, so unix, vsock and yamux streams all get it.
   */
  serve(conn: Duplex): void {
    conn.on('error', (err) => this.log.debug({ err: err.message }, 'grpc connection error'));
    const host = new Http2HostConn(conn, { onClose: (reason) => this.log.debug({ reason }, 'grpc connection closed on an HTTP/2 error') });
    host.on('error', () => undefined); // the same error as conn's, logged above
    this.injector.injectConnection(host);
  }

  close(): void {
    this.injector.destroy();
    this.server.forceShutdown();
  }
}
