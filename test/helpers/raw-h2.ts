// A deliberately low-level gRPC-over-HTTP/2 peer for tests: it writes the frames of unary calls by
// hand and reads only when told to, so a test can play a host that never reads its socket, or one
// that vanishes right after a request or in the middle of an answer. HPACK is written with literal
// fields only (no dynamic table, no Huffman), which every decoder must accept (RFC 7541 §6.2.2).
import net from 'node:net';
import { HTTP2_PREFACE } from '../../agent/src/transport/wire-router.js';

export const enum H2Type {
  Data = 0,
  Headers = 1,
  RstStream = 3,
  Settings = 4,
  GoAway = 7,
  WindowUpdate = 8,
}
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;

export interface H2Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  if (b.length > 126) throw new Error(`header value too long for this encoder: ${s}`);
  return Buffer.concat([Buffer.of(b.length), b]);
}

/** HEADERS block of a unary gRPC request: static-table names where they exist, literal values. */
function requestHeaders(path: string): Buffer {
  return Buffer.concat([
    Buffer.of(0x83), // :method POST (static 3)
    Buffer.of(0x86), // :scheme http (static 6)
    Buffer.of(0x04),
    hpackString(path), // :path (static 4), literal value, not indexed
    Buffer.of(0x01),
    hpackString('localhost'), // :authority (static 1)
    Buffer.of(0x0f, 0x10),
    hpackString('application/grpc'), // content-type (static 31)
    Buffer.of(0x00),
    hpackString('te'),
    hpackString('trailers'),
  ]);
}

export class RawH2 {
  readonly frames: H2Frame[] = [];
  private bytes = Buffer.alloc(0);
  private waiter?: () => void;
  ended = false;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.bytes = Buffer.concat([this.bytes, chunk]);
      while (this.bytes.length >= 9) {
        const len = this.bytes.readUIntBE(0, 3);
        if (this.bytes.length < 9 + len) break;
        this.frames.push({
          type: this.bytes[3],
          flags: this.bytes[4],
          streamId: this.bytes.readUInt32BE(5) & 0x7fffffff,
          payload: this.bytes.subarray(9, 9 + len),
        });
        this.bytes = this.bytes.subarray(9 + len);
      }
      this.waiter?.();
    });
    sock.on('error', () => undefined);
    const done = () => {
      this.ended = true;
      this.waiter?.();
    };
    sock.once('end', done);
    sock.once('close', done);
  }

  /** Connects and sends the client preface and an empty SETTINGS frame (default windows). */
  static connect(path: string): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path });
      s.once('connect', () => {
        const c = new RawH2(s);
        s.write(Buffer.concat([HTTP2_PREFACE, frame(H2Type.Settings, 0, 0, Buffer.alloc(0))]));
        resolve(c);
      });
      s.once('error', reject);
    });
  }

  /** Waits for the server's SETTINGS and acknowledges them, as every client must. */
  async handshake(): Promise<void> {
    await this.until((f) => f.type === H2Type.Settings && !(f.flags & ACK));
    this.sock.write(frame(H2Type.Settings, ACK, 0, Buffer.alloc(0)));
  }

  /** The frames of one unary call (HEADERS, then the length-prefixed message with END_STREAM). */
  static call(streamId: number, path: string, message: Uint8Array): Buffer {
    const msg = Buffer.alloc(5 + message.length);
    msg.writeUInt32BE(message.length, 1);
    msg.set(message, 5);
    return Buffer.concat([frame(H2Type.Headers, END_HEADERS, streamId, requestHeaders(path)), frame(H2Type.Data, END_STREAM, streamId, msg)]);
  }

  /** Writes one unary call; false when the socket's write buffer is full (the agent is not reading). */
  request(streamId: number, path: string, message: Uint8Array): boolean {
    return this.sock.write(RawH2.call(streamId, path, message));
  }

  /** The first received frame (from the start) that matches; waits for it, rejects once the connection ends. */
  async until(match: (f: H2Frame) => boolean): Promise<H2Frame> {
    for (let seen = 0; ;) {
      for (; seen < this.frames.length; seen++) if (match(this.frames[seen])) return this.frames[seen];
      if (this.ended) throw new Error('connection ended before the awaited frame');
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  destroy(): void {
    this.sock.destroy();
  }
}
