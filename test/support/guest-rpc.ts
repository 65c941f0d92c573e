// Host side of the kata 1.x channel in tests: QEMU's chardev socket → yamux client → one gRPC
// connection per yamux stream (agent-ctl's client).
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { GrpcClient } from '../../agent-ctl/src/grpc-client.js';
import { connectYamuxUnix, type YamuxClient } from '../../agent/src/transport/yamux/client.js';
import { CheckRequestSchema } from '../../protos/gen/health_pb.js';

export class GuestRpc {
  private constructor(
    readonly yamux: YamuxClient,
    readonly grpc: GrpcClient,
    /** Sessions that failed the ping handshake before this one worked. */
    readonly retries: number,
  ) {}

  /**
   * A session the guest has answered a Health.Check on (kata hosts also start with Check). Over the
   * real virtio-serial port the guest does not see a host disconnect, so its previous yamux session
   * lives on and the new host's first SYN (stream 1 again) is a protocol error that ends it; the
   * guest then reopens the port and the next session works. The host therefore checks each new
   * session and starts another when the check fails, as a kata 1.x host reconnects. `retries`
   * records how often that happened so tests can report it.
   */
  static async connect(socketPath: string, timeoutMs = 10_000, attempts = 5): Promise<GuestRpc> {
    let lastErr: Error | undefined;
    for (let i = 0; i < attempts; i++) {
      const yamux = await connectYamuxUnix(socketPath, timeoutMs, { pingIntervalMs: 0 });
      const stream = yamux.open();
      // A session torn down under a call also errors the stream itself; the call's own rejection
      // already reports it, so the stream's copy must not crash the test process.
      stream.on('error', () => undefined);
      const rpc = new GuestRpc(yamux, new GrpcClient(stream), i);
      try {
        await rpc.grpc.call('grpc.Health', 'Check', toBinary(CheckRequestSchema, create(CheckRequestSchema, {})), 5000);
        return rpc;
      } catch (err) {
        lastErr = err as Error;
        rpc.close();
      }
    }
    throw new Error(`no working yamux session with the guest after ${attempts} attempts: ${lastErr?.message}`);
  }

  async call<I extends DescMessage, O extends DescMessage>(service: string, method: string, reqSchema: I, req: MessageInitShape<I>, resSchema: O, timeoutMs = 30_000): Promise<MessageShape<O>> {
    const bytes = await this.grpc.call(service, method, toBinary(reqSchema, create(reqSchema, req)), timeoutMs);
    return fromBinary(resSchema, bytes);
  }

  close(): void {
    this.yamux.close();
  }
}
