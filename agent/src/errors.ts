/**
 * Failures the domains raise in their own terms. Which status a host sees for each kind is decided
 * in one place, rpc/status.ts (toRpcError), so a domain never names a wire code and a change of
 * mapping cannot drift between domains. Anything else a domain throws (a plain Error, an errno
 * error) is mapped there too: errno by its name, the rest as an internal failure.
 */
export type ErrorKind =
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'FailedPrecondition'
  | 'Unavailable'
  | 'Cancelled'
  | 'DeadlineExceeded'
  | 'ResourceExhausted'
  | 'PermissionDenied'
  | 'Unimplemented';

export abstract class AgentError extends Error {
  abstract readonly kind: ErrorKind;
}

/** The base of one kind: its `kind`, and its name in stack traces and logs. */
function ofKind<K extends ErrorKind>(kind: K) {
  return class extends AgentError {
    readonly kind: K = kind;
    override readonly name: string = kind;
  };
}

/** The request itself is wrong: retrying it unchanged fails the same way. */
export class InvalidArgument extends ofKind('InvalidArgument') {}

/** What the request names (container, process, interface) does not exist. */
export class NotFound extends ofKind('NotFound') {}

/** What the request would create exists already. */
export class AlreadyExists extends ofKind('AlreadyExists') {}

/** The request is valid but the state it finds does not allow it (a paused container, a busy cgroup). */
export class FailedPrecondition extends ofKind('FailedPrecondition') {}

/** Not possible yet (a terminal not open yet); the same request may succeed later. */
export class Unavailable extends ofKind('Unavailable') {}

/** Given up because the caller went away. */
export class Cancelled extends ofKind('Cancelled') {}

/** Given up after waiting as long as the request or the agent allows. */
export class DeadlineExceeded extends ofKind('DeadlineExceeded') {}

/** Out of something the guest has a limited amount of (memory, space, descriptors). */
export class ResourceExhausted extends ofKind('ResourceExhausted') {}

/** The guest refuses what the request asks. */
export class PermissionDenied extends ofKind('PermissionDenied') {}

/** A valid request for something this agent does not do (yet): the message says which and why. */
export class Unimplemented extends ofKind('Unimplemented') {}

export const invalidArgument = (msg: string) => new InvalidArgument(msg);
export const notFound = (msg: string) => new NotFound(msg);
export const alreadyExists = (msg: string) => new AlreadyExists(msg);
export const failedPrecondition = (msg: string) => new FailedPrecondition(msg);

const byKind: Record<ErrorKind, new (message: string) => AgentError> = {
  InvalidArgument,
  NotFound,
  AlreadyExists,
  FailedPrecondition,
  Unavailable,
  Cancelled,
  DeadlineExceeded,
  ResourceExhausted,
  PermissionDenied,
  Unimplemented,
};

/**
 * An error of `kind` (a plain Error, i.e. an internal failure, without one): for failures that crossed a
 * process boundary as data, such as the container-init helper's status line.
 */
export function errorOfKind(kind: ErrorKind | undefined, message: string): Error {
  return kind ? new byKind[kind](message) : new Error(message);
}

/**
 * The same failure with its message rewritten by `wrap` (to name the container, process or storage it
 * concerns), keeping what decides its status: the domain kind, or the errno name of a system error.
 * A wire status (rpc/status.ts's RpcError, numeric `code`: the dialect's end-of-stream) is already
 * final and is returned as it is.
 */
export function withContext(err: unknown, wrap: (message: string) => string): unknown {
  if (err instanceof AgentError) return Object.assign(new byKind[err.kind](wrap(err.message)), { cause: err });
  if (!(err instanceof Error)) return new Error(wrap(String(err)));
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'number') return err;
  return Object.assign(new Error(wrap(err.message), { cause: err }), typeof code === 'string' ? { code } : {});
}
