// grpc.Health's three messages, coded by hand with protobuf-es's wire reader and writer, so that an
// agent can answer Check and Version before (and without) building protobuf-es's descriptor
// registry, which cost ~270 ms of its boot under QEMU TCG. Field numbers: protos/health.proto;
// test/unit/hand-codecs.test.ts checks this codec against the generated one both ways.
import type { MessageInitShape } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { CheckRequest, HealthCheckResponseSchema, VersionCheckResponseSchema } from '../../../protos/gen/health_pb.js';
import type { MethodCodec } from '../rpc/method-codec.js';
import { Code, RpcError } from '../rpc/status.js';
import { expectWire, readFields } from '../rpc/proto-wire.js';

export function decodeCheckRequest(data: Uint8Array): CheckRequest {
  const req: CheckRequest = { $typeName: 'grpc.CheckRequest', service: '' };
  try {
    readFields(data, (no, wire, r) => {
      if (no !== 1) return false;
      expectWire(no, wire, WireType.LengthDelimited);
      req.service = r.string();
      return true;
    });
  } catch (err) {
    throw new RpcError(Code.INVALID_ARGUMENT, `cannot decode grpc.CheckRequest: ${(err as Error).message}`);
  }
  return req;
}

export function encodeHealthCheckResponse(res: MessageInitShape<typeof HealthCheckResponseSchema>): Uint8Array {
  const w = new BinaryWriter();
  if (res.status) w.tag(1, WireType.Varint).int32(res.status);
  return w.finish();
}

export function encodeVersionCheckResponse(res: MessageInitShape<typeof VersionCheckResponseSchema>): Uint8Array {
  const w = new BinaryWriter();
  if (res.grpcVersion) w.tag(1, WireType.LengthDelimited).string(res.grpcVersion);
  if (res.agentVersion) w.tag(2, WireType.LengthDelimited).string(res.agentVersion);
  return w.finish();
}

/** grpc.Health's methods as AgentRpcService registers them. */
export const healthMethods: readonly MethodCodec[] = [
  { name: 'Check', localName: 'check', decode: decodeCheckRequest, encode: (init) => encodeHealthCheckResponse(init as never) },
  { name: 'Version', localName: 'version', decode: decodeCheckRequest, encode: (init) => encodeVersionCheckResponse(init as never) },
];
