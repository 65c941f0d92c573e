import type { Duplex } from 'node:stream';
import { Delivery } from '../../rpc/delivery.js';
import { Code, RpcError } from '../../rpc/status.js';
import { decodeRequest, encodeResponse } from './envelope.js';
import { encodeFrame, FLAG_REMOTE_OPEN, FrameReader, FrameType, MAX_DATA_LENGTH, type FrameHeader, type ReadEvent } from './frame.js';

export interface TtrpcCall {
  service: string;
  method: string;
  payload: Uint8Array;
  metadata: { key: string; value: string }[];
  /** Aborted when the deadline passes or the client goes away. */
  signal: AbortSignal;
  /** Told whether the handler's payload was written to the client (see Delivery). */
  delivery: Delivery;
}

/**
 * What the ttrpc server serves. Resolves with the response payload or rejects with an RpcError
 * (UNIMPLEMENTED for a service/method it does not know); any other rejection is sent as UNKNOWN.
 */
export type TtrpcHandler = (call: TtrpcCall) => Promise<Uint8Array>;

export interface TtrpcLog {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ConnectionOptions {
  /** Calls one connection may have in flight; while that many run, no further frame is read. */
  maxInFlight: number;
  /**
   * Bytes of answers the connection may hold unwritten (the client is not reading them) before it
   * stops reading the client's frames, until they drain.
   */
  writeHighWater: number;
  log: TtrpcLog;
}

interface ActiveCall {
  method: string;
  abort: AbortController;
  delivery: Delivery;
  timer?: NodeJS.Timeout;
}

// setTimeout's largest delay; a longer deadline is as good as none.
const MAX_TIMER_MS = 0x7fffffff;

/**
 * One client connection. Every Request frame starts a call at once and its Response is written when
 * that call finishes, so a long-poll (WaitProcess, GetOOMEvent) never holds up the calls behind it.
 *
 * Bad input: frames the protocol defines but a client may not send (even or reused stream ids,
 * Response or Data frames, client streams, oversized frames, undecodable envelopes) are answered
 * with a status on their stream and the connection goes on. A frame type outside the protocol means
 * the byte stream has lost its framing, so nothing after it can be trusted: the connection is closed.
 *
 * Back-pressure: frames are taken out of the received bytes one at a time, and none is while
 * `maxInFlight` calls run or while more than `writeHighWater` bytes of answers wait to be written
 * (a client that sends but never reads). The socket is paused meanwhile, so the kernel's buffers
 * fill and the client's writes block: its flood costs the agent a bounded amount of memory. Reading
 * resumes when a call finishes or the answers drain.
 */
export class TtrpcConnection {
  private readonly reader = new FrameReader();
  private readonly calls = new Map<number, ActiveCall>();
  private lastStreamId = 0;
  private readEnded = false;
  private closed = false;
  private paused = false;
  /** Frames the connection took out of the received bytes and acted on (for tests). */
  framesRead = 0;

  constructor(
    private readonly conn: Duplex,
    private readonly handler: TtrpcHandler,
    private readonly opts: ConnectionOptions,
  ) {
    // Our side stays open after the client's ends so the calls it cut short can be answered.
    (conn as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
    conn.on('data', (chunk: Buffer) => this.onData(chunk));
    conn.on('end', () => this.onEnd());
    conn.on('error', (err) => opts.log.debug({ err: err.message }, 'ttrpc connection error'));
    conn.on('close', () => this.onClose());
    conn.on('drain', () => this.pump());
    // Whoever read the first bytes (the wire router) may have paused the stream and put them back.
    conn.resume();
  }

  /** Calls currently running (for tests and shutdown). */
  get inFlight(): number {
    return this.calls.size;
  }

  close(): void {
    this.conn.destroy();
  }

  /** True while the socket is paused because the connection is backed up (for tests). */
  get readingPaused(): boolean {
    return this.paused;
  }

  /** True while the connection reads no further frame (see the class comment). */
  get backedUp(): boolean {
    // writableNeedDrain: a 'drain' is sure to come and resume us (a mark below the stream's own
    // would otherwise wait for an event that never fires).
    return this.calls.size >= this.opts.maxInFlight || (this.conn.writableNeedDrain && this.conn.writableLength > this.opts.writeHighWater);
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.readEnded) return;
    this.reader.feed(chunk);
    this.pump();
  }

