/**
 * Carries every accepted sample, fault event and (optionally) status change from
 * the write-ahead log into InfluxDB. The log is the disk spool: the sink reads it
 * through its own cursor ('influx') and moves that cursor only past records whose
 * points InfluxDB answered 2xx for (or that were quarantined after a 4xx), so an
 * InfluxDB outage, a crash or a restart delays points and loses none. When
 * InfluxDB stays down long enough, the log reaches ingest.walMaxBytes and ingest
 * pauses (backpressure) instead of dropping data.
 *
 * Batches are cut by size and by age and sent with bounded concurrency. They can
 * finish out of order, so the cursor advances to the end of the longest finished
 * prefix of batches, never past a batch still in flight.
 *
 * Delivery is at-least-once: after a crash the unconfirmed tail is sent again, and
 * the log itself may hold a (device, seq) twice (a QoS 1 redelivery). InfluxDB
 * keys a point by measurement, tags and timestamp and overwrites an identical one,
 * so a reader sees each sample once.
 */
import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import type { FaultEvent, TelemetrySample } from '../contract/index.js';
import type { DeviceInfo } from '../events/types.js';
import { decodeRecord, type IngestRecord } from '../ingest/record.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { WalCursor, WalRecord, WriteAheadLog } from '../wal/index.js';
import { deviceTags, faultLine, MEASUREMENTS, statusLine, telemetryLine } from './line-protocol.js';
import { Lines } from './lines.js';
import type { Quarantine } from './quarantine.js';
import type { InfluxWriter, WriteResult } from './writer.js';

export interface InfluxSinkOptions {
  wal: WriteAheadLog;
  writer: InfluxWriter;
  quarantine: Quarantine;
  /** The registry lookup for tags (model, firmware, region, batch); cached here. */
  deviceInfo(id: string): Promise<DeviceInfo | null>;
  metrics: Metrics;
  log: Logger;
  batchSize: number;
  flushIntervalMs: number;
  maxInFlight: number;
  maxRetryDelayMs: number;
  writeStatus: boolean;
  cursorName?: string;
  /** How long device tags are reused before the registry is asked again. */
  deviceCacheMs?: number;
  now?: () => number;
  random?: () => number;
}

interface Batch {
  lines: Lines;
  /** Points per measurement, counted as lines are added. */
  telemetry: number;
  faults: number;
  /** No record has entered yet; its age starts with the first one. */
  fresh: boolean;
  /** Every record up to this LSN is entirely in this batch or an earlier one. */
  endLsn: number;
  /** First LSN that contributed a line, for tracing quarantined points back. */
  firstLsn: number;
  openedAt: number;
  done: boolean;
}

const READ_RECORDS = 256;
const IDLE_POLL_MS = 250;
const BASE_RETRY_MS = 200;
/** Bisection requests allowed per batch to find the points a 4xx was about; past it, halves are quarantined whole. */
const ISOLATION_BUDGET = 64;
/** Finished batches waiting behind an unfinished one; past it the reader waits (the log keeps the rest). */
const MAX_PENDING = 1_024;
const OUTAGE_LOG_EVERY_MS = 60_000;
const YIELD_EVERY_POINTS = 500;
const INITIAL = {
  telemetry: MEASUREMENTS.telemetry.charCodeAt(0),
  faults: MEASUREMENTS.faults.charCodeAt(0),
} as const;

class Aborted extends Error {}

export class InfluxSink {
  private readonly cursor: WalCursor;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly deviceCacheMs: number;
  private readonly devices = new Map<string, { tags: string; at: number }>();
  private readonly abort = new AbortController();
  private readonly pending: Batch[] = [];
  /** Sealed batches waiting for a free slot: encoding the next batches overlaps the requests in flight. */
  private readonly ready: Batch[] = [];
  private readonly deliveries = new Set<Promise<void>>();
  private open: Batch;
  private readLsn: number;
  private inFlight = 0;
  private running = false;
  private draining = false;
  private loop: Promise<void> | null = null;
  private wakeReader: (() => void) | null = null;
  private readonly onCommit = () => this.wakeReader?.();
  /** Since when writes have been failing, and when that was last logged; null while healthy. */
  private failingSince: number | null = null;
  private lastOutageLog = 0;

  constructor(private readonly o: InfluxSinkOptions) {
    this.cursor = o.wal.cursor(o.cursorName ?? 'influx');
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.deviceCacheMs = o.deviceCacheMs ?? 300_000;
    this.readLsn = this.cursor.position;
    this.open = this.newBatch(this.readLsn);
  }

  start(): void {
    this.running = true;
    this.o.wal.on('commit', this.onCommit);
    this.loop = this.run();
  }

  /** Records in the log InfluxDB has not confirmed yet. */
  get lag(): number {
    return this.o.wal.lastLsn - this.cursor.position;
  }

