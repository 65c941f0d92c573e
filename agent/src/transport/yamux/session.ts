// A yamux session (hashicorp/yamux wire format), written here rather than taken from npm: in
// 2026-11 `yamux-js` (CommonJS, the only hashicorp port) keeps no receive-window accounting, never
// grants window as the reader consumes, polls with a 100 ms timer when the send window is empty,
// tests FIN as SYN and never ends the readable side, so an 8 MB transfer against a hashicorp peer
// stalls; `@chainsafe/libp2p-yamux` / `@libp2p/yamux` are ESM-only, built on libp2p's stream and
// Uint8ArrayList interfaces rather than Node Duplexes, and pull in the libp2p stack. The protocol
// is small (one header, four frame types), so one module that both the agent (server) and the
// host harness (client) share is less risk than adapting either.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { ACK, encodeHeader, FrameReader, FrameType, GoAwayCode, INITIAL_WINDOW, ProtocolError, RST, SYN, type Header } from './frame.js';
import { YamuxStream, type StreamHost } from './stream.js';

export type Role = 'client' | 'server';

export interface SessionOptions {
  /**
   * Most peer-opened streams alive at once; a SYN beyond it is answered with RST (hashicorp's
   * AcceptBacklog, 256 by default, plays this part on the Go side).
   */
  acceptBacklog?: number;
  /** Largest data frame we send; smaller frames let streams interleave fairly. */
  maxFrame?: number;
  /** Called for each stream the peer opens. */
  onStream?: (stream: YamuxStream) => void;
  /** Debug lines about dropped frames and resets (the session never logs by itself). */
  log?: (message: string) => void;
  /**
   * Server only: a SYN for a stream id at or below the highest one the peer has opened means a new
   * peer started over at stream 1 on the same byte stream, not a protocol error. Only for a
   * connection that cannot report its peer going away (virtio-serial): see restartForNewPeer.
   */
  newPeerOnReusedId?: boolean;
}

export interface SessionStats {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  windowUpdatesIn: number;
  windowUpdatesOut: number;
  pingsAnswered: number;
  streamsAccepted: number;
  streamsRefused: number;
  /** Times a new peer took over the connection (newPeerOnReusedId). */
  peerRestarts: number;
}

interface PendingPing {
  sentAt: bigint;
  resolve: (rttMs: number) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * One multiplexed connection. The server side accepts the peer's streams (odd ids) and hands each
 * to onStream; the client side opens them (odd ids) with open(). Both answer pings, honour
 * go-away and end every stream when the connection ends. Events: 'stream' (YamuxStream),
 * 'close' (Error | undefined: why the session ended; undefined for a clean end), 'peer-restart'
 * ({ streamId, reset }: a new peer took over; `reset` old streams were dropped).
 */
export class YamuxSession extends EventEmitter implements StreamHost {
  readonly stats: SessionStats = {
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    windowUpdatesIn: 0,
    windowUpdatesOut: 0,
    pingsAnswered: 0,
    streamsAccepted: 0,
    streamsRefused: 0,
    peerRestarts: 0,
  };
  readonly maxFrame: number;
  private readonly streams = new Map<number, YamuxStream>();
  private readonly reader: FrameReader;
  private readonly backlog: number;
  private readonly log: (message: string) => void;
  private nextId: number;
  /** Highest stream id the peer has opened since it (re)started; 0 before the first. */
  private highestPeerId = 0;
  private readonly newPeerOnReusedId: boolean;
  private remoteGoAway = false;
  private localGoAway = false;
  private drainWaiters: (() => void)[] = [];
  private pings = new Map<number, PendingPing>();
  private nextPing = 1;
  private closedWith?: { err: Error | undefined };
  /** Resolves once the session has ended, with the reason (undefined for a clean end). */
  readonly closed: Promise<Error | undefined>;

