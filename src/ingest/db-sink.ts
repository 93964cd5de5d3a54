/**
 * Carries what the database must remember from the write-ahead log into it:
 * dead letters and device online/offline state. It reads the log through its
 * own cursor, so a database outage only makes it fall behind; it retries with
 * capped backoff and loses nothing (the log keeps every record it has not confirmed).
 */
import type { DeadLetterStore } from '../deadletters/store.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { DeviceRegistry } from '../registry/devices.js';
import type { WriteAheadLog } from '../wal/index.js';
import { decodeRecord } from './record.js';

const BATCH = 500;
const IDLE_POLL_MS = 100;
const MAX_BACKOFF_MS = 5_000;

export interface DbSinkOptions {
  wal: WriteAheadLog;
  deadLetters: DeadLetterStore;
  devices: DeviceRegistry;
  metrics: Metrics;
  log: Logger;
}

export class DbSink {
  private readonly cursor;
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private backoff = 0;

  constructor(private readonly o: DbSinkOptions) {
    this.cursor = o.wal.cursor('db');
  }

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  /** Nudges the loop after an append, so dead letters appear without waiting for the poll. */
  notify(): void {
    this.wake?.();
  }

  get lag(): number {
    return this.o.wal.lastLsn - this.cursor.position;
  }

  /** Drains what is already durable (bounded by timeoutMs), then stops. */
  async stop(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.lag > 0 && this.backoff === 0 && Date.now() < deadline) {
      this.notify();
      await new Promise((r) => setTimeout(r, 10));
    }
    this.running = false;
    this.notify();
    await this.loop;
    await this.cursor.flush();
  }

  private async run(): Promise<void> {
    while (this.running) {
      const records = await this.o.wal.read(this.cursor.position, BATCH);
      if (records.length === 0) {
        await this.idle(IDLE_POLL_MS);
        continue;
      }
      // Presence updates of a batch go to the registry together (one UPDATE for all of them,
      // instead of one per record, which on PGlite blocked a 10k-device connect storm for seconds);
      // the cursor moves past them only once they are written, and before any dead letter.
      let seen: Array<Promise<void>> = [];
      let seenLsn = 0;
      const flushSeen = async () => {
        if (seen.length === 0) return;
        const writes = seen;
        seen = [];
        await Promise.all(writes);
        this.cursor.commit(seenLsn);
      };
      try {
        for (const { lsn, payload } of records) {
          const record = decodeRecord(payload);
          if (record.kind === 'deadletter') {
            await flushSeen();
            await this.o.deadLetters.add({
              deviceId: record.deviceId || null,
              topic: record.topic,
              reason: record.reason,
              message: record.message,
              payload: record.payload,
              receivedAt: new Date(record.receivedAt),
            });
          } else if (record.kind === 'status') {
            const state = parseState(record.payload);
            if (state)
              seen.push(
                this.o.devices.markSeen(record.deviceId, state === 'online', new Date(record.receivedAt)),
              );
          }
          if (seen.length > 0) seenLsn = lsn;
          else this.cursor.commit(lsn);
        }
        await flushSeen();
        this.backoff = 0;
      } catch (err) {
        void Promise.allSettled(seen); // a write still pending when another failed: not unhandled
        this.o.metrics.dbErrors.inc({ op: 'db_sink' });
        this.backoff = Math.min(MAX_BACKOFF_MS, Math.max(100, this.backoff * 2));
        this.o.log.warn(
          { err, retryInMs: this.backoff },
          'database write failed; records stay in the log and will be retried',
        );
        await this.idle(this.backoff);
      }
    }
  }

  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }
}

function parseState(payload: Buffer): 'online' | 'offline' | null {
  try {
    const state = (JSON.parse(payload.toString('utf8')) as { state?: unknown }).state;
    return state === 'online' || state === 'offline' ? state : null;
  } catch {
    return null;
  }
}
