import { notServedMessage } from './not-served.js';
import { AgentError, type ErrorKind } from '../errors.js';

// Status codes shared by every wire. gRPC and ttrpc both carry the google.rpc codes, so handlers raise
// these and each transport maps them to its own frame without knowing which handler failed.
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

export class RpcError extends Error {
  constructor(
    readonly code: Code,
    message: string,
    /**
     * An error that is the normal end of something (end of a stream): the call log records it at
     * debug, not as a failure, whatever its code.
     */
    readonly expected = false,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

// Statuses built directly, for rpc/ and the domains whose unit tests still pin RpcError (errors.ts
// holds the domain-side equivalents).
export const invalidArgument = (msg: string) => new RpcError(Code.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new RpcError(Code.NOT_FOUND, msg);
export const alreadyExists = (msg: string) => new RpcError(Code.ALREADY_EXISTS, msg);
export const failedPrecondition = (msg: string) => new RpcError(Code.FAILED_PRECONDITION, msg);
export const unimplemented = (method: string) => new RpcError(Code.UNIMPLEMENTED, notServedMessage(method));

// The one place a domain error kind becomes a status: the same on every wire and in every dialect.
const kindCodes: Record<ErrorKind, Code> = {
  InvalidArgument: Code.INVALID_ARGUMENT,
  NotFound: Code.NOT_FOUND,
  AlreadyExists: Code.ALREADY_EXISTS,
  FailedPrecondition: Code.FAILED_PRECONDITION,
  Unavailable: Code.UNAVAILABLE,
  Cancelled: Code.CANCELLED,
  DeadlineExceeded: Code.DEADLINE_EXCEEDED,
  ResourceExhausted: Code.RESOURCE_EXHAUSTED,
  PermissionDenied: Code.PERMISSION_DENIED,
  Unimplemented: Code.UNIMPLEMENTED,
};

// errno names that have an obvious status; anything else is INTERNAL with the syscall named in the message.
const errnoCodes: Record<string, Code> = {
  ENOENT: Code.NOT_FOUND,
  ESRCH: Code.NOT_FOUND,
  EEXIST: Code.ALREADY_EXISTS,
  EINVAL: Code.INVALID_ARGUMENT,
  ENOTDIR: Code.INVALID_ARGUMENT,
  // A value a kernel file refuses as out of range (cgroup weights).
  ERANGE: Code.INVALID_ARGUMENT,
  EPERM: Code.PERMISSION_DENIED,
  EACCES: Code.PERMISSION_DENIED,
  ENOSPC: Code.RESOURCE_EXHAUSTED,
  ENOMEM: Code.RESOURCE_EXHAUSTED,
  EMFILE: Code.RESOURCE_EXHAUSTED,
  EBUSY: Code.FAILED_PRECONDITION,
};

/** Turns anything a handler threw into a status the wire can carry. */
export function toRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  if (err instanceof AgentError) return new RpcError(kindCodes[err.kind], err.message);
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    const code = (errno ? errnoCodes[errno] : undefined) ?? Code.INTERNAL;
    return new RpcError(code, err.message);
  }
  return new RpcError(Code.UNKNOWN, String(err));
}
