import type { Duplex } from 'node:stream';
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
  /** Calls one connection may have in flight; more are refused with RESOURCE_EXHAUSTED. */
  maxInFlight: number;
  log: TtrpcLog;
}

interface ActiveCall {
  method: string;
  abort: AbortController;
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
 */
export class TtrpcConnection {
  private readonly reader = new FrameReader();
  private readonly calls = new Map<number, ActiveCall>();
  private lastStreamId = 0;
  private readEnded = false;
  private closed = false;

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

  private onData(chunk: Buffer): void {
    if (this.closed || this.readEnded) return;
    let events: ReadEvent[];
    try {
      events = this.reader.push(chunk);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'ttrpc: cannot parse frames, closing connection');
      this.conn.destroy();
      return;
    }
    for (const ev of events) {
      if (this.closed || this.conn.destroyed) return;
      if (ev.kind === 'oversized') this.onOversized(ev.header);
      else this.onFrame(ev.header, ev.data);
    }
  }

  private onOversized(h: FrameHeader): void {
    if (!this.knownType(h)) return;
    this.reject(h.streamId, Code.RESOURCE_EXHAUSTED, `frame of ${h.length} bytes on stream ${h.streamId} exceeds the ${MAX_DATA_LENGTH}-byte limit`, h.type === FrameType.Data);
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
    if (this.calls.size >= this.opts.maxInFlight) {
      this.reject(id, Code.RESOURCE_EXHAUSTED, `stream ${id}: ${this.calls.size} calls already in flight on this connection`, false);
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
    const call: ActiveCall = { method, abort: new AbortController() };
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
      result = this.handler({ service, method, payload, metadata: metadata.map((kv) => ({ key: kv.key, value: kv.value })), signal: call.abort.signal });
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (bytes) => this.finish(id, call, Code.OK, '', bytes),
      (err: unknown) => {
        const e = err instanceof RpcError ? err : new RpcError(Code.UNKNOWN, err instanceof Error ? err.message : String(err));
        this.finish(id, call, e.code, e.message, undefined);
      },
    );
  }

  /** Sends a call's answer unless it was already answered (deadline) or the client is gone. */
  private finish(id: number, call: ActiveCall, code: Code, message: string, payload: Uint8Array | undefined): void {
    if (this.calls.get(id) !== call) return;
    this.calls.delete(id);
    if (call.timer) clearTimeout(call.timer);
    if (payload && payload.length + 64 > MAX_DATA_LENGTH) {
      // The client would drop an oversized frame; tell it why instead.
      code = Code.RESOURCE_EXHAUSTED;
      message = `${call.method}: response of ${payload.length} bytes exceeds the ${MAX_DATA_LENGTH}-byte frame limit`;
      payload = undefined;
    }
    this.send(id, code, message, payload);
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

  private send(id: number, code: Code, message: string, payload: Uint8Array | undefined): void {
    if (this.closed || this.conn.destroyed || this.conn.writableEnded) return;
    const data = encodeResponse(code, message, payload ?? new Uint8Array(0));
    this.conn.write(encodeFrame(id, FrameType.Response, 0, data));
  }

  private onEnd(): void {
    this.readEnded = true;
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
    for (const call of this.calls.values()) {
      if (call.timer) clearTimeout(call.timer);
      call.abort.abort(new RpcError(Code.CANCELLED, 'client connection closed'));
    }
    this.calls.clear();
  }
}
