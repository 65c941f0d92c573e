/**
 * Bytes that arrive in whatever chunks a socket delivers, taken out again in exact sizes by the frame
 * readers of every wire. A take that one chunk covers is a view into it, not a copy.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Bytes queued. */
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first `n` queued bytes (fewer if fewer are queued), left in the queue. */
  peek(n: number): Buffer {
    const first = this.chunks[0];
    if (!first || first.length >= n) return (first ?? Buffer.alloc(0)).subarray(0, n);
    const parts: Buffer[] = [];
    let got = 0;
    for (const c of this.chunks) {
      if (got >= n) break;
      parts.push(c);
      got += c.length;
    }
    return Buffer.concat(parts).subarray(0, n);
  }

  /** Removes and returns exactly `n` bytes; callers check `length` first. */
  take(n: number): Buffer {
    if (n > this.length) throw new RangeError(`take(${n}) with ${this.length} bytes queued`);
    this.length -= n;
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}
