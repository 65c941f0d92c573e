// A ttrpc client written only from the kata wire facts (docs/facts/kata-wire.md §a, §c):
// it imports nothing from agent/, agent-ctl/ or protos/gen, and encodes the little protobuf it needs
// by hand. If it can call the agent, a host that knows only the protocol can too.
import t from 'tap';
import net from 'node:net';
import { startAgentProcess } from '../support/agent-process.js';

// --- protobuf by hand: varints, and fields of wire type 0 (varint) and 2 (length-delimited) ---
function varint(n: bigint): number[] {
  const out: number[] = [];
  do {
    let b = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) b |= 0x80;
    out.push(b);
  } while (n > 0n);
  return out;
}
const lenField = (no: number, bytes: Uint8Array) => Buffer.from([...varint(BigInt((no << 3) | 2)), ...varint(BigInt(bytes.length)), ...bytes]);
const strField = (no: number, s: string) => lenField(no, Buffer.from(s, 'utf8'));
const intField = (no: number, v: bigint) => Buffer.from([...varint(BigInt(no << 3)), ...varint(v)]);

type Fields = Map<number, (bigint | Buffer)[]>;
function parse(buf: Buffer): Fields {
  const fields: Fields = new Map();
  let i = 0;
  const readVarint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(readVarint());
    const no = key >> 3;
    const wt = key & 7;
    let val: bigint | Buffer;
    if (wt === 0) val = readVarint();
    else if (wt === 2) {
      const len = Number(readVarint());
      val = buf.subarray(i, i + len);
      i += len;
    } else throw new Error(`wire type ${wt} not expected`);
    fields.set(no, [...(fields.get(no) ?? []), val]);
  }
  return fields;
}
const str = (f: Fields, no: number) => ((f.get(no)?.[0] as Buffer | undefined) ?? Buffer.alloc(0)).toString('utf8');
const msg = (f: Fields, no: number) => parse((f.get(no)?.[0] as Buffer | undefined) ?? Buffer.alloc(0));
const num = (f: Fields, no: number) => Number((f.get(no)?.[0] as bigint | undefined) ?? 0n);

// --- ttrpc: 10-byte header (length u32 BE, stream id u32 BE, type u8, flags u8) ---
class KataWireClient {
  private buf = Buffer.alloc(0);
  private next = 1;
  private waiting = new Map<number, (r: { code: number; message: string; payload: Buffer }) => void>();
  constructor(private readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      while (this.buf.length >= 10) {
        const len = this.buf.readUInt32BE(0);
        if (this.buf.length < 10 + len) break;
        const id = this.buf.readUInt32BE(4);
        const type = this.buf[8];
        const body = this.buf.subarray(10, 10 + len);
        this.buf = this.buf.subarray(10 + len);
        if (type !== 2) throw new Error(`frame type ${type} from the agent`);
        // Response{status=1 {code=1, message=2}, payload=2}
        const r = parse(body);
        const status = msg(r, 1);
        this.waiting.get(id)?.({ code: num(status, 1), message: str(status, 2), payload: (r.get(2)?.[0] as Buffer) ?? Buffer.alloc(0) });
        this.waiting.delete(id);
      }
    });
  }
  call(service: string, method: string, payload: Buffer, timeoutNano = 0n) {
    const id = this.next;
    this.next += 2;
    // Request{service=1, method=2, payload=3, timeout_nano=4, metadata=5}
    const req = Buffer.concat([strField(1, service), strField(2, method), lenField(3, payload), timeoutNano ? intField(4, timeoutNano) : Buffer.alloc(0)]);
    const header = Buffer.alloc(10);
    header.writeUInt32BE(req.length, 0);
    header.writeUInt32BE(id, 4);
    header[8] = 1;
    header[9] = 0;
    return new Promise<{ code: number; message: string; payload: Buffer }>((resolve) => {
      this.waiting.set(id, resolve);
      this.sock.write(Buffer.concat([header, req]));
    });
  }
}

t.test('a ttrpc client that knows only the kata wire facts can call the agent', async (t) => {
  const agent = await startAgentProcess({ env: { KATA_AGENT_LOG_LEVEL: 'info' } });
  t.teardown(() => agent.stop());
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(agent.socketPath, () => resolve(s));
    s.once('error', reject);
  });
  t.teardown(() => sock.destroy());
  const c = new KataWireClient(sock);

  // grpc.Health/Check(CheckRequest{service=1}) → HealthCheckResponse{status=1}, SERVING = 1
  const check = await c.call('grpc.Health', 'Check', strField(1, ''), 30_000_000_000n);
  t.equal(check.code, 0, check.message);
  t.equal(num(parse(check.payload), 1), 1, 'SERVING');

  // grpc.Health/Version → VersionCheckResponse{grpc_version=1, agent_version=2}
  const version = await c.call('grpc.Health', 'Version', Buffer.alloc(0));
  t.equal(version.code, 0);
  t.equal(str(parse(version.payload), 1), '0.0.1');
  t.ok(str(parse(version.payload), 2).length > 0, 'agent version present');

  // grpc.AgentService/GetGuestDetails(GuestDetailsRequest{mem_block_size=1}) → GuestDetailsResponse{agent_details=2{version=1}}
  const details = await c.call('grpc.AgentService', 'GetGuestDetails', intField(1, 1n));
  t.equal(details.code, 0, details.message);
  t.equal(str(msg(parse(details.payload), 2), 1), str(parse(version.payload), 2), 'AgentDetails.version is the agent version');

  // Unknown methods are UNIMPLEMENTED (12), several calls can be in flight.
  const [a, b] = await Promise.all([c.call('grpc.AgentService', 'NoSuchMethod', Buffer.alloc(0)), c.call('grpc.Health', 'Check', Buffer.alloc(0))]);
  t.equal(a.code, 12);
  t.equal(b.code, 0);
});
