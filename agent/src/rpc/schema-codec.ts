// Method codecs driven by protobuf-es descriptors: the agent service's ~45 RPCs and their messages.
// Loaded with those descriptors on the service's first call (rpc/lazy-protos.ts says why).
import { create, toBinary, type DescService } from '@bufbuild/protobuf';
import type { MethodCodec } from './method-codec.js';

export function schemaCodecs(service: DescService): MethodCodec[] {
  return service.methods.map((m) => ({
    name: m.name,
    localName: m.localName,
    decode: (payload, dialect, legacy) => dialect.decode(m.input, payload, legacy),
    encode: (init) => toBinary(m.output, create(m.output, init as never)),
  }));
}
