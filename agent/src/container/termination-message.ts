// GetDiagnosticData, log_type "termination_log": a container's Kubernetes termination message. With
// no shared filesystem (shared_fs = "none") the file a container writes at its
// terminationMessagePath (/dev/termination-log) lives only in the guest, as the source of that bind
// mount, which the host made with CopyFile below the shared directory. kata's runtime-rs asks for it
// when it stops the container's init and writes what it gets to the host file kubelet reads; every
// failure there is only logged, so the answers here say exactly what was missing.
//
// The mount source is the host's to choose, and the container writes the file: it is read only below
// the shared directory, resolved one component at a time without following a symlink
// (mount/in-root.ts), and only if it is a regular file, never more than Kubernetes keeps.
import type { GetDiagnosticDataRequest } from '../../../protos/gen/agent_pb.js';
import type { Spec } from '../../../protos/gen/oci_pb.js';
import { FailedPrecondition, InvalidArgument } from '../errors.js';
import { ENOENT, SyscallError } from '../linux/errno.js';
import type { Libc } from '../linux/libc.js';
import { AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_NONBLOCK, O_PATH, O_RDONLY, S_IFMT } from '../linux/libc.js';
import { fdPath, openInRoot } from '../mount/in-root.js';
import type { AgentHandlers } from '../rpc/service.js';
import { checkId } from './id.js';

/** The one log_type kata hosts send. */
export const TERMINATION_LOG = 'termination_log';
/** Kubernetes keeps at most 4096 bytes of a termination message; so does this read. */
export const MAX_TERMINATION_MESSAGE = 4096;
/** The CRI annotation naming the file inside the container. */
export const TERMINATION_PATH_ANNOTATION = 'io.kubernetes.container.terminationMessagePath';

const S_IFREG = 0o100000;

export interface TerminationMessageDeps {
  libc: Libc;
  /** `<state root>/shared/containers`: the only place a termination message is read from. */
  sharedDir: string;
  /** The container's OCI spec as CreateContainer received it; throws NOT_FOUND for an unknown id. */
  specOf(containerId: string): Spec;
}

export function diagnosticDataHandlers(deps: TerminationMessageDeps): AgentHandlers {
  return {
    getDiagnosticData(req) {
      return { data: diagnosticData(deps, req) };
    },
  };
}

export function diagnosticData(deps: TerminationMessageDeps, req: GetDiagnosticDataRequest): string {
  if (req.logType !== TERMINATION_LOG)
    throw new InvalidArgument(`GetDiagnosticData: log_type ${JSON.stringify(req.logType)} is not supported (supported: "${TERMINATION_LOG}")`);
  const id = checkId('container', req.containerId);
  const source = terminationMessageSource(deps.specOf(id), id, deps.sharedDir);
  return readTerminationMessage(deps.libc, deps.sharedDir, source, id);
}

/** The guest path of the file mounted at the container's terminationMessagePath. */
export function terminationMessageSource(spec: Spec, id: string, sharedDir: string): string {
  const dest = spec.Annotations[TERMINATION_PATH_ANNOTATION];
  if (!dest) throw new FailedPrecondition(`GetDiagnosticData ${id}: the container's spec has no ${TERMINATION_PATH_ANNOTATION} annotation`);
  const norm = (p: string) => p.replace(/\/+$/, '') || '/';
  // The last mount at that destination is the one the container sees.
  const mount = spec.Mounts.filter((m) => norm(m.destination) === norm(dest)).at(-1);
  if (!mount) throw new FailedPrecondition(`GetDiagnosticData ${id}: no mount of the container is at its terminationMessagePath ${dest}`);
  const prefix = norm(sharedDir) + '/';
  if (!mount.source.startsWith(prefix) || mount.source.split('/').includes('..'))
    throw new FailedPrecondition(`GetDiagnosticData ${id}: the termination message mount's source ${mount.source} is not below ${prefix}`);
  return mount.source;
}

/**
 * At most MAX_TERMINATION_MESSAGE bytes of the file, as UTF-8 (bytes that are not, a character cut at
 * the limit included, become U+FFFD). A file not written (yet) is an empty message, as kubelet takes
 * a missing one.
 */
export function readTerminationMessage(libc: Libc, sharedDir: string, source: string, id: string): string {
  const what = `GetDiagnosticData ${id}: ${source}`;
  let fd: number | undefined;
  try {
    const root = libc.openat(AT_FDCWD, sharedDir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    let pathFd: number;
    try {
      pathFd = openInRoot(libc, { fd: root, name: sharedDir }, source.slice(sharedDir.replace(/\/+$/, '').length), 'file');
    } finally {
      libc.close(root);
    }
    try {
      if ((libc.fstat(pathFd).mode & S_IFMT) !== S_IFREG) throw new FailedPrecondition(`${what} is not a regular file`);
      // O_NONBLOCK: a FIFO swapped in after the check must not hold the call.
      fd = libc.openat(AT_FDCWD, fdPath(pathFd), O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
    } finally {
      libc.close(pathFd);
    }
    if ((libc.fstat(fd).mode & S_IFMT) !== S_IFREG) throw new FailedPrecondition(`${what} is not a regular file`);
    const buf = Buffer.alloc(MAX_TERMINATION_MESSAGE);
    let got = 0;
    for (let n; got < buf.length && (n = libc.read(fd, buf.subarray(got))) > 0;) got += n;
    return new TextDecoder().decode(buf.subarray(0, got));
  } catch (err) {
    if (err instanceof SyscallError && err.errno === ENOENT) return '';
    if (err instanceof SyscallError && (err.code === 'ELOOP' || err.code === 'ENOTDIR'))
      throw new FailedPrecondition(`${what}: a symlink or a non-directory is in the way (${err.code}): ${err.message}`);
    throw err;
  } finally {
    if (fd !== undefined) libc.close(fd);
  }
}