  constructor(
    private readonly conn: Duplex,
    readonly role: Role,
    opts: SessionOptions = {},
  ) {
    super();
    this.nextId = role === 'client' ? 1 : 2;
    this.backlog = opts.acceptBacklog ?? 256;
    this.maxFrame = opts.maxFrame ?? 64 * 1024;
    this.log = opts.log ?? (() => undefined);
    this.newPeerOnReusedId = role === 'server' && opts.newPeerOnReusedId === true;
    if (opts.onStream) this.on('stream', opts.onStream);
    this.closed = new Promise((resolve) => this.once('close', resolve));
    this.reader = new FrameReader(INITIAL_WINDOW, (h, payload) => this.onFrame(h, payload));

    conn.on('data', (chunk: Buffer) => {
      if (this.closedWith) return;
      this.stats.bytesIn += chunk.length;
      try {
        this.reader.push(chunk);
      } catch (err) {
        if (err instanceof ProtocolError) this.fail(err, GoAwayCode.ProtocolError);
        else this.fail(err as Error, GoAwayCode.InternalError);
      }
    });
    conn.on('drain', () => this.flushDrainWaiters());
    conn.on('end', () =>
      this.finish(this.reader.pending > 0 ? new Error(`yamux connection ended inside a frame (${this.reader.pending} bytes left over)`) : undefined),
    );
    conn.on('error', (err) => this.finish(err));
    conn.on('close', () => this.finish(undefined));
  }

  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Number of streams currently open. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Opens a new stream (client: odd ids, server: even ids). */
  open(): YamuxStream {
    if (this.closedWith) throw Object.assign(new Error('yamux session is closed'), { code: 'ERR_STREAM_DESTROYED' });
    if (this.remoteGoAway) throw Object.assign(new Error('yamux peer sent go-away: no new streams'), { code: 'ECONNREFUSED' });
    if (this.nextId > 0xffffffff) throw new Error('yamux stream ids exhausted');
    const id = this.nextId;
    this.nextId += 2;
    const s = new YamuxStream(this, id);
    this.streams.set(id, s);
    this.writeFrame(FrameType.WindowUpdate, SYN, id, 0);
    return s;
  }

