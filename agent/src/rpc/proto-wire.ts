// Field-by-field decoding on protobuf-es's wire reader, for the few messages coded by hand because
// they must be answered before the descriptor registry exists (ttrpc envelope, grpc.Health).
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

/** Reads one message with `onField` for each field; unknown fields are skipped, as protobuf wants. */
export function readFields(data: Uint8Array, onField: (no: number, wire: WireType, r: BinaryReader) => boolean): void {
  const r = new BinaryReader(data);
  while (r.pos < r.len) {
    const [no, wire] = r.tag();
    if (!onField(no, wire, r)) r.skip(wire, no);
  }
}

/** Throws unless a known field arrived with the wire type its declaration gives it. */
export function expectWire(no: number, got: WireType, want: WireType): void {
  if (got !== want) throw new Error(`field ${no}: wire type ${WireType[got] ?? got}, expected ${WireType[want]}`);
}
