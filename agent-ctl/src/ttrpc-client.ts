// A ttrpc client for the kata 2.x/3.x wire over any open Duplex, sharing the agent's frame codec.
// Calls are pipelined: each gets the next odd stream id and its own timeout.
import type { Duplex } from 'node:stream';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { RequestSchema, ResponseSchema } from '../../protos/gen/ttrpc_pb.js';
import { encodeFrame, FrameReader, FrameType } from '../../agent/src/transport/ttrpc/frame.js';
import { Code } from '../../agent/src/rpc/status.js';
import { CallError, type RpcClient } from './grpc-client.js';

interface Pending {
  resolve: (b: Uint8Array) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class TtrpcClient implements RpcClient {
  private readonly reader = new FrameReader();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure?: CallError;

  constructor(private readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', (err) => this.fail(new CallError(Code.UNAVAILABLE, `connection error: ${err.message}`)));
    stream.on('close', () => this.fail(new CallError(Code.UNAVAILABLE, 'connection closed by the agent')));
    // The hybrid-vsock handshake leaves the stream paused with any early bytes put back.
    stream.resume();
  }

  call(service: string, method: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId += 2;
    const envelope = create(RequestSchema, { service, method, payload: request, timeoutNano: BigInt(Math.round(timeoutMs * 1e6)) });
    return new Promise((resolve, reject) => {
      // The agent enforces timeout_nano itself; this timer only covers an agent that never answers.
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CallError(Code.DEADLINE_EXCEEDED, `${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs + 1000);
      this.pending.set(id, { resolve, reject, timer });
      this.stream.write(encodeFrame(id, FrameType.Request, 0, toBinary(RequestSchema, envelope)));
    });
  }

  close(): void {
    this.stream.end();
  }

  private onData(chunk: Buffer): void {
    for (const ev of this.reader.push(chunk)) {
      if (ev.kind !== 'frame' || ev.header.type !== FrameType.Response) {
        // Not a ttrpc server (or a broken one): nothing later on this stream can be trusted.
        this.fail(new CallError(Code.UNAVAILABLE, 'the server does not speak ttrpc'));
        this.stream.destroy();
        return;
      }
      const p = this.pending.get(ev.header.streamId);
      if (!p) continue;
      this.pending.delete(ev.header.streamId);
      clearTimeout(p.timer);
      let res;
      try {
        res = fromBinary(ResponseSchema, ev.data);
      } catch (err) {
        p.reject(new CallError(Code.INTERNAL, `cannot decode ttrpc.Response: ${(err as Error).message}`));
        continue;
      }
      const code = res.status?.code ?? 0;
      if (code !== 0) p.reject(new CallError(code, res.status?.message ?? ''));
      else p.resolve(res.payload);
    }
  }

  private fail(err: CallError): void {
    this.failure ??= err;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }
}
