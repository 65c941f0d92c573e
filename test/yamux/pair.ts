// Two ends of a real unix-socket connection, so yamux runs over the same kind of libuv stream the
// agent uses for a virtio-serial port.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface SocketPair {
  server: net.Socket;
  client: net.Socket;
  close(): void;
}

export async function socketPair(): Promise<SocketPair> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yamux-test-'));
  const file = path.join(dir, `s-${crypto.randomUUID()}.sock`);
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(file, resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
  const client = net.connect(file);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const server = await accepted;
  listener.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    server,
    client,
    close() {
      server.destroy();
      client.destroy();
    },
  };
}

/** Resolves with the first value of an event. */
export function once<T = unknown>(emitter: NodeJS.EventEmitter, event: string): Promise<T> {
  return new Promise((resolve) => emitter.once(event, resolve as (v: T) => void));
}

/** Reads a stream to its end without destroying it (for-await would, and so close the write side too). */
export function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
    stream.resume(); // a stream paused by the test would otherwise never flow
  });
}

/** Resolves once a stream has emitted 'close' (at once if it already has). */
export function whenClosed(stream: NodeJS.EventEmitter & { closed: boolean }): Promise<void> {
  return stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()));
}
