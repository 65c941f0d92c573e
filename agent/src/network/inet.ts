// Text forms of the addresses kata sends (IPv4/IPv6, prefix lengths, MACs) to and from the bytes
// netlink carries. Every parser throws INVALID_ARGUMENT naming the field and the value it refused.
import net from 'node:net';
import { invalidArgument } from '../errors.js';

export const AF_INET = 2;
export const AF_INET6 = 10;

export interface IpBytes {
  family: typeof AF_INET | typeof AF_INET6;
  bytes: Buffer;
}

/** An IPv4 or IPv6 address (no prefix); `field` names it in the error. */
export function parseIp(text: string, field: string): IpBytes {
  const kind = net.isIP(text);
  if (kind === 4) return { family: AF_INET, bytes: Buffer.from(text.split('.').map(Number)) };
  if (kind === 6) return { family: AF_INET6, bytes: ipv6Bytes(text) };
  throw invalidArgument(`${field}: malformed IP address "${text}"`);
}

function ipv6Bytes(text: string): Buffer {
  // net.isIP accepted it; an embedded IPv4 tail ("::ffff:192.0.2.1") becomes its two groups first.
  let t = text.split('%')[0];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (v4) {
    const o = v4[1].split('.').map(Number);
    t = t.slice(0, -v4[1].length) + `${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const [head, tail] = t.includes('::') ? t.split('::') : [t, undefined];
  const h = head ? head.split(':') : [];
  const tl = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - tl.length).fill('0'), ...tl];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/** The text form of 4 or 16 address bytes (IPv6 compressed, as `ip` prints it). */
export function formatIp(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  if (b.length !== 16) return b.toString('hex');
  const groups = Array.from({ length: 8 }, (_v, i) => b.readUInt16BE(i * 2));
  // The longest run of two or more zero groups becomes "::" (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** A prefix length as kata sends it ("24"), or a dotted IPv4 netmask ("255.255.255.0"). */
export function parsePrefixLen(mask: string, family: number, field: string): number {
  const max = family === AF_INET ? 32 : 128;
  if (/^\d{1,3}$/.test(mask) && Number(mask) <= max) return Number(mask);
  if (family === AF_INET && net.isIPv4(mask)) {
    const bits = mask.split('.').reduce((n, o) => n * 256 + Number(o), 0);
    // Only contiguous masks (ones, then zeros) have a prefix length.
    for (let len = 0; len <= 32; len++) if (bits === (2 ** len - 1) * 2 ** (32 - len)) return len;
  }
  throw invalidArgument(`${field}: malformed mask "${mask}" (a prefix length 0-${max} expected)`);
}

/** "a.b.c.0/24", "2001:db8::/64", or "" / "default" for the default route (prefix 0). */
export function parsePrefix(text: string, field: string, family?: number): { ip: IpBytes | undefined; len: number } {
  if (text === '' || text === 'default') return { ip: undefined, len: 0 };
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash), field);
  if (family !== undefined && ip.family !== family) throw invalidArgument(`${field}: "${text}" is not ${family === AF_INET ? 'IPv4' : 'IPv6'}`);
  const max = ip.family === AF_INET ? 32 : 128;
  const len = slash < 0 ? max : parsePrefixLen(text.slice(slash + 1), ip.family, field);
  return { ip, len };
}

/** A MAC address "aa:bb:cc:dd:ee:ff" (either case, "-" also accepted as separator). */
export function parseMac(text: string, field: string): Buffer {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) throw invalidArgument(`${field}: malformed MAC address "${text}"`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

/** Lower-case colon form, as `ip link` prints it. */
export const formatMac = (b: Buffer): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