  /** The cursor's position: every record up to it is in InfluxDB (or quarantined). */
  get position(): number {
    return this.cursor.position;
  }

  /** True while writes fail and are being retried. */
  get failing(): boolean {
    return this.failingSince !== null;
  }

  /**
   * Sends what is already in the log (bounded by timeoutMs, and not at all during an outage: the log
   * keeps it for the next start), then stops. Unconfirmed batches are abandoned, never counted as sent.
   */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (!this.running) return;
    const deadline = this.now() + timeoutMs;
    this.draining = true;
    this.wakeReader?.();
    while (this.lag > 0 && !this.failing && this.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    this.running = false;
    this.o.wal.off('commit', this.onCommit);
    this.abort.abort();
    this.wakeReader?.();
    await this.loop;
    await Promise.allSettled([...this.deliveries]);
    await this.cursor.flush();
  }

  private newBatch(endLsn: number): Batch {
    return {
      lines: new Lines(),
      telemetry: 0,
      faults: 0,
      fresh: true,
      endLsn,
      firstLsn: 0,
      openedAt: this.now(),
      done: false,
    };
  }

  private async run(): Promise<void> {
    let backoff = 0;
    let encoded = 0;
    while (this.running) {
      try {
        const records = await this.o.wal.read(this.readLsn, READ_RECORDS);
        if (records.length === 0) {
          await this.caughtUp();
          continue;
        }
        for (const record of records) {
          if (!this.running) break;
          encoded += await this.take(record);
          // Encoding is CPU work and the awaits inside it are microtasks: without a turn of the event
          // loop now and then, finished requests would wait for a whole read to be encoded before the
          // next one is sent. Every few hundred points, not every record: most records hold one sample.
          if (encoded >= YIELD_EVERY_POINTS) {
            encoded = 0;
            await setImmediatePromise();
          }
          if (this.open.lines.count > 0 && this.now() - this.open.openedAt >= this.o.flushIntervalMs)
            await this.seal();
        }
        backoff = 0;
      } catch (err) {
        if (!this.running) break;
        backoff = Math.min(this.o.maxRetryDelayMs, Math.max(BASE_RETRY_MS, backoff * 2));
        this.o.log.warn(
          { err, retryInMs: backoff },
          'reading the write-ahead log for InfluxDB failed; will retry',
        );
        await this.idle(backoff);
      }
    }
  }

  /** Nothing more to read now: send the open batch once it is old enough (at once when draining). */
  private async caughtUp(): Promise<void> {
    const age = this.now() - this.open.openedAt;
    const points = this.open.lines.count;
    // Records without points (dead letters, or a record that ended exactly at a batch boundary) cost
    // nothing to confirm, so they do not wait for the interval that gathers points into batches.
    if (points === 0 && this.open.endLsn > this.sealedEnd()) {
      await this.seal();
      return;
    }
    if (points > 0 && (this.draining || age >= this.o.flushIntervalMs)) {
      await this.seal();
      return;
    }
    await this.idle(points > 0 ? this.o.flushIntervalMs - age : IDLE_POLL_MS);
  }

  private sealedEnd(): number {
    return this.pending.length > 0 ? this.pending[this.pending.length - 1]!.endLsn : this.cursor.position;
  }

  /** Turns one log record into lines in the open batch, sealing full batches on the way; returns the lines. */
  private async take({ lsn, payload }: WalRecord): Promise<number> {
    const record = decodeRecord(payload);
    const lines = await this.linesOf(record, lsn);
    if (this.open.fresh) {
      this.open.fresh = false;
      this.open.openedAt = this.now();
    }
    for (const line of lines) {
      if (this.open.lines.count === 0) this.open.firstLsn = lsn;
      this.open.lines.push(line);
      if (record.kind === 'telemetry') this.open.telemetry++;
      else if (record.kind === 'faults') this.open.faults++;
      // A record's points may span batches; endLsn stays at the previous record until its last point is in.
      if (this.open.lines.count >= this.o.batchSize) {
        await this.seal();
        this.open.fresh = false;
      }
    }
    this.open.endLsn = lsn;
    this.readLsn = lsn;
    return lines.length;
  }

