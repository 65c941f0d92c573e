import { huffmanDecode } from './hpack-huffman.js';

/** One decoded header field. `sensitive`: sent as "never indexed" (RFC 7541 §6.2.3), to be kept so. */
export interface HeaderField {
  name: Buffer;
  value: Buffer;
  sensitive: boolean;
}

export class HpackError extends Error {
  override name = 'HpackError';
}

// RFC 7541 Appendix A: the static table, entries 1–61 (only names; values are listed where non-empty).
const STATIC: [string, string][] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];
const staticFields = STATIC.map(([n, v]) => ({ name: Buffer.from(n, 'latin1'), value: Buffer.from(v, 'latin1') }));
const staticNameIndex = new Map<string, number>();
STATIC.forEach(([n], i) => staticNameIndex.has(n) || staticNameIndex.set(n, i + 1));

/** RFC 7541 §4.1: an entry's size is its name and value lengths plus 32. */
const entrySize = (f: { name: Buffer; value: Buffer }) => f.name.length + f.value.length + 32;

/** Integers beyond this are no header we would accept (and would lose precision past 2^53). */
const MAX_INT = 1 << 28;

/**
 * Mirrors the host encoder's dynamic table and turns header blocks into header lists. One instance
 * per HTTP/2 connection, fed every block in order, as the protocol's state requires.
 */
export class HpackDecoder {
  private dynamic: { name: Buffer; value: Buffer }[] = []; // newest first
  private size = 0;
  private maxSize: number;

  /**
   * @param settingsMax the SETTINGS_HEADER_TABLE_SIZE the decoding side announced; the encoder may
   *   size its table anywhere up to it.
   * @param maxListSize refuse a block whose fields add up (RFC 7541 §4.1 sizes) to more than this,
   *   so that one-byte references to a large entry cannot make a small block decode to megabytes.
   */
  constructor(
    private readonly settingsMax = 4096,
    private readonly maxListSize = 256 << 10,
  ) {
    this.maxSize = settingsMax;
  }

  /** Entries in the dynamic table (for tests). */
  get tableLength(): number {
    return this.dynamic.length;
  }

  decode(block: Buffer): HeaderField[] {
    const out: HeaderField[] = [];
    let listSize = 0;
    let pos = 0;
    const int = (prefixBits: number): number => {
      if (pos >= block.length) throw new HpackError('HPACK block truncated inside an integer');
      const max = (1 << prefixBits) - 1;
      let v = block[pos++] & max;
      if (v < max) return v;
      let shift = 0;
      for (;;) {
        if (pos >= block.length) throw new HpackError('HPACK block truncated inside an integer');
        const b = block[pos++];
        v += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (v > MAX_INT) throw new HpackError(`HPACK integer larger than ${MAX_INT}`);
        if ((b & 0x80) === 0) return v;
      }
    };
    const str = (): Buffer => {
      if (pos >= block.length) throw new HpackError('HPACK block truncated before a string');
      const huffman = (block[pos] & 0x80) !== 0;
      const n = int(7);
      if (pos + n > block.length) throw new HpackError(`HPACK string of ${n} bytes runs past the block`);
      const raw = block.subarray(pos, pos + n);
      pos += n;
      if (!huffman) return Buffer.from(raw);
      try {
        return huffmanDecode(raw);
      } catch (err) {
        throw new HpackError((err as Error).message);
      }
    };
    let fieldSeen = false;
    while (pos < block.length) {
      const b = block[pos];
      let field: { name: Buffer; value: Buffer };
      let sensitive = false;
      if (b & 0x80) {
        field = this.entry(int(7));
      } else if ((b & 0xe0) === 0x20) {
        // §6.3: only at the start of a block (§4.2), and never above what we announced.
        if (fieldSeen) throw new HpackError('HPACK dynamic table size update after a header field');
        const n = int(5);
        if (n > this.settingsMax) throw new HpackError(`HPACK table size update to ${n}, above the ${this.settingsMax} allowed`);
        this.maxSize = n;
        this.evict(0);
        continue;
      } else {
        const indexing = (b & 0xc0) === 0x40;
        sensitive = (b & 0xf0) === 0x10;
        const nameIndex = int(indexing ? 6 : 4);
        const name = nameIndex === 0 ? str() : this.entry(nameIndex).name;
        field = { name, value: str() };
        if (indexing) this.insert(field);
      }
      fieldSeen = true;
      listSize += entrySize(field);
      if (listSize > this.maxListSize) throw new HpackError(`HPACK header list larger than ${this.maxListSize} bytes`);
      out.push({ name: field.name, value: field.value, sensitive });
    }
    return out;
  }

  private entry(index: number): { name: Buffer; value: Buffer } {
    if (index === 0) throw new HpackError('HPACK index 0');
    if (index <= staticFields.length) return staticFields[index - 1];
    const e = this.dynamic[index - staticFields.length - 1];
    if (!e) throw new HpackError(`HPACK index ${index} beyond the ${staticFields.length + this.dynamic.length} entries`);
    return e;
  }

  private insert(field: { name: Buffer; value: Buffer }): void {
    const size = entrySize(field);
    // §4.4: an entry larger than the table empties it and is not added.
    this.evict(size);
    if (size <= this.maxSize) {
      this.dynamic.unshift(field);
      this.size += size;
    }
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    while (this.dynamic.length && this.size + room > this.maxSize) this.size -= entrySize(this.dynamic.pop()!);
  }
}

function encodeInt(out: number[], value: number, prefixBits: number, firstByte: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

/**
 * Encodes a header list without touching the decoder's dynamic table: every field is a literal
 * "without indexing" (or "never indexed" when it came so), names from the static table where they
 * are there, strings raw (no Huffman). Such a block means the same to any decoder whatever its
 * table holds, which is what lets a block be rewritten in the middle of a connection.
 */
export function encodeLiteralBlock(fields: HeaderField[]): Buffer {
  const out: number[] = [];
  const chunks: Buffer[] = [];
  const flush = () => {
    if (out.length) chunks.push(Buffer.from(out));
    out.length = 0;
  };
  const str = (s: Buffer) => {
    encodeInt(out, s.length, 7, 0);
    flush();
    chunks.push(s);
  };
  for (const f of fields) {
    const first = f.sensitive ? 0x10 : 0x00;
    const nameIndex = staticNameIndex.get(f.name.toString('latin1')) ?? 0;
    encodeInt(out, nameIndex, 4, first);
    if (nameIndex === 0) str(f.name);
    str(f.value);
  }
  flush();
  return Buffer.concat(chunks);
}
