// The ttrpc envelope (ttrpc.Request in, ttrpc.Response out), coded field by field with protobuf-es's
// wire reader and writer. Going through generated descriptors instead would make every agent start
// build protobuf-es's descriptor registry (descriptor.proto bootstrap and all) before it can answer
// its first call: ~270 ms of the agent's boot under QEMU TCG. Field numbers: protos/ttrpc.proto;
// test/unit/hand-codecs.test.ts checks this codec against the generated one both ways.
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { expectWire, readFields } from '../../rpc/proto-wire.js';

export interface Request {
  service: string;
  method: string;
  payload: Uint8Array;
  /** Deadline relative to receipt; 0 means none. */
  timeoutNano: bigint;
  metadata: { key: string; value: string }[];
}

function decodeKeyValue(data: Uint8Array): { key: string; value: string } {
  const kv = { key: '', value: '' };
  readFields(data, (no, wire, r) => {
    if (no !== 1 && no !== 2) return false;
    expectWire(no, wire, WireType.LengthDelimited);
    if (no === 1) kv.key = r.string();
    else kv.value = r.string();
    return true;
  });
  return kv;
}

/** Throws the reader's error for bytes that are not a ttrpc.Request. */
export function decodeRequest(data: Uint8Array): Request {
  const req: Request = { service: '', method: '', payload: new Uint8Array(0), timeoutNano: 0n, metadata: [] };
  readFields(data, (no, wire, r) => {
    switch (no) {
      case 1:
        expectWire(no, wire, WireType.LengthDelimited);
        req.service = r.string();
        return true;
      case 2:
        expectWire(no, wire, WireType.LengthDelimited);
        req.method = r.string();
        return true;
      case 3:
        expectWire(no, wire, WireType.LengthDelimited);
        req.payload = r.bytes();
        return true;
      case 4:
        expectWire(no, wire, WireType.Varint);
        req.timeoutNano = BigInt(r.int64());
        return true;
      case 5:
        expectWire(no, wire, WireType.LengthDelimited);
        req.metadata.push(decodeKeyValue(r.bytes()));
        return true;
      default:
        return false;
    }
  });
  return req;
}

export function encodeResponse(code: number, message: string, payload: Uint8Array): Uint8Array {
  const w = new BinaryWriter();
  // A successful Response still carries a Status (code 0): Go and Rust ttrpc clients read it.
  w.tag(1, WireType.LengthDelimited).fork();
  if (code !== 0) w.tag(1, WireType.Varint).int32(code);
  if (message) w.tag(2, WireType.LengthDelimited).string(message);
  w.join();
  if (payload.length > 0) w.tag(2, WireType.LengthDelimited).bytes(payload);
  return w.finish();
}
