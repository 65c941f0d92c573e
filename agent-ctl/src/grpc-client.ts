// A minimal unary gRPC client on node:http2. grpc-js's client only dials addresses it resolves
// itself; kata hosts reach the agent over vsock, hybrid-vsock and yamux streams, so this client
// takes any already-open Duplex instead. Unary calls need only the length-prefixed message and the
// grpc-status trailer.
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { Code } from '../../agent/src/rpc/status.js';

export class CallError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${Code[code] ?? code}: ${details}`);
  }
}

export interface RpcClient {
  call(service: string, method: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  close(): void;
}

export class GrpcClient implements RpcClient {
  private readonly session: http2.ClientHttp2Session;

  /**
   * `authority`: the `:authority` each request carries (default "localhost"); kata 1.x hosts send their
   * whole dial target, e.g. `unix:////run/vc/sbs/<id>/kata.sock`.
   */
  constructor(
    stream: Duplex,
    private readonly authority?: string,
  ) {
    this.session = http2.connect('http://localhost', { createConnection: () => stream });
    this.session.on('error', () => undefined);
  }

  call(service: string, method: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const req = this.session.request({
        ':method': 'POST',
        ':path': `/${service}/${method}`,
        ...(this.authority ? { ':authority': this.authority } : {}),
        'content-type': 'application/grpc+proto',
        te: 'trailers',
        'grpc-timeout': `${Math.max(1, Math.ceil(timeoutMs))}m`,
      });
      const chunks: Buffer[] = [];
      let status: number | undefined;
      let message = '';
      const timer = setTimeout(() => {
        req.close(http2.constants.NGHTTP2_CANCEL);
        reject(new CallError(Code.DEADLINE_EXCEEDED, `${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs + 1000);
      const takeStatus = (h: http2.IncomingHttpHeaders) => {
        if (h['grpc-status'] !== undefined) {
          status = Number(h['grpc-status']);
          message = decodeURIComponent(String(h['grpc-message'] ?? ''));
        }
      };
      req.on('response', takeStatus);
      req.on('trailers', takeStatus);
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(new CallError(Code.UNAVAILABLE, err.message));
      });
      req.on('close', () => {
        clearTimeout(timer);
        if (status === undefined) return reject(new CallError(Code.UNAVAILABLE, `${method}: stream closed without a status`));
        if (status !== 0) return reject(new CallError(status, message));
        const body = Buffer.concat(chunks);
        if (body.length < 5) return reject(new CallError(Code.INTERNAL, `${method}: response has no message`));
        resolve(body.subarray(5, 5 + body.readUInt32BE(1)));
      });
      const frame = Buffer.alloc(5 + request.length);
      frame.writeUInt32BE(request.length, 1);
      frame.set(request, 5);
      req.end(frame);
    });
  }

  close(): void {
    this.session.close();
  }
}
