// A ttrpc host that sends and never reads must not make the agent buffer without bound: the agent
// stops reading that connection once its answers back up (or its calls in flight reach the cap),
// serves other connections meanwhile, and answers everything once the host reads again.
import t from 'tap';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ReadStreamRequestSchema, ReadStreamResponseSchema } from '../../protos/gen/agent_pb.js';
import { CheckRequestSchema } from '../../protos/gen/health_pb.js';
import { Code } from '../../agent/src/rpc/status.js';
import type { TtrpcConnection } from '../../agent/src/transport/ttrpc/connection.js';
import { MAX_IN_FLIGHT } from '../../agent/src/transport/ttrpc-transport.js';
import { RawTtrpc } from '../helpers/raw-ttrpc.js';
import { serveInProcess } from '../helpers/in-process.js';

const check = toBinary(CheckRequestSchema, create(CheckRequestSchema));
const CHATTY = 32 * 1024;

// A "chatty container": every ReadStdout finds 32 KiB waiting, as with a process that writes
// without pause. Counted, so the test sees how many reads the agent started.
let readsStarted = 0;
const handlers = {
  readStdout: () => {
    readsStarted++;
    return { data: Buffer.alloc(CHATTY, 0x61) };
  },
};

const tick = () => new Promise((r) => setImmediate(r));

/** Waits until the agent's connection is paused with nothing running (it cannot read on), or `done`. */
async function untilStalled(conn: () => TtrpcConnection | undefined, done: () => boolean): Promise<void> {
  for (;;) {
    const c = conn();
    if (done() || (c && c.readingPaused && c.inFlight === 0)) return;
    await tick();
  }
}

t.test('ttrpc back-pressure', async (t) => {
  const conns: TtrpcConnection[] = [];
  const srv = await serveInProcess('iorel-bp-ttrpc', handlers as never, { onTtrpcConnection: (c) => conns.push(c) });
  t.teardown(() => srv.close());

  for (const kind of ['Check', 'ReadStdout'] as const) {
    t.test(`${kind} flood without reading: the agent stops reading, then answers all`, async (t) => {
      // Far more than the kernel's and the agent's buffers together hold.
      const total = kind === 'Check' ? 60_000 : 4_000;
      const first = conns.length;
      readsStarted = 0;
      const c = await RawTtrpc.connect(srv.socket);
      t.teardown(() => c.destroy());
      c.sock.pause(); // the host never reads
      const payload = kind === 'Check' ? check : toBinary(ReadStreamRequestSchema, create(ReadStreamRequestSchema, { containerId: 'c', len: CHATTY }));
      for (let i = 0; i < total; i++) c.request(1 + 2 * i, kind === 'Check' ? 'grpc.Health' : 'grpc.AgentService', kind, payload);
      const agentSide = () => conns[first];
      await untilStalled(agentSide, () => agentSide()?.framesRead === total);
      const read = agentSide().framesRead;
      t.ok(read < total, `the agent stopped reading: ${read} of ${total} requests read`);
      t.ok(agentSide().readingPaused, 'its socket is paused');
      t.ok(c.sock.writableLength > 0, `the host's own writes are held back (${c.sock.writableLength} bytes)`);
      // At most one batch of MAX_IN_FLIGHT reads starts after answers fit in the buffers (the
      // kernel's and WRITE_HIGH_WATER, a few dozen 32 KiB answers); then nothing more starts.
      if (kind === 'ReadStdout') t.ok(readsStarted < 2 * MAX_IN_FLIGHT, `reads started: ${readsStarted} < ${2 * MAX_IN_FLIGHT}`);

      // Meanwhile another connection is served as usual.
      const other = await RawTtrpc.connect(srv.socket);
      t.teardown(() => other.destroy());
      other.request(1, 'grpc.Health', 'Check', check);
      t.match(await other.next(), { id: 1, code: Code.OK });

      // The host reads again: every answer comes, in order of the requests' ids, all OK.
      c.sock.resume();
      let bytes = 0;
      for (let i = 0; i < total; i++) {
        const a = await c.next();
        if (a.id !== 1 + 2 * i || a.code !== Code.OK) {
          t.fail(`answer ${i}: id ${a.id} code ${a.code} ${a.message}`);
          break;
        }
        if (kind === 'ReadStdout') bytes += fromBinary(ReadStreamResponseSchema, a.payload).data.length;
      }
      if (kind === 'ReadStdout') t.equal(bytes, total * CHATTY, 'every read answered in full');
      t.equal(agentSide().framesRead, total);
    });
  }
});
