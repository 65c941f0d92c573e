import { libc } from '../linux/index.js';
import { parseAddress } from './address.js';
import type { Listener } from './listener.js';
import { SerialListener } from './serial-listener.js';
import { UnixListener } from './unix-listener.js';
import { VsockListener } from './vsock-listener.js';

export function createListener(address: string, onError?: (err: Error) => void, onInfo?: (msg: string, fields: Record<string, unknown>) => void): Listener {
  const a = parseAddress(address);
  if (a.kind === 'unix') return new UnixListener(a.path, a.abstract);
  if (a.kind === 'serial') return new SerialListener({ portName: a.name, onError, onInfo });
  return new VsockListener(libc(), a.cid, a.port, onError);
}
