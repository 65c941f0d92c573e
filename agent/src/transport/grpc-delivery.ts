import * as grpc from '@grpc/grpc-js';
import type { Delivery } from '../rpc/delivery.js';

/**
 * Tells each gRPC call's Delivery whether its answer was written. grpc-js reports neither to a
 * handler, but a server interceptor sees both ends: sendMessage's callback runs once the socket
 * write that carried the whole message (past HTTP/2 flow control) completed, and the listener's
 * onCancel runs when the call is over, delivered or not. An answer still unconfirmed by then was
 * lost (client gone, call cancelled). Answers are matched to their Delivery by the Buffer itself,
 * which passes through grpc-js untouched (the transport's serializers are the identity).
 *
 * One catch, as on ttrpc: Node completes a write that the destruction of its stream cut short
 * *without* an error (measured: a ReadStdout answer to a host that had already closed "succeeded"),
 * so a callback that finds the call's HTTP/2 stream, its session or their socket destroyed counts
 * as not delivered. grpc-js has no public accessor for that stream; its innermost call object keeps
 * it as `stream` (this interceptor is the only one, so it wraps that object), and without one (a
 * grpc-js that changed this) the callback is trusted as before.
 */
export class GrpcDeliveries {
  private readonly pending = new WeakMap<Buffer, Delivery>();

  /** Call before handing `answer` to grpc-js's callback. */
  track(answer: Buffer, delivery: Delivery): void {
    this.pending.set(answer, delivery);
  }

  readonly interceptor: grpc.ServerInterceptor = (_method, next) => {
    let delivery: Delivery | undefined;
    let over = false;
    const listener = new grpc.ServerListenerBuilder()
      .withOnCancel(() => {
        over = true;
        delivery?.undelivered();
      })
      .build();
    const call = new grpc.ServerInterceptingCall(next, new grpc.ResponderBuilder().withStart((start) => start(listener)).build());
    const send = call.sendMessage.bind(call);
    call.sendMessage = (message: unknown, callback: () => void) => {
      delivery = Buffer.isBuffer(message) ? this.pending.get(message) : undefined;
      if (over) delivery?.undelivered();
      send(message, () => {
        if (over || cutShort(next)) delivery?.undelivered();
        else delivery?.delivered();
        callback();
      });
    };
    return call;
  };
}

interface StreamLike {
  destroyed?: unknown;
  session?: { destroyed?: unknown; socket?: { destroyed?: unknown } };
}

/** True when the call's HTTP/2 stream, its session or the socket below is already destroyed. */
function cutShort(call: grpc.ServerInterceptingCallInterface): boolean {
  const stream = (call as unknown as { stream?: StreamLike }).stream;
  return stream?.destroyed === true || stream?.session?.destroyed === true || stream?.session?.socket?.destroyed === true;
}
