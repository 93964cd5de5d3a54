/**
 * The line protocol of one batch, encoded into a buffer as it is built, with the
 * offset where each line starts. A batch lives for a request or more (queued,
 * then in flight); as an array of strings it outlived the young generation and
 * cost the sink more in garbage collection than in encoding. As bytes it is the
 * request body as is, and any run of its lines is a slice, without a copy.
 */
const NEWLINE = 0x0a;
const EMPTY = Buffer.alloc(0);

export class Lines {
  private buf: Buffer;
  private used = 0;
  private readonly starts: number[] = [];

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  get count(): number {
    return this.starts.length;
  }

  push(line: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit; growing by doubling keeps appends amortised O(1).
    const need = this.used + 1 + line.length * 3;
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.used);
      this.buf = grown;
    }
    if (this.starts.length > 0) this.buf[this.used++] = NEWLINE;
    this.starts.push(this.used);
    this.used += this.buf.write(line, this.used, 'utf8');
  }

  /** Lines [from, to) separated by newlines, as a view into the buffer. */
  body(from = 0, to = this.count): Buffer {
    if (from >= to) return EMPTY;
    const end = to < this.count ? this.starts[to]! - 1 : this.used;
    return this.buf.subarray(this.starts[from]!, end);
  }

  /** The first byte of line i: the initial of its measurement. */
  initial(i: number): number {
    return this.buf[this.starts[i]!]!;
  }

  /** Drops the bytes once the batch is done (its slices must not be used after this). */
  release(): void {
    this.buf = EMPTY;
    this.used = 0;
    this.starts.length = 0;
  }
}
