// A deliberately low-level ttrpc peer for tests: writes any bytes or frames (valid or not) and
// hands back every Response frame in arrival order.
import net from 'node:net';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { RequestSchema, ResponseSchema } from '../../protos/gen/ttrpc_pb.js';
import { encodeFrame, FrameReader, FrameType } from '../../agent/src/transport/ttrpc/frame.js';

export interface Answer {
  id: number;
  type: number;
  code: number;
  message: string;
  payload: Uint8Array;
}

export class RawTtrpc {
  private readonly reader = new FrameReader();
  private readonly answers: Answer[] = [];
  private waiter?: () => void;
  readonly closed: Promise<void>;
  ended = false;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      for (const ev of this.reader.push(chunk)) {
        if (ev.kind !== 'frame') throw new Error('agent sent an oversized frame');
        const res = fromBinary(ResponseSchema, ev.data);
        this.answers.push({
          id: ev.header.streamId,
          type: ev.header.type,
          code: res.status?.code ?? 0,
          message: res.status?.message ?? '',
          payload: res.payload,
        });
      }
      this.waiter?.();
    });
    sock.on('error', () => undefined);
    // The agent's FIN ('end') is enough: nothing more can come, whatever our own side does.
    this.closed = new Promise((resolve) => {
      const done = () => {
        this.ended = true;
        this.waiter?.();
        resolve();
      };
      sock.once('end', done);
      sock.once('close', done);
    });
  }

  static connect(path: string): Promise<RawTtrpc> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path, allowHalfOpen: true });
      s.once('connect', () => resolve(new RawTtrpc(s)));
      s.once('error', reject);
    });
  }

  write(bytes: Uint8Array): void {
    this.sock.write(bytes);
  }

  request(id: number, service: string, method: string, payload: Uint8Array = new Uint8Array(0), o: { timeoutNano?: bigint; flags?: number } = {}): void {
    const env = toBinary(RequestSchema, create(RequestSchema, { service, method, payload, timeoutNano: o.timeoutNano ?? 0n }));
    this.write(encodeFrame(id, FrameType.Request, o.flags ?? 0, env));
  }

  /** The next Response frame; rejects if the connection closes first. */
  async next(): Promise<Answer> {
    while (this.answers.length === 0) {
      if (this.ended) throw new Error('connection closed before an answer arrived');
      await new Promise<void>((r) => (this.waiter = r));
    }
    return this.answers.shift()!;
  }

  destroy(): void {
    this.sock.destroy();
  }
}
