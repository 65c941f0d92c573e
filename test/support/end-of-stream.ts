// How a host recognises the end of a process's output, as real kata hosts do: the read fails. An OK
// answer with no data is what made the real 3.x shim spin forever, so the clients in our tests count
// it as a failure rather than as the end.
import { Code } from '../../agent/src/rpc/status.js';

/** The error a read ends with: 1.x Unknown "EOF", 3.x INTERNAL "EOF: …" (CallError or RpcError alike). */
export function isEndOfStream(err: unknown): boolean {
  const e = err as { code?: number; details?: string; message?: string } | undefined;
  const text = e?.details ?? e?.message ?? '';
  return (e?.code === Code.UNKNOWN && text === 'EOF') || (e?.code === Code.INTERNAL && text.startsWith('EOF: '));
}

/** Throws when a read answered OK with no data: a kata host would take it as 0 bytes read and loop. */
export function checkReadData(data: Uint8Array, what: string): Uint8Array {
  if (data.length === 0) throw new Error(`${what}: OK answer with empty data (a kata host would spin on it)`);
  return data;
}

/** Reads until the end-of-stream error; `read` makes one call. */
export async function readToEnd(read: () => Promise<{ data: Uint8Array }>, what: string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for (;;) {
    let data: Uint8Array;
    try {
      data = (await read()).data;
    } catch (err) {
      if (isEndOfStream(err)) break;
      throw err;
    }
    chunks.push(checkReadData(data, what));
  }
  return Buffer.concat(chunks);
}
