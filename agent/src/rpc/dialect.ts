import type { DescMessage, Message } from '@bufbuild/protobuf';
import type { LegacyFields } from './handlers.js';
import { agentProtos, compat1xProtos, protobufRuntime } from './lazy-protos.js';
import { Code, RpcError } from './status.js';

/**
 * Everything that differs between the kata wire generations, decided once per connection by the
 * framing it arrived on (gRPC = 1.x, ttrpc = 2.x/3.x) so handlers never test the generation.
 */
export interface Dialect {
  readonly name: 'kata-1.x' | 'kata-3.x';
  /** Decodes a request; may lift generation-only fields into `legacy`. */
  decode(schema: DescMessage, bytes: Uint8Array, legacy: LegacyFields): Message;
  /**
   * The error ReadStdout/ReadStderr fail with once every writer has closed (`what` names the stream,
   * process and container). Both generations end a stream with an RPC error, never an OK answer with
   * empty data: kata's Go runtime counts any OK answer as data read, so an empty one made the shim's
   * copy loop spin and it never reached WaitProcess.
   */
  endOfStream(what: string): RpcError;
  /**
   * Whether SignalProcess with exec id "" signals every process of the container, whatever the
   * signal (kata 1.x), rather than only its init process (3.x, where only SIGKILL reaches them all).
   */
  readonly signalAllForEmptyExecId: boolean;
}

function decodeStrict(schema: DescMessage, bytes: Uint8Array): Message {
  try {
    return protobufRuntime().fromBinary(schema, bytes);
  } catch (err) {
    throw new RpcError(Code.INVALID_ARGUMENT, `cannot decode ${schema.typeName}: ${(err as Error).message}`);
  }
}

export const dialect3x: Dialect = {
  name: 'kata-3.x',
  decode: (schema, bytes) => decodeStrict(schema, bytes),
  // The Rust agent fails the read with an INTERNAL status; 3.x hosts stop copying on any error.
  endOfStream: (what) => new RpcError(Code.INTERNAL, `EOF: ${what} has ended`, true),
  signalAllForEmptyExecId: false,
};

export const dialect1x: Dialect = {
  name: 'kata-1.x',
  decode(schema, bytes, legacy) {
    if (schema.typeName !== 'grpc.CreateContainerRequest') return decodeStrict(schema, bytes);
    const { fromJson, toJson } = protobufRuntime();
    const { CreateContainerRequestSchema } = agentProtos();
    const CreateContainerRequest1xSchema = compat1xProtos().CreateContainerRequestSchema;
    // 1.x numbers field 8 (agent_pidns) and the seccomp syscall lists differently. Field names are the
    // same in both, so the 1.x message converts to the 3.x one through its JSON form.
    const old = decodeStrict(CreateContainerRequest1xSchema, bytes) as Message & { agentPidns: boolean };
    legacy.agentPidns = old.agentPidns;
    const json = toJson(CreateContainerRequest1xSchema, old as never, { useProtoFieldName: true }) as Record<string, unknown>;
    delete json.agent_pidns;
    return fromJson(CreateContainerRequestSchema, json as never, { ignoreUnknownFields: false });
  },
  // kata 1.x hosts compare the message with io.EOF's text: it must be exactly "EOF".
  endOfStream: () => new RpcError(Code.UNKNOWN, 'EOF', true),
  signalAllForEmptyExecId: true,
};