  /** Acts on the frames received so far until none is left or the connection is backed up. */
  private pump(): void {
    if (this.closed || this.conn.destroyed) return;
    while (!this.readEnded && !this.backedUp) {
      let ev: ReadEvent | undefined;
      try {
        ev = this.reader.next();
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'ttrpc: cannot parse frames, closing connection');
        this.conn.destroy();
        return;
      }
      if (!ev) break;
      this.framesRead++;
      if (ev.kind === 'oversized') this.onOversized(ev.header);
      else this.onFrame(ev.header, ev.data);
      if (this.closed || this.conn.destroyed) return;
    }
    // A paused socket stops reading once its own small buffer is full; the kernel holds the rest.
    const stop = this.backedUp;
    if (stop && !this.paused) {
      this.paused = true;
      this.conn.pause();
    } else if (!stop && this.paused) {
      this.paused = false;
      this.conn.resume();
    }
  }

  private onOversized(h: FrameHeader): void {
    if (!this.knownType(h)) return;
    this.reject(
      h.streamId,
      Code.RESOURCE_EXHAUSTED,
      `frame of ${h.length} bytes on stream ${h.streamId} exceeds the ${MAX_DATA_LENGTH}-byte limit`,
      h.type === FrameType.Data,
    );
  }

  private knownType(h: FrameHeader): boolean {
    if (h.type === FrameType.Request || h.type === FrameType.Response || h.type === FrameType.Data) return true;
    this.opts.log.warn({ type: h.type, stream_id: h.streamId }, 'ttrpc: unknown frame type, framing lost, closing connection');
    this.conn.destroy();
    return false;
  }

  private onFrame(h: FrameHeader, data: Buffer): void {
    if (!this.knownType(h)) return;
    const id = h.streamId;
    if (h.type === FrameType.Response) {
      this.reject(id, Code.INVALID_ARGUMENT, `stream ${id}: a client may not send Response frames`, false);
      return;
    }
    if (h.type === FrameType.Data) {
      // No agent RPC streams, so a Data frame can only be a client error; it ends the call it names.
      this.reject(id, Code.INVALID_ARGUMENT, `stream ${id}: Data frames are not accepted (every agent RPC is unary)`, true);
      return;
    }
    if (id % 2 === 0) {
      this.reject(id, Code.INVALID_ARGUMENT, `stream id ${id} is even: client streams use odd ids`, false);
      return;
    }
    if (id <= this.lastStreamId) {
      this.reject(id, Code.INVALID_ARGUMENT, `stream id ${id} reused: ids must increase (last was ${this.lastStreamId})`, false);
      return;
    }
    this.lastStreamId = id;
    if (h.flags & FLAG_REMOTE_OPEN) {
      this.reject(id, Code.UNIMPLEMENTED, `stream ${id}: client streaming is not supported (every agent RPC is unary)`, false);
      return;
    }
    let req;
    try {
      req = decodeRequest(data);
    } catch (err) {
      this.reject(id, Code.INVALID_ARGUMENT, `stream ${id}: cannot decode ttrpc.Request: ${(err as Error).message}`, false);
      return;
    }
    this.start(id, req.service, req.method, req.payload, req.metadata, req.timeoutNano);
  }

  private start(id: number, service: string, method: string, payload: Uint8Array, metadata: TtrpcCall['metadata'], timeoutNano: bigint): void {
    const call: ActiveCall = { method, abort: new AbortController(), delivery: new Delivery() };
    this.calls.set(id, call);
    if (timeoutNano > 0n) {
      const ms = Number(timeoutNano) / 1e6;
      if (ms <= MAX_TIMER_MS) {
        call.timer = setTimeout(() => {
          call.abort.abort(new RpcError(Code.DEADLINE_EXCEEDED, 'deadline exceeded'));
          this.finish(id, call, Code.DEADLINE_EXCEEDED, `${method}: deadline of ${ms} ms exceeded`, undefined);
        }, Math.ceil(ms));
      }
    }
    let result: Promise<Uint8Array>;
    try {
      result = this.handler({
        service,
        method,
        payload,
        metadata: metadata.map((kv) => ({ key: kv.key, value: kv.value })),
        signal: call.abort.signal,
        delivery: call.delivery,
      });
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (bytes) => {
        // An answer for a call that was already answered (deadline) or cut off goes nowhere.
        if (!this.finish(id, call, Code.OK, '', bytes)) call.delivery.undelivered();
      },
      (err: unknown) => {
        call.delivery.undelivered();
        const e = err instanceof RpcError ? err : new RpcError(Code.UNKNOWN, err instanceof Error ? err.message : String(err));
        this.finish(id, call, e.code, e.message, undefined);
      },
    );
  }

