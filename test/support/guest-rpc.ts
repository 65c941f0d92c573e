// Host side of the kata 1.x channel in tests: QEMU's chardev socket → yamux client → one gRPC
// connection per yamux stream (agent-ctl's client). Like kata 1.x hosts it does not retry: the
// first call of a new session must work however the previous host left.
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { GrpcClient, type RpcClient } from '../../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { connectYamuxUnix, type YamuxClient } from '../../agent/src/transport/yamux/client.js';

export class GuestRpc {
  private constructor(
    readonly yamux: YamuxClient,
    readonly grpc: RpcClient,
  ) {}

  /**
   * `wire`: gRPC (kata 1.x, the default) or ttrpc (3.x hosts speak it over vsock, which this machine
   * cannot give a guest: here it rides a yamux stream of the same port). `authority`: the gRPC
   * `:authority` (a 1.x host sends its dial target).
   */
  static async connect(socketPath: string, timeoutMs = 10_000, opts: { wire?: 'grpc' | 'ttrpc'; authority?: string } = {}): Promise<GuestRpc> {
    const yamux = await connectYamuxUnix(socketPath, timeoutMs, { pingIntervalMs: 0 });
    const stream = yamux.open();
    // A session torn down under a call also errors the stream itself; the call's own rejection
    // already reports it, so the stream's copy must not crash the test process.
    stream.on('error', () => undefined);
    return new GuestRpc(yamux, opts.wire === 'ttrpc' ? new TtrpcClient(stream) : new GrpcClient(stream, opts.authority));
  }

  async call<I extends DescMessage, O extends DescMessage>(
    service: string,
    method: string,
    reqSchema: I,
    req: MessageInitShape<I>,
    resSchema: O,
    timeoutMs = 30_000,
  ): Promise<MessageShape<O>> {
    const bytes = await this.grpc.call(service, method, toBinary(reqSchema, create(reqSchema, req)), timeoutMs);
    return fromBinary(resSchema, bytes);
  }

  close(): void {
    this.yamux.close();
  }
}
