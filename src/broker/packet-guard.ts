/**
 * Sits between a client socket and Aedes. aedes 1.x has no maximum packet
 * size and its parser buffers a whole packet before it is handled, so one
 * client announcing a 256 MB PUBLISH could make the broker allocate it. The
 * guard reads only MQTT fixed headers (type byte + remaining-length varint),
 * skips bodies arithmetically and cuts the connection the moment a header
 * announces more than the limit: before the body arrives, let alone is buffered.
 *
 * It is also where backpressure lives: when Aedes stops reading (handlers are
 * waiting for the write-ahead log) or the pipeline says "pause", the socket is
 * paused, so the kernel's TCP window pushes back on the device.
 */
import { Duplex } from 'node:stream';

const enum State {
  Header = 0,
  Length = 1,
  Body = 2,
}

export class FrameSizeScanner {
  private state = State.Header;
  private remaining = 0;
  private multiplier = 1;
  private lengthBytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** Returns the announced size of the first packet over the limit in this chunk, or -1. */
  scan(chunk: Buffer): number {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === State.Body) {
        const take = Math.min(this.remaining, n - i);
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.state = State.Header;
        continue;
      }
      const byte = chunk[i++]!;
      if (this.state === State.Header) {
        this.state = State.Length;
        this.remaining = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        continue;
      }
      // Remaining-length varint: 7 bits per byte, at most 4 bytes (MQTT 3.1.1 §2.2.3).
      this.remaining += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if (byte & 0x80) {
        if (this.lengthBytes >= 4) return Number.POSITIVE_INFINITY;
        continue;
      }
      // Header (1) + length bytes + body is what the parser would buffer.
      const total = 1 + this.lengthBytes + this.remaining;
      if (total > this.maxBytes) return total;
      this.state = this.remaining === 0 ? State.Header : State.Body;
    }
    return -1;
  }
}

export interface GuardedConnectionOptions {
  maxPacketBytes: number;
  onOversized(announcedBytes: number): void;
}

/** Wraps any duplex byte stream (TCP, TLS, WebSocket stream) for Aedes. */
export class GuardedConnection extends Duplex {
  private readonly scanner: FrameSizeScanner;
  private held = false;
  private wantsData = true;

  constructor(
    private readonly inner: Duplex,
    private readonly options: GuardedConnectionOptions,
  ) {
    super({ allowHalfOpen: false });
    this.scanner = new FrameSizeScanner(options.maxPacketBytes);
    inner.on('data', (chunk: Buffer) => this.onData(chunk));
    inner.once('end', () => this.push(null));
    inner.once('error', (err) => this.destroy(err));
    inner.once('close', () => {
      if (!this.destroyed) this.destroy();
    });
  }

  get remoteAddress(): string | undefined {
    return (this.inner as { remoteAddress?: string }).remoteAddress;
  }

  /** Backpressure from the pipeline: stop reading this client until released. */
  hold(): void {
    this.held = true;
    this.inner.pause();
  }

  release(): void {
    this.held = false;
    if (this.wantsData) this.inner.resume();
  }

  get isHeld(): boolean {
    return this.held;
  }

  private onData(chunk: Buffer): void {
    const over = this.scanner.scan(chunk);
    if (over >= 0) {
      this.options.onOversized(over);
      this.inner.destroy();
      this.destroy();
      return;
    }
    if (!this.push(chunk)) {
      this.wantsData = false;
      this.inner.pause();
    }
  }

  override _read(): void {
    this.wantsData = true;
    if (!this.held) this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.inner.write(chunk, callback);
  }

  override _writev(
    chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>,
    callback: (error?: Error | null) => void,
  ): void {
    // Aedes writes packets in pieces; one syscall per batch keeps the QoS 1 ack path cheap.
    this.inner.write(Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.inner.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy();
    callback(err);
  }
}