  /**
   * Sends a call's answer unless it was already answered (deadline) or the client is gone; false if
   * this call had nothing left to answer. The call's delivery is settled once an OK payload is
   * written (or fails to be).
   */
  private finish(id: number, call: ActiveCall, code: Code, message: string, payload: Uint8Array | undefined): boolean {
    if (this.calls.get(id) !== call) return false;
    this.calls.delete(id);
    if (call.timer) clearTimeout(call.timer);
    if (payload && payload.length + 64 > MAX_DATA_LENGTH) {
      // The client would drop an oversized frame; tell it why instead.
      code = Code.RESOURCE_EXHAUSTED;
      message = `${call.method}: response of ${payload.length} bytes exceeds the ${MAX_DATA_LENGTH}-byte frame limit`;
      payload = undefined;
    }
    if (payload) this.send(id, code, message, payload, call.delivery);
    else {
      call.delivery.undelivered();
      this.send(id, code, message, undefined);
    }
    // A finished call frees a slot: frames held back by the in-flight cap may go on.
    if (this.paused) this.pump();
    return true;
  }

  /** Answers a stream with an error; `endsCall` also cancels a call running on that id. */
  private reject(id: number, code: Code, message: string, endsCall: boolean): void {
    this.opts.log.debug({ stream_id: id, code: Code[code], message }, 'ttrpc: refused frame');
    const active = this.calls.get(id);
    if (active && endsCall) {
      active.abort.abort(new RpcError(code, message));
      this.finish(id, active, code, message, undefined);
      return;
    }
    this.send(id, code, message, undefined);
  }

  private send(id: number, code: Code, message: string, payload: Uint8Array | undefined, delivery?: Delivery): void {
    if (this.closed || this.conn.destroyed || this.conn.writableEnded) {
      delivery?.undelivered();
      return;
    }
    const data = encodeResponse(code, message, payload ?? new Uint8Array(0));
    // The callback runs once the kernel (or the stream below) took the whole frame, or with the
    // error that lost it. But Node's sockets call it *without* an error for a write that the
    // socket's destruction cut short (measured: a 1 MiB answer to a host that closed after 64 KiB
    // of it "succeeded"), so a callback that finds the connection already destroyed counts as not
    // delivered. A frame written in full just before the host vanished may then be sent again
    // on its next read: doubled output is the lesser harm than lost output, and needs a host that
    // closed with an answer in its buffer, which it would drop half-read anyway.
    const onWritten = delivery && ((err?: Error | null) => (err || this.conn.destroyed ? delivery.undelivered() : delivery.delivered()));
    this.conn.write(encodeFrame(id, FrameType.Response, 0, data), onWritten);
  }

  private onEnd(): void {
    this.readEnded = true;
    // Frames still held back by back-pressure when the client closed its side are not started:
    // their answers could only go to a client that has left.
    if (this.reader.midFrame) this.opts.log.debug({}, 'ttrpc: client closed its side mid-frame');
    // A socket cannot tell a peer that half-closed from one that vanished until a write fails, and
    // a long-poll (WaitProcess, GetOOMEvent) may never write. So the end of the client's stream
    // ends its calls: each is cancelled and, for a client that only half-closed, answered CANCELLED.
    for (const [id, call] of [...this.calls]) {
      call.abort.abort(new RpcError(Code.CANCELLED, 'client closed its side of the connection'));
      this.finish(id, call, Code.CANCELLED, `${call.method}: cancelled: the client closed its side of the connection`, undefined);
    }
    this.conn.end();
  }

  private onClose(): void {
    this.closed = true;
    const calls = [...this.calls.values()];
    this.calls.clear();
    for (const call of calls) {
      if (call.timer) clearTimeout(call.timer);
      call.abort.abort(new RpcError(Code.CANCELLED, 'client connection closed'));
    }
  }
}
