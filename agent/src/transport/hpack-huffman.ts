/**
 * The HPACK Huffman code (RFC 7541 Appendix B) as the bit length of each symbol's code: symbols
 * 0–255 are the octets, 256 is EOS. The code is canonical (codes of one length are consecutive and
 * ordered by symbol, shorter codes first), so the lengths alone define it. One character per symbol,
 * 'A' = 5 bits … 'Z' = 30 bits.
 */
const LENGTHS =
  'ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCCCCDCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRTQRSSQQRQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ';

export const EOS = 256;
const MAX_BITS = 30;

interface Canonical {
  /** Symbols sorted by (code length, symbol). */
  symbols: Uint16Array;
  /** For each length: the first code of that length, how many codes have it, where they start in `symbols`. */
  first: Int32Array;
  count: Int32Array;
  offset: Int32Array;
}

let table: Canonical | undefined;

/** Code length of a symbol (for tests). */
export function huffmanLength(symbol: number): number {
  return LENGTHS.charCodeAt(symbol) - 0x41 + 5;
}

function build(): Canonical {
  const lengths = Array.from({ length: 257 }, (_, s) => huffmanLength(s));
  const symbols = Uint16Array.from([...lengths.keys()].sort((a, b) => lengths[a] - lengths[b] || a - b));
  const count = new Int32Array(MAX_BITS + 1);
  for (const l of lengths) count[l]++;
  const first = new Int32Array(MAX_BITS + 1);
  const offset = new Int32Array(MAX_BITS + 1);
  let code = 0;
  let at = 0;
  for (let l = 1; l <= MAX_BITS; l++) {
    code <<= 1;
    first[l] = code;
    offset[l] = at;
    code += count[l];
    at += count[l];
  }
  return { symbols, first, count, offset };
}

/**
 * Decodes a Huffman-coded HPACK string. Throws on EOS inside the string, or padding that is longer
 * than 7 bits or not all ones (both are decoding errors in RFC 7541 §5.2).
 */
export function huffmanDecode(src: Uint8Array): Buffer {
  const t = (table ??= build());
  const out: number[] = [];
  let code = 0;
  let len = 0;
  let ones = true; // the bits of the symbol read so far are all 1 (a possible EOS-prefix padding)
  for (const byte of src) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      code = (code << 1) | b;
      len++;
      ones &&= b === 1;
      const i = code - t.first[len];
      if (i >= 0 && i < t.count[len]) {
        const sym = t.symbols[t.offset[len] + i];
        if (sym === EOS) throw new Error('HPACK Huffman string holds EOS');
        out.push(sym);
        code = 0;
        len = 0;
        ones = true;
      } else if (len >= MAX_BITS) throw new Error('HPACK Huffman code longer than 30 bits');
    }
  }
  if (len > 7 || !ones) throw new Error('HPACK Huffman string ends in bad padding');
  return Buffer.from(out);
}
