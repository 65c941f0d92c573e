import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { RequestSchema, ResponseSchema, type Request } from '../../../../protos/gen/ttrpc_pb.js';

export type { Request };

/** Throws the protobuf decoder's error for bytes that are not a ttrpc.Request. */
export function decodeRequest(data: Uint8Array): Request {
  return fromBinary(RequestSchema, data);
}

export function encodeResponse(code: number, message: string, payload: Uint8Array): Uint8Array {
  // A successful Response still carries a Status (code 0): Go and Rust ttrpc clients read it.
  return toBinary(ResponseSchema, create(ResponseSchema, { status: { code, message }, payload }));
}
