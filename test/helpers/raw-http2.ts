// HTTP/2 as a host sends it, by hand: frames for the malformed-connection tests, and a gRPC unary
// call through Node's own http2 client (which, unlike the server side, sends any `:authority`).
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(type: number, flags: number, streamId: number, payload: Buffer | number[] = []): Buffer {
  const body = Buffer.from(payload);
  const h = Buffer.alloc(9);
  h.writeUIntBE(body.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, body]);
}

export const EMPTY_SETTINGS = frame(0x4, 0, 0);

/** Connection openings that make the server end the HTTP/2 session with a connection error. */
export const badOpenings: Record<string, Buffer> = {
  // HEADERS, END_STREAM|END_HEADERS, on stream 1 whose block is no valid HPACK (issue 18 item 1).
  'bad HPACK block': Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(0x1, 0x5, 1, [0xff, 0xff, 0xff, 0xff])]),
  'SETTINGS of 5 bytes': Buffer.concat([PREFACE, frame(0x4, 0, 0, Buffer.alloc(5))]),
  'DATA on stream 0': Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(0x0, 0, 0, Buffer.from('abc'))]),
  'DATA on an idle stream': Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(0x0, 0x1, 1, Buffer.from('abc'))]),
  'HEADERS padded past its end': Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(0x1, 0x0c, 1, [9, 0x82])]),
  'CONTINUATION without HEADERS': Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(0x9, 0x4, 1, [0x82])]),
};

export interface UnaryAnswer {
  status: number | undefined;
  grpcStatus: string | undefined;
  rstCode: number;
  payload: Buffer;
  /** What the server received as `:authority`, when it echoes it (tests' own servers). */
  headers: http2.IncomingHttpHeaders;
}

/** One gRPC unary call on a new HTTP/2 connection over `conn`, with the given `:authority`. */
export async function grpcUnary(conn: () => Duplex, method: string, request: Buffer, authority: string, timeoutMs = 10_000): Promise<UnaryAnswer> {
  const session = http2.connect('http://agent', { createConnection: conn });
  session.on('error', () => undefined); // the call's outcome says it
  try {
    const framed = Buffer.alloc(5 + request.length);
    framed.writeUInt32BE(request.length, 1);
    request.copy(framed, 5);
    const req = session.request({
      ':method': 'POST',
      ':path': method,
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    req.end(framed);
    return await new Promise<UnaryAnswer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${method}: no answer in ${timeoutMs} ms`)), timeoutMs);
      const chunks: Buffer[] = [];
      let headers: http2.IncomingHttpHeaders = {};
      let grpcStatus: string | undefined;
      req.on('response', (h) => {
        headers = h;
        grpcStatus = h['grpc-status'] as string | undefined;
      });
      req.on('trailers', (h) => (grpcStatus = h['grpc-status'] as string | undefined));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('error', () => undefined);
      req.on('close', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        resolve({ status: headers[':status'] as number | undefined, grpcStatus, rstCode: req.rstCode ?? 0, payload: body.subarray(5), headers });
      });
    });
  } finally {
    session.close();
  }
}