  /** Round trip of one ping, in milliseconds. */
  ping(timeoutMs = 10_000): Promise<number> {
    if (this.closedWith) return Promise.reject(new Error('yamux session is closed'));
    const id = this.nextPing;
    this.nextPing = (this.nextPing + 1) >>> 0 || 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(id);
        reject(Object.assign(new Error(`yamux ping ${id}: no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      }, timeoutMs);
      this.pings.set(id, { sentAt: process.hrtime.bigint(), resolve, reject, timer });
      this.writeFrame(FrameType.Ping, SYN, 0, id);
    });
  }

  /** Refuses further peer streams and tells the peer so; open streams carry on. */
  goAway(code = GoAwayCode.Normal): void {
    if (this.localGoAway || this.closedWith) return;
    this.localGoAway = true;
    this.writeFrame(FrameType.GoAway, 0, 0, code);
  }

  /**
   * Our own decision to end: go-away, then close the connection. Open streams are closed without
   * an error (as a server's close() does not fault its sockets); the peer sees them reset.
   */
  close(): void {
    if (this.closedWith) return;
    this.goAway();
    this.finish(undefined, false);
  }

  /** Immediate end without a go-away. */
  destroy(err?: Error): void {
    this.finish(err);
  }

  // ---- StreamHost ----

  writeFrame(type: FrameType, flags: number, streamId: number, length: number, payload?: Buffer): void {
    if (this.closedWith || this.conn.destroyed || this.conn.writableEnded) return;
    this.stats.framesOut++;
    if (type === FrameType.WindowUpdate && length > 0) this.stats.windowUpdatesOut++;
    const hdr = encodeHeader({ type, flags, streamId, length });
    this.conn.write(payload && payload.length > 0 ? Buffer.concat([hdr, payload]) : hdr);
  }

  get congested(): boolean {
    return this.conn.writableNeedDrain;
  }

  whenDrained(fn: () => void): void {
    this.drainWaiters.push(fn);
  }

  forget(stream: YamuxStream): void {
    if (this.streams.get(stream.id) === stream) this.streams.delete(stream.id);
  }

  // ---- incoming ----

  private flushDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const fn of waiters) fn();
  }

  private onFrame(h: Header, payload: Buffer | undefined): void {
    if (this.closedWith) return;
    this.stats.framesIn++;
    switch (h.type) {
      case FrameType.Ping:
        return this.onPing(h);
      case FrameType.GoAway:
        return this.onGoAway(h.length);
      default:
        return this.onStreamFrame(h, payload);
    }
  }

  private onPing(h: Header): void {
    if (h.flags & SYN) {
      this.stats.pingsAnswered++;
      this.writeFrame(FrameType.Ping, ACK, 0, h.length);
      return;
    }
    const p = this.pings.get(h.length);
    if (!p) return; // an answer after its timeout
    this.pings.delete(h.length);
    clearTimeout(p.timer);
    p.resolve(Number(process.hrtime.bigint() - p.sentAt) / 1e6);
  }

  private onGoAway(code: number): void {
    if (code === GoAwayCode.Normal) {
      this.remoteGoAway = true;
      return;
    }
    const why = code === GoAwayCode.ProtocolError ? 'protocol error' : code === GoAwayCode.InternalError ? 'internal error' : `code ${code}`;
    this.finish(new Error(`yamux peer went away: ${why}`));
  }

  private onStreamFrame(h: Header, payload: Buffer | undefined): void {
    if (h.type === FrameType.WindowUpdate) this.stats.windowUpdatesIn++;
    let stream = this.streams.get(h.streamId);
    if (h.flags & SYN) {
      if (this.newPeerOnReusedId && h.streamId <= this.highestPeerId && h.streamId % 2 === 1) {
        this.restartForNewPeer(h.streamId);
        stream = undefined;
      }
      if (stream) return this.fail(new ProtocolError(`SYN for stream ${h.streamId}, which is already open`), GoAwayCode.ProtocolError);
      const peerParity = this.role === 'server' ? 1 : 0;
      if (h.streamId % 2 !== peerParity)
        return this.fail(new ProtocolError(`peer opened stream ${h.streamId}, which has our parity`), GoAwayCode.ProtocolError);
      stream = this.accept(h.streamId);
      if (!stream) return;
    }
    if (!stream) {
      // Frames for a stream we already reset or closed: the peer had not seen our RST yet.
      if (h.type === FrameType.Data && h.length > 0) this.log(`yamux: dropped ${h.length} bytes for closed stream ${h.streamId}`);
      return;
    }
    if (h.type === FrameType.Data) {
      const problem = stream.receiveData(payload!, h.flags);
      if (problem) this.fail(new ProtocolError(problem), GoAwayCode.ProtocolError);
    } else {
      stream.receiveWindowUpdate(h.length, h.flags);
    }
  }

  /**
   * A hashicorp client numbers its streams 1, 3, 5... from the start of its session and never
   * reuses one, so a SYN at or below the highest id seen can only come from a new client. Over
   * virtio-serial a host that disconnects and reconnects faster than the guest runs is invisible
   * to it: the port reports "host closed" only as a level (read() of 0 while disconnected), and a
   * reconnect clears it before the guest reads (measured: test/guest/rpc.test.ts). The old
   * streams' host is gone, so they are destroyed without RST (an RST would name the new host's
   * stream of the same id) and their gRPC connections see ECONNRESET; the session then carries on
   * as if fresh. Limits: bytes the old streams queued before this point may still reach the new
   * host (hashicorp discards frames for ids it has not opened), and a host that died mid-frame
   * leaves the frame reader misaligned, which ends the session as a protocol error.
   */
  private restartForNewPeer(id: number): void {
    const err = Object.assign(new Error(`yamux: a new peer opened stream ${id}; the previous peer's streams are gone`), { code: 'ECONNRESET' });
    const old = [...this.streams.values()];
    this.streams.clear();
    for (const s of old) s.abort(err);
    for (const p of this.pings.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pings.clear();
    this.log(`yamux: SYN for stream ${id} after stream ${this.highestPeerId}: new peer, ${old.length} old stream(s) dropped`);
    this.highestPeerId = 0;
    // A go-away the old peer sent bound only itself; one we sent stays (we are shutting down).
    this.remoteGoAway = false;
    this.nextId = 2;
    this.stats.peerRestarts++;
    this.emit('peer-restart', { streamId: id, reset: old.length });
  }

  private accept(id: number): YamuxStream | undefined {
    if (id > this.highestPeerId) this.highestPeerId = id;
    let inbound = 0;
    for (const sid of this.streams.keys()) if (sid % 2 === (this.role === 'server' ? 1 : 0)) inbound++;
    if (this.localGoAway || inbound >= this.backlog) {
      this.stats.streamsRefused++;
      this.log(`yamux: refused stream ${id} (${this.localGoAway ? 'going away' : `backlog of ${this.backlog} streams full`})`);
      this.writeFrame(FrameType.WindowUpdate, RST, id, 0);
      return undefined;
    }
    const s = new YamuxStream(this, id);
    this.streams.set(id, s);
    this.stats.streamsAccepted++;
    this.writeFrame(FrameType.WindowUpdate, ACK, id, 0);
    this.emit('stream', s);
    return s;
  }

  /** Protocol or internal error: tell the peer why, then drop the connection. */
  private fail(err: Error, code: GoAwayCode): void {
    if (this.closedWith) return;
    this.log(err.message);
    this.writeFrame(FrameType.GoAway, 0, 0, code);
    this.conn.end();
    this.finish(err);
  }

  private finish(err: Error | undefined, faultStreams = true): void {
    if (this.closedWith) return;
    this.closedWith = { err };
    const streamErr = Object.assign(new Error(`yamux session ended${err ? `: ${err.message}` : ''}`), { code: 'ECONNRESET' });
    for (const s of [...this.streams.values()]) s.abort(faultStreams ? streamErr : undefined);
    this.streams.clear();
    for (const p of this.pings.values()) {
      clearTimeout(p.timer);
      p.reject(streamErr);
    }
    this.pings.clear();
    this.drainWaiters = [];
    // Let a queued go-away leave before the fd is released, but never wait on the peer for long.
    if (!this.conn.destroyed) {
      const timer = setTimeout(() => this.conn.destroy(), 1000);
      timer.unref();
      this.conn.once('finish', () => {
        clearTimeout(timer);
        this.conn.destroy();
      });
      if (!this.conn.writableEnded) this.conn.end();
      else if (this.conn.writableFinished) this.conn.destroy();
    }
    this.emit('close', err);
  }
}
