import type { Message } from '@bufbuild/protobuf';
import type { Dialect } from './dialect.js';
import type { LegacyFields } from './handlers.js';

/** How one RPC's request and response cross the wire, whatever carries them. */
export interface MethodCodec {
  /** "CreateContainer", as on the wire. */
  readonly name: string;
  /** The handler's key: "createContainer". */
  readonly localName: string;
  /** Throws RpcError(INVALID_ARGUMENT) for bytes that are not the request message. */
  decode(payload: Uint8Array, dialect: Dialect, legacy: LegacyFields): Message;
  /** The response from what the handler returned (a message init shape). */
  encode(init: unknown): Uint8Array;
}
