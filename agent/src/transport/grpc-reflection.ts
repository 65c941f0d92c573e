import type * as grpc from '@grpc/grpc-js';
import type { DescFile } from '@bufbuild/protobuf';
import type * as Wkt from '@bufbuild/protobuf/wkt';
import { protobufRuntime } from '../rpc/lazy-protos.js';
import { serviceDescs } from '../rpc/service.js';

/** All files our services need, dependencies first, as gRPC reflection wants them. */
function descriptorFiles(): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    f.dependencies.forEach(visit);
    seen.set(f.name, f);
  };
  serviceDescs().forEach((s) => visit(s.file));
  return [...seen.values()];
}

interface Captured {
  definition: grpc.ServiceDefinition;
  handlers: grpc.UntypedServiceImplementation;
}

/**
 * gRPC server reflection (v1 and v1alpha) for generic tools. @grpc/reflection parses its own protos
 * with protobufjs, which costs ~60 ms and several MB at start-up for a debugging aid the host never
 * uses, so both services are registered with stand-ins that load it on the first reflection call.
 */
export function addLazyReflection(server: grpc.Server): void {
  let loaded: Captured[] | undefined;
  const load = (): Captured[] => {
    if (loaded) return loaded;
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- reflection loads on its first request
    const { ReflectionService } = require('@grpc/reflection') as typeof import('@grpc/reflection');
    // Required here, not imported: the well-known types build descriptor.proto's descriptors, ~0.4 s
    // of a host's first gRPC connection under TCG, for a debugging aid.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the well-known types load on the first reflection request
    const { FileDescriptorProtoSchema } = require('@bufbuild/protobuf/wkt') as typeof Wkt;
    const { toBinary } = protobufRuntime();
    const fileDescriptorProtos = descriptorFiles().map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
    const pkg = Object.fromEntries(serviceDescs().map((s) => [s.typeName, { fileDescriptorProtos }]));
    const captured: Captured[] = [];
    const recorder = {
      addService: (definition: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation) => captured.push({ definition, handlers }),
    };
    new ReflectionService(pkg as never).addToServer(recorder as unknown as grpc.Server);
    loaded = captured;
    return captured;
  };
  // @grpc/reflection registers v1 first, then v1alpha.
  ['v1', 'v1alpha'].forEach((version, i) => {
    const method = () => load()[i].definition.ServerReflectionInfo;
    const definition: grpc.ServiceDefinition = {
      ServerReflectionInfo: {
        path: `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
        requestStream: true,
        responseStream: true,
        requestSerialize: (v: unknown) => method().requestSerialize(v),
        requestDeserialize: (b: Buffer) => method().requestDeserialize(b),
        responseSerialize: (v: unknown) => method().responseSerialize(v),
        responseDeserialize: (b: Buffer) => method().responseDeserialize(b),
      },
    };
    server.addService(definition, {
      ServerReflectionInfo: (stream: grpc.ServerDuplexStream<unknown, unknown>) =>
        (load()[i].handlers.ServerReflectionInfo as grpc.handleBidiStreamingCall<unknown, unknown>)(stream),
    });
  });
}
