import type { DescMessage, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import type { Logger } from '../log/logger.js';
import type { Dialect } from './dialect.js';

/** What a handler knows about the call it serves: nothing about frames, sockets or encodings. */
export interface CallContext {
  /** "CreateContainer", as on the wire. */
  readonly method: string;
  readonly dialect: Dialect;
  /** Aborted when the host disconnects, cancels, or the call's deadline passes. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Request fields that only an older wire generation carries (see Dialect.decode). */
  readonly legacy: LegacyFields;
  /**
   * Asks to be told if this call's successful answer never reached the host (the connection went
   * away, the call was cancelled before its answer was written, the write failed), so a handler
   * whose answer took something out of a queue can put it back. Never called for an error answer.
   */
  readonly onUndelivered: (fn: () => void) => void;
  /**
   * Runs `fn` once this call's answer has been written (or is known lost): for what must happen only
   * after the host has its answer, like powering the VM off after DestroySandbox.
   */
  readonly afterAnswer: (fn: () => void) => void;
}

export interface LegacyFields {
  /** kata 1.x CreateContainerRequest.agent_pidns: run the container in the agent's pid namespace. */
  agentPidns?: boolean;
}

type MethodsOf<S> = S extends GenService<infer M extends GenServiceMethods> ? M : never;

type Handler<I extends DescMessage, O extends DescMessage> = (req: MessageShape<I>, ctx: CallContext) => Promise<MessageInitShape<O>> | MessageInitShape<O>;

/** A partial map of a service's RPCs (by their generated lowerCamel name) to handlers. */
export type Handlers<S> = {
  [K in keyof MethodsOf<S>]?: Handler<MethodsOf<S>[K]['input'], MethodsOf<S>[K]['output']>;
};
