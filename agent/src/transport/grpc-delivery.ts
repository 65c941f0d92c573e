import * as grpc from '@grpc/grpc-js';
import type { Delivery } from '../rpc/delivery.js';

/**
 * Tells each gRPC call's Delivery whether its answer was written. grpc-js reports neither to a
 * handler, but a server interceptor sees both ends: sendMessage's callback runs only once HTTP/2
 * took the whole message (past flow control) onto the connection, and the listener's onCancel
 * runs when the call is over, delivered or not. An answer still unconfirmed by then was lost
 * (client gone, call cancelled, write failed). Answers are matched to their Delivery by the Buffer
 * itself, which passes through grpc-js untouched (the transport's serializers are the identity).
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
        delivery?.delivered();
        callback();
      });
    };
    return call;
  };
}
