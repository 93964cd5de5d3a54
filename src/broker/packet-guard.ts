/**
 * Sits between a client socket and Aedes. aedes 1.x has no maximum packet
 * size and its parser buffers a whole packet before it is handled, so one
 * client announcing a 256 MB PUBLISH could make the broker allocate it. The
 * guard reads only MQTT fixed headers (type byte + remaining-length varint)
 * and skips bodies arithmetically. An oversized PUBLISH is cut out of the
 * stream before Aedes sees it: its body is discarded as it arrives (only a
 * bounded prefix is kept for the dead letter, with the topic and packet id),
 * so the connection stays up. Any other oversized packet closes the connection.
 *
 * It is also where backpressure lives: when Aedes stops reading (handlers are
 * waiting for the write-ahead log) or the pipeline says "hold", the socket is
 * paused, so the kernel's TCP window pushes back on the device.
 */
import { Duplex } from 'node:stream';

enum State {
  Header = 0,
  Length = 1,
  Body = 2,
  Skip = 3,
}

const PUBLISH = 3;
/** Bytes of an oversized PUBLISH kept for its dead letter. */
export const OVERSIZED_PREFIX_BYTES = 64 * 1024;

export interface OversizedPublish {
  topic: string;
  qos: number;
  messageId: number | null;
  /** Total size the fixed header announced. */
  announcedBytes: number;
  /** The first bytes of the payload, for the dead letter. */
  payloadPrefix: Buffer;
}

export type ScanEvent = { oversizedPublish: OversizedPublish } | { fatal: number };

/** Incremental MQTT framing scanner. Reusable across chunks; keeps no packet bytes except a skipped prefix. */
export class FrameScanner {
  private state = State.Header;
  private remaining = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private header = 0;
  private skipCapture: Buffer[] = [];
  private skipCaptured = 0;
  private skipAnnounced = 0;

  constructor(private readonly maxBytes: number) {}

  /**
   * Returns the slices of `chunk` to hand to the parser, and the events found.
   * The common case (nothing oversized) returns the chunk itself without copying.
   */
  scan(chunk: Buffer): { forward: Buffer[]; events: ScanEvent[] } {
    let i = 0;
    const n = chunk.length;
    let sliceStart = this.state === State.Skip ? -1 : 0;
    const forward: Buffer[] = [];
    const events: ScanEvent[] = [];
    let packetStart = -1;
    while (i < n) {
      if (this.state === State.Body || this.state === State.Skip) {
        const take = Math.min(this.remaining, n - i);
        if (this.state === State.Skip && this.skipCaptured < OVERSIZED_PREFIX_BYTES + 2 + 65_535 + 2) {
          const keep = Math.min(take, OVERSIZED_PREFIX_BYTES + 2 + 65_535 + 2 - this.skipCaptured);
          this.skipCapture.push(Buffer.from(chunk.subarray(i, i + keep)));
          this.skipCaptured += keep;
        }
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) {
          if (this.state === State.Skip) {
            events.push({ oversizedPublish: this.finishSkip() });
            sliceStart = i;
          }
          this.state = State.Header;
        }
        continue;
      }
      const byte = chunk[i]!;
      if (this.state === State.Header) {
        packetStart = i;
        i++;
        this.header = byte;
        this.state = State.Length;
        this.remaining = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        continue;
      }
      i++;
      // Remaining-length varint: 7 bits per byte, at most 4 bytes (MQTT 3.1.1 §2.2.3).
      this.remaining += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if (byte & 0x80) {
        if (this.lengthBytes >= 4) {
          events.push({ fatal: Number.POSITIVE_INFINITY });
          return { forward, events };
        }
        continue;
      }
      const total = 1 + this.lengthBytes + this.remaining;
      if (total <= this.maxBytes) {
        this.state = this.remaining === 0 ? State.Header : State.Body;
        continue;
      }
      if (this.header >> 4 !== PUBLISH) {
        events.push({ fatal: total });
        return { forward, events };
      }
      if (packetStart < 0) {
        // The header began in an earlier chunk that was already handed to the parser, which now holds
        // a partial header it cannot complete without the body: this connection cannot continue.
        events.push({ fatal: total });
        return { forward, events };
      }
      // Cut this packet out: forward what came before its header in this chunk, skip the rest.
      if (sliceStart >= 0 && packetStart > sliceStart) forward.push(chunk.subarray(sliceStart, packetStart));
      sliceStart = -1;
      this.state = State.Skip;
      this.skipAnnounced = total;
      this.skipCapture = [];
      this.skipCaptured = 0;
      if (this.remaining === 0) this.state = State.Header;
    }
    if (sliceStart === 0) forward.push(chunk);
    else if (sliceStart > 0 && sliceStart < n) forward.push(chunk.subarray(sliceStart));
    return { forward, events };
  }

  private finishSkip(): OversizedPublish {
    const head = Buffer.concat(this.skipCapture);
    const qos = (this.header >> 1) & 0x03;
    let topic = '';
    let messageId: number | null = null;
    let offset = 0;
    if (head.length >= 2) {
      const topicLength = head.readUInt16BE(0);
      topic = head.toString('utf8', 2, Math.min(head.length, 2 + topicLength));
      offset = 2 + topicLength;
      if (qos > 0 && head.length >= offset + 2) {
        messageId = head.readUInt16BE(offset);
        offset += 2;
      }
    }
    const payloadPrefix = head.subarray(
      Math.min(offset, head.length),
      Math.min(head.length, offset + OVERSIZED_PREFIX_BYTES),
    );
    this.skipCapture = [];
    return { topic, qos, messageId, announcedBytes: this.skipAnnounced, payloadPrefix };
  }
}

export interface GuardedConnectionOptions {
  maxPacketBytes: number;
  /** An oversized PUBLISH was cut out; the connection continues. */
  onOversizedPublish(packet: OversizedPublish, conn: GuardedConnection): void;
  /** Any other oversized or malformed frame; the connection is closed. */
  onFatal(announcedBytes: number): void;
}

/** Wraps any duplex byte stream (TCP, TLS, WebSocket stream) for Aedes. */
export class GuardedConnection extends Duplex {
  private readonly scanner: FrameScanner;
  private held = false;
  private wantsData = true;

  constructor(
    private readonly inner: Duplex,
    private readonly options: GuardedConnectionOptions,
  ) {
    super({ allowHalfOpen: false });
    this.scanner = new FrameScanner(options.maxPacketBytes);
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

  private onData(chunk: Buffer): void {
    const { forward, events } = this.scanner.scan(chunk);
    let more = true;
    for (const piece of forward) more = this.push(piece) && more;
    for (const event of events) {
      if ('fatal' in event) {
        this.options.onFatal(event.fatal);
        this.inner.destroy();
        this.destroy();
        return;
      }
      this.options.onOversizedPublish(event.oversizedPublish, this);
    }
    if (!more) {
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
