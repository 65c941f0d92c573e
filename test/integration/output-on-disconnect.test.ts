// A host that disconnects while a ReadStdout is in flight loses no output: the bytes of an answer
// that never reached it go back to the front of the stream for its next read (kata agent#125:
// truncated output). Drops of both kinds, right after sending the request and in the middle of a
// large answer, on both wires; the concatenated reads must equal what the process wrote.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ReadStreamRequestSchema, ReadStreamResponseSchema } from '../../protos/gen/agent_pb.js';
import { GrpcClient } from '../../agent-ctl/src/grpc-client.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { ioHandlers } from '../../agent/src/io/handlers.js';
import { createProcessIO, type ProcessIO } from '../../agent/src/io/process-io.js';
import { libc } from '../../agent/src/linux/index.js';
import { encodeFrame, FrameType, HEADER_LENGTH } from '../../agent/src/transport/ttrpc/frame.js';
import { RequestSchema } from '../../protos/gen/ttrpc_pb.js';
import { serveInProcess } from '../helpers/in-process.js';
import { H2Type, RawH2 } from '../helpers/raw-h2.js';
import { RawTtrpc } from '../helpers/raw-ttrpc.js';
import { isEndOfStream, readToEnd } from '../support/end-of-stream.js';
import { spawnWithIO } from '../io/spawn-with-io.js';

const SIZE = 5_000_000;
const BIG = 1 << 20;
// Every 4-byte word holds its own index, so a lost, doubled or misplaced byte shows.
const pattern = Buffer.alloc(SIZE);
for (let i = 0; i + 4 <= SIZE; i += 4) pattern.writeUInt32BE(i / 4, i);

const readReq = (len: number) => toBinary(ReadStreamRequestSchema, create(ReadStreamRequestSchema, { containerId: 'c', len }));
const ttrpcFrame = (id: number, len: number) =>
  encodeFrame(
    id,
    FrameType.Request,
    0,
    toBinary(RequestSchema, create(RequestSchema, { service: 'grpc.AgentService', method: 'ReadStdout', payload: readReq(len) })),
  );
const tick = () => new Promise((r) => setImmediate(r));

interface Wire {
  /** One ReadStdout on a fresh connection; undefined at end of stream. */
  read(len: number): Promise<Uint8Array | undefined>;
  /** Sends a ReadStdout and closes the connection at once. */
  dropAfterRequest(len: number): Promise<void>;
  /** Sends a ReadStdout of `len` and closes once the first part of its answer arrived. */
  dropMidAnswer(len: number): Promise<void>;
}

function ttrpcWire(socket: string): Wire {
  return {
    async read(len) {
      const c = await RawTtrpc.connect(socket);
      try {
        c.request(1, 'grpc.AgentService', 'ReadStdout', readReq(len));
        const a = await c.next();
        if (a.code === 0) return fromBinary(ReadStreamResponseSchema, a.payload).data;
        if (isEndOfStream(a)) return undefined;
        throw new Error(`ReadStdout: code ${a.code} ${a.message}`);
      } finally {
        c.destroy();
      }
    },
    async dropAfterRequest(len) {
      const s = net.connect({ path: socket });
      await new Promise((r) => s.once('connect', r));
      s.on('error', () => undefined);
      s.write(ttrpcFrame(1, len));
      s.destroy();
    },
    async dropMidAnswer(len) {
      const s = net.connect({ path: socket });
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      s.write(ttrpcFrame(1, len));
      // Closed inside the first 'data' callback, so the socket reads nothing after that chunk.
      const first: Buffer = await new Promise((r) =>
        s.once('data', (chunk: Buffer) => {
          s.destroy();
          r(chunk);
        }),
      );
      // A socket read takes at most 64 KiB, so the 1 MiB frame cannot have come whole.
      if (first.length >= HEADER_LENGTH + first.readUInt32BE(0)) throw new Error('the whole answer arrived in one read');
    },
  };
}

function grpcWire(socket: string): Wire {
  const path = '/grpc.AgentService/ReadStdout';
  return {
    async read(len) {
      const client = new GrpcClient(await connect(`unix://${socket}`, 5000));
      try {
        return fromBinary(ReadStreamResponseSchema, await client.call('grpc.AgentService', 'ReadStdout', readReq(len), 30_000)).data;
      } catch (err) {
        if (isEndOfStream(err)) return undefined;
        throw err;
      } finally {
        client.close();
      }
    },
    async dropAfterRequest(len) {
      const c = await RawH2.connect(socket);
      c.request(1, path, readReq(len));
      c.destroy();
    },
    async dropMidAnswer(len) {
      const c = await RawH2.connect(socket);
      await c.handshake();
      c.request(1, path, readReq(len));
      // HTTP/2 flow control: without our WINDOW_UPDATEs at most 64 KiB of the answer can come.
      await c.until((f) => f.type === H2Type.Data && f.streamId === 1);
      c.destroy();
    },
  };
}

for (const [name, makeWire] of [
  ['ttrpc', ttrpcWire],
  ['gRPC', grpcWire],
] as const) {
  // The timeout only turns "an answer was lost and never put back" into a failure instead of a hang.
  t.test(`${name}: 5 MB read through 30 dropped connections arrive exactly`, { timeout: 60_000 }, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iorel-drop-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'pattern'), pattern);
    // A queue large enough for all of it, so the process has written everything before the reads
    // begin, and each 1 MiB read finds 1 MiB waiting.
    const io = createProcessIO({ terminal: false, pipeSize: 0, libc: libc(), highWater: 8 << 20 });
    let unreads = 0;
    const watched = {
      read: (s: 'stdout', len: number, signal: AbortSignal) => io.read(s, len, signal),
      unread: (s: 'stdout', data: Uint8Array) => {
        unreads++;
        io.unread(s, data);
      },
    } as unknown as ProcessIO;
    const srv = await serveInProcess(
      `iorel-drop-${name}`,
      ioHandlers(() => watched),
    );
    t.teardown(() => srv.close());
    const proc = spawnWithIO(t, io, `cat ${dir}/pattern`);
    t.equal(await proc.exited, 0);

    const wire = makeWire(srv.socket);
    const got: Uint8Array[] = [];
    // The answer of each dropped call was taken from the queue and must come back.
    const untilUnread = async (before: number) => {
      while (unreads === before) await tick();
    };
    for (let i = 0; i < 5; i++) {
      const before = unreads;
      await wire.dropMidAnswer(BIG);
      await untilUnread(before);
      got.push((await wire.read(1000))!);
    }
    for (let i = 0; i < 25; i++) {
      const before = unreads;
      await wire.dropAfterRequest(1000);
      await untilUnread(before);
      got.push((await wire.read(1000))!);
    }
    t.equal(unreads, 30, 'every dropped answer was put back');
    got.push(
      await readToEnd(async () => {
        const data = await wire.read(BIG);
        if (data === undefined) throw Object.assign(new Error('EOF'), { code: 2, details: 'EOF' });
        return { data };
      }, 'stdout'),
    );
    const all = Buffer.concat(got);
    t.equal(all.length, SIZE, 'no byte lost or doubled');
    t.ok(all.equals(pattern), 'the output is the pattern, in order');
  });
}