  private async linesOf(record: IngestRecord, lsn: number): Promise<string[]> {
    if (record.kind === 'deadletter') return [];
    if (record.kind === 'status' && !this.o.writeStatus) return [];
    const tags = await this.tagsOf(record.deviceId);
    const text = record.payload.toString('utf8');
    const lines: string[] = [];
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      // Only validated payloads reach the log as telemetry, faults or status; this would be a bug, not data.
      this.o.log.error(
        { err, lsn, deviceId: record.deviceId },
        'log record does not parse; not written to InfluxDB',
      );
      return [];
    }
    if (record.kind === 'telemetry') {
      for (const s of itemsOf<TelemetrySample>(body)) {
        const line = telemetryLine(tags, s.ts, s.metrics);
        if (line) lines.push(line);
      }
    } else if (record.kind === 'faults') {
      for (const f of itemsOf<FaultEvent>(body)) lines.push(faultLine(tags, f.ts, f.code, f.detail));
    } else {
      const s = body as { state: string; reason?: string; firmware?: string; ts?: number };
      lines.push(statusLine(tags, s.ts ?? record.receivedAt, s));
    }
    return lines;
  }

  private async tagsOf(deviceId: string): Promise<string> {
    const cached = this.devices.get(deviceId);
    const now = this.now();
    if (cached && now - cached.at < this.deviceCacheMs) return cached.tags;
    let info: DeviceInfo | null;
    try {
      info = await this.o.deviceInfo(deviceId);
    } catch (err) {
      // A stale entry beats stalling; without one the record waits (run() retries it) rather than
      // being written under a different tag set, which would be a different series.
      if (cached) return cached.tags;
      throw err;
    }
    const tags = deviceTags(info ?? { id: deviceId, model: null, firmware: null, region: null, batch: null });
    if (this.devices.size >= 200_000) this.devices.clear();
    this.devices.set(deviceId, { tags, at: now });
    return tags;
  }

  /**
   * Queues the open batch for sending. The reader may run ahead by maxInFlight sealed batches, so the
   * next requests are encoded while the current ones are in flight; past that it waits.
   */
  private async seal(): Promise<void> {
    const batch = this.open;
    this.open = this.newBatch(batch.endLsn);
    this.pending.push(batch);
    if (batch.lines.count === 0) {
      batch.done = true;
      this.advance();
      return;
    }
    this.ready.push(batch);
    this.pump();
    while (this.running && (this.ready.length >= this.o.maxInFlight || this.pending.length > MAX_PENDING)) {
      await this.idle(IDLE_POLL_MS);
    }
  }

  /** Starts sending ready batches while there are free slots (bounded concurrency). */
  private pump(): void {
    while (this.running && this.inFlight < this.o.maxInFlight && this.ready.length > 0) {
      const batch = this.ready.shift()!;
      this.inFlight++;
      const delivery = this.deliver(batch);
      this.deliveries.add(delivery);
      void delivery.finally(() => this.deliveries.delete(delivery));
    }
  }

  private async deliver(batch: Batch): Promise<void> {
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const quarantined = await this.send(batch, 0, batch.lines.count, { budget: ISOLATION_BUDGET });
          batch.done = true;
          this.o.metrics.influxBatches.inc({ outcome: quarantined > 0 ? 'quarantined' : 'written' });
          return;
        } catch (err) {
          if (err instanceof Aborted) return;
          // A bug, not InfluxDB's answer: the batch keeps its slot and is sent again, since the cursor
          // cannot pass it and nothing behind it could be confirmed otherwise.
          this.o.log.error({ err }, 'InfluxDB batch failed unexpectedly; sending it again');
          await this.sleep(this.retryDelay(attempt));
        }
      }
    } catch (err) {
      if (!(err instanceof Aborted)) throw err;
    } finally {
      if (batch.done) batch.lines.release();
      this.inFlight--;
      this.advance();
      this.pump();
      this.wakeReader?.();
    }
  }

  /** Moves the cursor to the end of the longest prefix of finished batches. */
  private advance(): void {
    let end = -1;
    while (this.pending.length > 0 && this.pending[0]!.done) end = this.pending.shift()!.endLsn;
    if (end > this.cursor.position) this.cursor.commit(end);
  }

  /**
   * Writes lines [from, to) of a batch until InfluxDB confirms them, retrying what may succeed later
   * and bisecting a refusal down to the points it was about. Resolves with the points quarantined.
   */
  private async send(batch: Batch, from: number, to: number, isolation: { budget: number }): Promise<number> {
    const points = to - from;
    for (let attempt = 0; ; attempt++) {
      if (!this.running) throw new Aborted();
      const started = performance.now();
      const result = await this.o.writer.write(batch.lines.body(from, to), points, this.abort.signal);
      if (!this.running) throw new Aborted();
      if (result.kind === 'ok') {
        this.o.metrics.influxWriteSeconds.observe((performance.now() - started) / 1000);
        this.countWritten(batch, from, to);
        this.recovered();
        return 0;
      }
      if (result.kind === 'retry') {
        this.o.metrics.influxRetries.inc({ reason: result.reason });
        this.outage(result);
        await this.sleep(this.retryDelay(attempt, result.retryAfterMs));
        continue;
      }
      this.recovered();
      const splittable = points > 1 && (result.kind === 'too_large' || isolation.budget > 0);
      if (splittable) {
        // Writes are idempotent, so resending the half InfluxDB already took (a partial write) is harmless.
        if (result.kind === 'rejected') isolation.budget -= 2;
        const mid = from + (points >>> 1);
        const a = await this.send(batch, from, mid, isolation);
        const b = await this.send(batch, mid, to, isolation);
        return a + b;
      }
      await this.quarantine(batch, from, to, result);
      return points;
    }
  }

  private async quarantine(
    batch: Batch,
    from: number,
    to: number,
    result: Extract<WriteResult, { kind: 'too_large' | 'rejected' }>,
  ): Promise<void> {
    const points = to - from;
    for (let attempt = 0; ; attempt++) {
      if (!this.running) throw new Aborted();
      try {
        const file = await this.o.quarantine.put({
          body: batch.lines.body(from, to),
          points,
          status: result.status,
          message: result.message,
          target: this.o.writer.target,
          lsnRange: [batch.firstLsn, batch.endLsn],
        });
        this.o.metrics.influxQuarantined.inc(points);
        this.o.log.warn(
          { status: result.status, points, file },
          `InfluxDB refused ${points} point(s) (${result.status}: ${result.message}); quarantined in ${file}, later batches continue`,
        );
        return;
      } catch (err) {
        // Without the file on disk the points would be lost, so the cursor waits until it can be written.
        this.o.log.error(
          { err, dir: this.o.quarantine.dir },
          'cannot write the InfluxDB quarantine file; retrying',
        );
        await this.sleep(this.retryDelay(attempt));
      }
    }
  }

  private countWritten(batch: Batch, from: number, to: number): void {
    let telemetry = batch.telemetry;
    let faults = batch.faults;
    if (from !== 0 || to !== batch.lines.count) {
      // A piece of a split batch: count its own lines (rare, so the loop does not matter).
      telemetry = 0;
      faults = 0;
      for (let i = from; i < to; i++) {
        const c = batch.lines.initial(i);
        if (c === INITIAL.telemetry) telemetry++;
        else if (c === INITIAL.faults) faults++;
      }
    }
    const m = this.o.metrics.influxPointsWritten;
    const status = to - from - telemetry - faults;
    if (telemetry) m.inc({ measurement: MEASUREMENTS.telemetry }, telemetry);
    if (faults) m.inc({ measurement: MEASUREMENTS.faults }, faults);
    if (status) m.inc({ measurement: MEASUREMENTS.status }, status);
  }

  /** Capped exponential backoff with jitter (half fixed, half random), at least what the server asked. */
  private retryDelay(attempt: number, retryAfterMs?: number): number {
    const cap = this.o.maxRetryDelayMs;
    const ceiling = Math.min(cap, BASE_RETRY_MS * 2 ** Math.min(attempt, 20));
    const delay = ceiling / 2 + (this.random() * ceiling) / 2;
    return retryAfterMs === undefined ? delay : Math.max(delay, Math.min(retryAfterMs, cap));
  }

  private outage(result: Extract<WriteResult, { kind: 'retry' }>): void {
    const now = this.now();
    const hint =
      result.reason === 'auth'
        ? ' (check influx.token / username / password)'
        : result.reason === 'not_found'
          ? ' (check influx.database, or org and bucket for api v2)'
          : '';
    const fields = {
      status: result.status,
      reason: result.reason,
      target: this.o.writer.target,
      lag: this.lag,
    };
    if (this.failingSince === null) {
      this.failingSince = now;
      this.lastOutageLog = now;
      const level = result.reason === 'auth' || result.reason === 'not_found' ? 'error' : 'warn';
      this.o.log[level](
        fields,
        `InfluxDB write failed: ${result.message}${hint}; retrying with backoff, points wait in the write-ahead log`,
      );
    } else if (now - this.lastOutageLog >= OUTAGE_LOG_EVERY_MS) {
      this.lastOutageLog = now;
      this.o.log.warn(
        { ...fields, failingForMs: now - this.failingSince },
        `InfluxDB writes still failing after ${Math.round((now - this.failingSince) / 1000)} s: ${result.message}${hint}`,
      );
    }
  }

  private recovered(): void {
    if (this.failingSince === null) return;
    const ms = this.now() - this.failingSince;
    this.failingSince = null;
    this.o.log.info(
      { failedForMs: ms, lag: this.lag },
      `InfluxDB writes succeed again after ${Math.round(ms / 1000)} s; catching up`,
    );
  }

  private sleep(ms: number): Promise<void> {
    const signal = this.abort.signal;
    if (signal.aborted) return Promise.reject(new Aborted());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(new Aborted());
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Waits for new log records, a free slot or stop, at most ms. */
  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(1, ms));
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.wakeReader === done) self.wakeReader = null;
        resolve();
      }
      this.wakeReader = done;
    });
  }
}

function itemsOf<T>(body: unknown): T[] {
  const batch = (body as { batch?: unknown }).batch;
  return Array.isArray(batch) ? (batch as T[]) : [body as T];
}
