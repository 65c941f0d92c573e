import { ConfigError } from '../config/errors.js';

export type Address =
  | { kind: 'unix'; path: string; abstract: boolean }
  | { kind: 'vsock'; cid: number; port: number }
  /** kata 1.x: yamux on the virtio-serial port of this name (our own form; kata 1.x had no address for it). */
  | { kind: 'serial'; name: string };

const U32_MAX = 0xffffffff;

/**
 * kata's agent.server_addr forms: `unix:///abs/path`, `unix://@abstract`, `vsock://CID:PORT`
 * (CID -1 = VMADDR_CID_ANY). Ports and CIDs are u32 on the wire. Plus `serial://PORTNAME`
 * (e.g. serial://agent.channel.0) for the 1.x virtio-serial channel.
 */
export function parseAddress(text: string): Address {
  const m = /^([a-z]+):\/\/(.*)$/.exec(text);
  if (!m) throw new ConfigError(`server address "${text}" is not of the form unix:///path, unix://@name, vsock://CID:PORT or serial://PORTNAME`);
  const [, scheme, rest] = m;
  if (scheme === 'unix') {
    if (rest === '' || rest === '@') throw new ConfigError(`server address "${text}" has no socket path`);
    if (rest.startsWith('@')) return { kind: 'unix', path: rest.slice(1), abstract: true };
    return { kind: 'unix', path: rest, abstract: false };
  }
  if (scheme === 'vsock') {
    const v = /^(-1|\d+):(\d+)$/.exec(rest);
    if (!v) throw new ConfigError(`server address "${text}" is not vsock://CID:PORT`);
    const cid = v[1] === '-1' ? U32_MAX : Number(v[1]);
    const port = Number(v[2]);
    if (cid > U32_MAX || port > U32_MAX) throw new ConfigError(`server address "${text}": CID and port must fit in 32 bits`);
    return { kind: 'vsock', cid, port };
  }
  if (scheme === 'serial') {
    // A virtio-serial port name is a sysfs file's content: no slashes, no whitespace.
    if (!/^[^\s/]+$/.test(rest)) throw new ConfigError(`server address "${text}" is not serial://PORTNAME (e.g. serial://agent.channel.0)`);
    return { kind: 'serial', name: rest };
  }
  throw new ConfigError(`server address "${text}": unknown scheme "${scheme}" (use unix://, vsock:// or serial://)`);
}

export function formatAddress(a: Address): string {
  if (a.kind === 'unix') return `unix://${a.abstract ? '@' : ''}${a.path}`;
  if (a.kind === 'serial') return `serial://${a.name}`;
  return `vsock://${a.cid === U32_MAX ? -1 : a.cid}:${a.port}`;
}
