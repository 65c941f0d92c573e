import type { AgentHandlers } from '../rpc/service.js';
import { InvalidArgument, withContext } from '../errors.js';
import type { OutputName, ProcessIO } from './process-io.js';

/**
 * Finds the stdio of a process; exec id "" is the container's init process. Throws NotFound for an unknown container or exec id (or a process WaitProcess already forgot).
 */
export type ProcessIOLookup = (containerId: string, execId: string) => ProcessIO;

function readLength(len: number): number {
  // kata hosts treat an empty answer as end of stream, so a zero-byte read cannot be answered.
  if (len === 0) throw new InvalidArgument('len must be greater than 0');
  return len;
}

/**
 * The stdio objects do not know whose they are; their errors get the process and container named
 * here (after the text, so that a status line still starts with what went wrong).
 */
async function naming<R>(req: { containerId: string; execId: string }, run: () => R | Promise<R>): Promise<R> {
  try {
    return await run();
  } catch (err) {
    // A message that names the container already (lookup's NotFound) is left as it is.
    if (err instanceof Error && err.message.includes(req.containerId)) throw err;
    throw withContext(err, (m) => `${m} (process ${req.execId || '(init)'} of container ${req.containerId})`);
  }
}

/** WriteStdin, ReadStdout, ReadStderr, CloseStdin and TtyWinResize. Wire forms come from ctx.dialect. */
export function ioHandlers(lookup: ProcessIOLookup): AgentHandlers {
  const read =
    (stream: OutputName): NonNullable<AgentHandlers['readStdout']> =>
    (req, ctx) =>
      naming(req, async () => {
        const len = readLength(req.len);
        const io = lookup(req.containerId, req.execId);
        const data = await io.read(stream, len, ctx.signal);
        if (data === null) throw ctx.dialect.endOfStream(`${stream} of process ${req.execId || '(init)'} of container ${req.containerId}`);
        // The bytes left the queue; if the answer never reaches the host they go back for its next
        // read, so a host that disconnects mid-read (kata agent#125: truncated output) loses none.
        ctx.onUndelivered(() => io.unread(stream, data));
        return { data };
      });
  return {
    writeStdin: (req, ctx) =>
      naming(req, async () => {
        const io = lookup(req.containerId, req.execId);
        // An empty write is how 3.x hosts close stdin.
        if (req.data.length === 0) {
          io.closeStdin();
          return { len: 0 };
        }
        return { len: await io.write(req.data, ctx.signal) };
      }),
    readStdout: read('stdout'),
    readStderr: read('stderr'),
    closeStdin: (req) =>
      naming(req, () => {
        lookup(req.containerId, req.execId).closeStdin();
        return {};
      }),
    ttyWinResize: (req) =>
      naming(req, () => {
        lookup(req.containerId, req.execId).resize(req.row, req.column);
        return {};
      }),
  };
}
