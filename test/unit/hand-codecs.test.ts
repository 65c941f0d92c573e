// The hand-coded messages (ttrpc envelope, grpc.Health) must be byte-for-byte what the generated
// protobuf-es code makes of the same values, and read whatever it writes, unknown fields included.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import t from 'tap';
import { decodeCheckRequest, encodeHealthCheckResponse, encodeVersionCheckResponse } from '../../agent/src/health/wire.js';
import { Code, RpcError } from '../../agent/src/rpc/status.js';
import { decodeRequest, encodeResponse } from '../../agent/src/transport/ttrpc/envelope.js';
import { CheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus, VersionCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { RequestSchema, ResponseSchema } from '../../protos/gen/ttrpc_pb.js';

// A deterministic spread of values: empty, ASCII, multi-byte UTF-8, long.
const strings = ['', 'grpc.AgentService', 'Läuft – 実行中 ✓', 'x'.repeat(300)];
const payloads = [new Uint8Array(0), Uint8Array.of(0, 1, 255), new Uint8Array(70_000).fill(7)];
const timeouts = [0n, 1n, 5_000_000_000n, 9_223_372_036_854_775_807n, -1n];

/** Appends a field no known message here has (number 99), as a newer peer might send. */
function withUnknown(bytes: Uint8Array): Uint8Array {
  const extra = new BinaryWriter().tag(99, WireType.LengthDelimited).string('from a newer peer').tag(98, WireType.Varint).uint64(12345n).finish();
  return Uint8Array.from([...bytes, ...extra]);
}

t.test('ttrpc.Request decodes as the generated code does', async (t) => {
  let n = 0;
  for (const service of strings)
    for (const payload of payloads)
      for (const timeoutNano of timeouts) {
        const metadata = service
          ? [
              { key: service, value: 'v' },
              { key: 'k2', value: '' },
            ]
          : [];
        const bytes = toBinary(RequestSchema, create(RequestSchema, { service, method: service.slice(0, 5), payload, timeoutNano, metadata }));
        for (const b of [bytes, withUnknown(bytes)]) {
          const ours = decodeRequest(b);
          const theirs = fromBinary(RequestSchema, b);
          if (ours.service !== theirs.service || ours.method !== theirs.method || ours.timeoutNano !== theirs.timeoutNano)
            t.fail(`scalar fields differ for ${JSON.stringify({ service, timeoutNano: String(timeoutNano) })}`);
          if (Buffer.compare(Buffer.from(ours.payload), Buffer.from(theirs.payload)) !== 0) t.fail('payload differs');
          t.same(
            ours.metadata,
            theirs.metadata.map(({ key, value }) => ({ key, value })),
          );
          n++;
        }
      }
  t.equal(n, strings.length * payloads.length * timeouts.length * 2);
});

t.test('ttrpc.Request: bad bytes are refused, not misread', async (t) => {
  t.throws(() => decodeRequest(Uint8Array.of(0x0a, 0x05, 0x61)), 'truncated string');
  t.throws(() => decodeRequest(Uint8Array.of(0x08, 0x01)), /field 1: wire type Varint, expected LengthDelimited/);
  t.throws(() => decodeRequest(Uint8Array.of(0x22, 0x00)), /field 4: wire type LengthDelimited, expected Varint/);
  t.throws(() => decodeRequest(Uint8Array.of(0x07)), 'illegal wire type');
  t.throws(() => decodeRequest(Uint8Array.of(0x2a, 0x02, 0x08, 0x01)), /field 1: wire type Varint/, 'bad KeyValue');
});

t.test('ttrpc.Response encodes as the generated code does', async (t) => {
  for (const code of [0, Code.NOT_FOUND, Code.INVALID_ARGUMENT, Code.UNAUTHENTICATED])
    for (const message of strings)
      for (const payload of payloads) {
        const ours = encodeResponse(code, message, payload);
        const theirs = toBinary(ResponseSchema, create(ResponseSchema, { status: { code, message }, payload }));
        if (Buffer.compare(Buffer.from(ours), Buffer.from(theirs)) !== 0)
          t.fail(`differs for code ${code}, message ${message.slice(0, 20)}, ${payload.length} bytes`);
        const back = fromBinary(ResponseSchema, ours);
        t.ok(back.status !== undefined, 'status present even when OK');
        t.equal(back.status?.code, code);
      }
});

t.test('grpc.Health messages match the generated code', async (t) => {
  for (const service of strings) {
    const bytes = toBinary(CheckRequestSchema, create(CheckRequestSchema, { service }));
    t.same(decodeCheckRequest(withUnknown(bytes)), fromBinary(CheckRequestSchema, bytes));
  }
  for (const status of [HealthCheckResponse_ServingStatus.UNKNOWN, HealthCheckResponse_ServingStatus.SERVING, HealthCheckResponse_ServingStatus.NOT_SERVING]) {
    t.same([...encodeHealthCheckResponse({ status })], [...toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status }))]);
  }
  for (const grpcVersion of strings)
    for (const agentVersion of ['', '0.1.0']) {
      t.same(
        [...encodeVersionCheckResponse({ grpcVersion, agentVersion })],
        [...toBinary(VersionCheckResponseSchema, create(VersionCheckResponseSchema, { grpcVersion, agentVersion }))],
      );
    }
  const err = (() => {
    try {
      decodeCheckRequest(Uint8Array.of(0x08, 0x01));
    } catch (e) {
      return e;
    }
  })();
  t.ok(err instanceof RpcError && err.code === Code.INVALID_ARGUMENT, 'malformed CheckRequest is INVALID_ARGUMENT');
});
