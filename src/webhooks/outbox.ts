/**
 * A transactional outbox with one delivery row per receiver.
 *
 * A feature writes its change and calls enqueue() with the same transaction
 * handle, so a message exists if and only if the change committed. Each
 * receiver's delivery is retried on its own with capped exponential backoff and
 * jitter, and is dead after maxAttempts; a receiver that succeeded is never sent
 * the message again, whatever happens to the others. Sends are at least once
 * (a crash between send and record resends after the lease), so every message
 * carries an idempotency key for the receiver to drop repeats.
 *
 * Generic on purpose: tickets use it for helpdesk webhooks and notification
 * channels; owner pushes will use it for push gateways. A transport is a
 * function per receiver name, so it can be HTTP, a gateway SDK or a test stub.
 */
import type { Db, Queryable } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';
import type { Logger } from '../log/logger.js';

export interface OutboxMessageInput {
  /** What the message is about, e.g. "tickets"; the delivery log filters on it. */
  topic: string;
  /** The event name, sent to receivers (X-Faultline-Event for webhooks). */
  kind: string;
  /** Idempotency key: the same key means the same message, whoever sends it and however often. */
  key: string;
  /** The body, exactly as it will be sent (retries send the same bytes). */
  payload: string;
  receivers: readonly string[];
}

export interface SendJob {
  deliveryId: string;
  messageId: string;
  receiver: string;
  topic: string;
  kind: string;
  key: string;
  payload: string;
  /** 1 for the first try. */
  attempt: number;
}

export interface SendResult {
  ok: boolean;
  /** HTTP status or similar, when there was one. */
  status?: number | undefined;
  error?: string | undefined;
}

export type Transport = (job: SendJob) => Promise<SendResult>;

export type DeliveryStatus = 'pending' | 'delivered' | 'dead';
export type DeliveryOutcome = 'delivered' | 'retry' | 'dead';

export interface DeliveryAttempt {
  at: string;
  status: number | null;
  error: string | null;
  durationMs: number;
}

export interface Delivery {
  id: string;
  messageId: string;
  receiver: string;
  topic: string;
  kind: string;
  key: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastAttemptAt: string | null;
  lastStatus: number | null;
  lastError: string | null;
  deliveredAt: string | null;
  createdAt: string;
  attemptLog: DeliveryAttempt[];
}

export interface DeliveryQuery {
  receiver?: string | undefined;
  status?: DeliveryStatus | undefined;
  topic?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

export interface OutboxOptions {
  now?: () => number;
  /** [0, 1); the jitter source, injectable so tests can pin it. */
  random?: () => number;
  log?: Logger;
  maxAttempts?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** How often the background loop looks for due deliveries. */
  pollMs?: number;
  /** Deliveries claimed per pass. */
  batchSize?: number;
  /**
   * A claimed delivery is not claimed again for this long, so two processes on one database do
   * not send it twice; it must exceed the longest transport timeout.
   */
  leaseMs?: number;
  /** Called once per attempt, e.g. to count outcomes in metrics. */
  onAttempt?: (receiver: string, outcome: DeliveryOutcome) => void;
}

export interface DispatchResult {
  attempted: number;
  delivered: number;
  retrying: number;
  dead: number;
}

/**
 * Delay before retry number `attempt` (1 = the retry after the first failure): exponential from
 * `initial`, capped at `max`, then "equal jitter": uniformly in [delay/2, delay), so retries of
 * many messages spread out but none comes back sooner than half the nominal delay.
 */
export function backoffMs(attempt: number, initial: number, max: number, random: () => number): number {
  const nominal = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.floor(nominal / 2 + random() * (nominal / 2));
}

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

interface DeliveryRow {
  id: string;
  message_id: string;
  receiver: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Date | null;
  last_attempt_at: Date | null;
  last_status: number | null;
  last_error: string | null;
  delivered_at: Date | null;
  created_at: Date;
  topic: string;
  kind: string;
  idempotency_key: string;
}

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

function encodeCursor(id: string): string {
  return Buffer.from(`o1:${id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const m = /^o1:(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new FaultlineError('FL_VALIDATION', 'invalid cursor: pass nextCursor from the previous page');
  return m[1]!;
}

export class Outbox {
  readonly #db: Db;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #log: Logger | undefined;
  readonly #maxAttempts: number;
  readonly #initial: number;
  readonly #max: number;
  readonly #pollMs: number;
  readonly #batch: number;
  readonly #leaseMs: number;
  readonly #onAttempt: OutboxOptions['onAttempt'];
  readonly #transports = new Map<string, Transport>();
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #started = false;

  constructor(db: Db, options: OutboxOptions = {}) {
    this.#db = db;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#log = options.log;
    this.#maxAttempts = options.maxAttempts ?? 10;
    this.#initial = options.initialBackoffMs ?? 5_000;
    this.#max = options.maxBackoffMs ?? 600_000;
    this.#pollMs = options.pollMs ?? 1_000;
    this.#batch = options.batchSize ?? 50;
    this.#leaseMs = options.leaseMs ?? 300_000;
    this.#onAttempt = options.onAttempt;
  }

  /** Sets how messages for `receiver` are sent. A delivery whose receiver has none fails and is retried. */
  setTransport(receiver: string, transport: Transport): void {
    this.#transports.set(receiver, transport);
  }

  get receivers(): string[] {
    return [...this.#transports.keys()];
  }

  /**
   * Adds a message and one pending delivery per receiver, inside the caller's transaction.
   * Returns the message id, or null when there is no receiver (nothing is written).
   */
  async enqueue(q: Queryable, msg: OutboxMessageInput): Promise<string | null> {
    const receivers = [...new Set(msg.receivers)];
    if (receivers.length === 0) return null;
    const at = new Date(this.#now());
    const { rows } = await q.query<{ id: string }>(
      `INSERT INTO outbox_messages (topic, kind, idempotency_key, payload, created_at)
       VALUES ($1, $2, $3, $4, $5) RETURNING id`,
      [msg.topic, msg.kind, msg.key, msg.payload, at],
    );
    const id = rows[0]!.id;
    await q.query(
      `INSERT INTO outbox_deliveries (message_id, receiver, status, next_attempt_at, created_at)
       SELECT $1, r, 'pending', $3, $3 FROM unnest($2::text[]) AS r`,
      [id, receivers, at],
    );
    return id;
  }

  /**
   * One pass: claims due deliveries, sends them in parallel, records each outcome. Tests call
   * this directly with a controlled clock; the background loop calls it too.
   */
  async dispatchDue(): Promise<DispatchResult> {
    const now = this.#now();
    const jobs = await this.#db.tx(async (q) => {
      const { rows } = await q.query<{ id: string }>(
        `SELECT id FROM outbox_deliveries
         WHERE status = 'pending' AND next_attempt_at <= $1
         ORDER BY next_attempt_at, id LIMIT $2
         FOR UPDATE SKIP LOCKED`,
        [new Date(now), this.#batch],
      );
      if (rows.length === 0) return [];
      const ids = rows.map((r) => r.id);
      const claimed = await q.query<{
        id: string;
        message_id: string;
        receiver: string;
        attempts: number;
        topic: string;
        kind: string;
        idempotency_key: string;
        payload: string;
      }>(
        `UPDATE outbox_deliveries d SET next_attempt_at = $2
         FROM outbox_messages m
         WHERE d.id = ANY($1::bigint[]) AND m.id = d.message_id
         RETURNING d.id, d.message_id, d.receiver, d.attempts, m.topic, m.kind, m.idempotency_key, m.payload`,
        [ids, new Date(now + this.#leaseMs)],
      );
      return claimed.rows;
    });
    const result: DispatchResult = { attempted: jobs.length, delivered: 0, retrying: 0, dead: 0 };
    await Promise.all(
      jobs.map(async (row) => {
        const job: SendJob = {
          deliveryId: row.id,
          messageId: row.message_id,
          receiver: row.receiver,
          topic: row.topic,
          kind: row.kind,
          key: row.idempotency_key,
          payload: row.payload,
          attempt: row.attempts + 1,
        };
        const started = performance.now();
        const sent = await this.#send(job);
        const outcome = await this.#record(job, sent, Math.round(performance.now() - started));
        if (outcome === 'delivered') result.delivered++;
        else if (outcome === 'dead') result.dead++;
        else result.retrying++;
        this.#onAttempt?.(job.receiver, outcome);
      }),
    );
    return result;
  }

  async #send(job: SendJob): Promise<SendResult> {
    const transport = this.#transports.get(job.receiver);
    if (!transport) return { ok: false, error: `no receiver named ${job.receiver} is configured` };
    try {
      return await transport(job);
    } catch (err) {
      return { ok: false, error: (err as Error).message || String(err) };
    }
  }

  async #record(job: SendJob, sent: SendResult, durationMs: number): Promise<DeliveryOutcome> {
    const now = this.#now();
    const at = new Date(now);
    const error = sent.ok ? null : (sent.error ?? `status ${sent.status ?? 'unknown'}`).slice(0, 1000);
    const outcome: DeliveryOutcome = sent.ok
      ? 'delivered'
      : job.attempt >= this.#maxAttempts
        ? 'dead'
        : 'retry';
    const next =
      outcome === 'retry'
        ? new Date(now + backoffMs(job.attempt, this.#initial, this.#max, this.#random))
        : null;
    await this.#db.tx(async (q) => {
      await q.query(
        `UPDATE outbox_deliveries
         SET status = $2, attempts = $3, next_attempt_at = $4, last_attempt_at = $5, last_status = $6,
             last_error = $7, delivered_at = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_at END
         WHERE id = $1`,
        [
          job.deliveryId,
          outcome === 'retry' ? 'pending' : outcome,
          job.attempt,
          next,
          at,
          sent.status ?? null,
          error,
        ],
      );
      await q.query(
        `INSERT INTO outbox_attempts (delivery_id, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5)`,
        [job.deliveryId, at, sent.status ?? null, error, durationMs],
      );
    });
    if (outcome === 'dead') {
      this.#log?.warn(
        { receiver: job.receiver, delivery: job.deliveryId, kind: job.kind, attempts: job.attempt, error },
        `delivery to ${job.receiver} is dead after ${job.attempt} attempts`,
      );
    }
    return outcome;
  }

  /** Makes a dead delivery pending again, due now, with a fresh attempt budget. */
  async retry(deliveryId: string): Promise<Delivery> {
    const { rows } = await this.#db.query<{ id: string }>(
      `UPDATE outbox_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2
       WHERE id = $1 AND status = 'dead' RETURNING id`,
      [deliveryId, new Date(this.#now())],
    );
    const delivery = await this.get(deliveryId);
    if (!delivery) throw new FaultlineError('FL_NOT_FOUND', `no delivery ${deliveryId}`);
    if (rows.length === 0) {
      throw new FaultlineError('FL_CONFLICT', `delivery ${deliveryId} is ${delivery.status}, not dead`);
    }
    this.wake();
    return delivery;
  }

  async get(deliveryId: string): Promise<Delivery | null> {
    if (!/^\d{1,19}$/.test(deliveryId)) return null;
    const page = await this.#list({ id: deliveryId });
    return page.items[0] ?? null;
  }

  /** The delivery log, newest first. */
  async list(query: DeliveryQuery = {}): Promise<{ items: Delivery[]; nextCursor: string | null }> {
    return this.#list(query);
  }

  async #list(
    query: DeliveryQuery & { id?: string },
  ): Promise<{ items: Delivery[]; nextCursor: string | null }> {
    const limit = Math.min(Math.max(query.limit ?? DEFAULT_LIMIT, 1), MAX_LIMIT);
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (query.id !== undefined) add('d.id = ?', query.id);
    if (query.cursor !== undefined) add('d.id < ?', decodeCursor(query.cursor));
    if (query.receiver !== undefined) add('d.receiver = ?', query.receiver);
    if (query.status !== undefined) add('d.status = ?', query.status);
    if (query.topic !== undefined) add('m.topic = ?', query.topic);
    params.push(limit + 1);
    const { rows } = await this.#db.query<DeliveryRow>(
      `SELECT d.id, d.message_id, d.receiver, d.status, d.attempts, d.next_attempt_at, d.last_attempt_at,
              d.last_status, d.last_error, d.delivered_at, d.created_at, m.topic, m.kind, m.idempotency_key
       FROM outbox_deliveries d JOIN outbox_messages m ON m.id = d.message_id
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY d.id DESC LIMIT $${params.length}`,
      params,
    );
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    const attempts = new Map<string, DeliveryAttempt[]>();
    if (page.length > 0) {
      const log = await this.#db.query<{
        delivery_id: string;
        at: Date;
        status_code: number | null;
        error: string | null;
        duration_ms: number;
      }>(
        `SELECT delivery_id, at, status_code, error, duration_ms FROM outbox_attempts
         WHERE delivery_id = ANY($1::bigint[]) ORDER BY id`,
        [page.map((r) => r.id)],
      );
      for (const a of log.rows) {
        const list = attempts.get(a.delivery_id) ?? [];
        list.push({
          at: a.at.toISOString(),
          status: a.status_code,
          error: a.error,
          durationMs: a.duration_ms,
        });
        attempts.set(a.delivery_id, list);
      }
    }
    return {
      items: page.map((r) => ({
        id: r.id,
        messageId: r.message_id,
        receiver: r.receiver,
        topic: r.topic,
        kind: r.kind,
        key: r.idempotency_key,
        status: r.status,
        attempts: r.attempts,
        nextAttemptAt: r.status === 'pending' ? iso(r.next_attempt_at) : null,
        lastAttemptAt: iso(r.last_attempt_at),
        lastStatus: r.last_status,
        lastError: r.last_error,
        deliveredAt: iso(r.delivered_at),
        createdAt: r.created_at.toISOString(),
        attemptLog: attempts.get(r.id) ?? [],
      })),
      nextCursor: more ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  }

  async counts(): Promise<{ pending: number; dead: number }> {
    // Delivered rows are the bulk and nobody alerts on them: count only the two that matter.
    const { rows } = await this.#db.query<{ pending: number; dead: number }>(
      `SELECT (SELECT count(*) FROM outbox_deliveries WHERE status = 'pending')::int AS pending,
              (SELECT count(*) FROM outbox_deliveries WHERE status = 'dead')::int AS dead`,
    );
    return rows[0]!;
  }

  /**
   * Deletes messages created before `before` whose deliveries are all finished (delivered or
   * dead), with their delivery rows and attempt logs. Returns how many messages went.
   */
  async prune(before: Date, batch = 1_000): Promise<number> {
    return this.#db.tx(async (q) => {
      const { rows } = await q.query<{ id: string }>(
        `SELECT m.id FROM outbox_messages m
         WHERE m.created_at < $1
           AND NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.message_id = m.id AND d.status = 'pending')
         ORDER BY m.id LIMIT $2`,
        [before, batch],
      );
      if (rows.length === 0) return 0;
      const ids = rows.map((r) => r.id);
      await q.query(
        `DELETE FROM outbox_attempts WHERE delivery_id IN
           (SELECT id FROM outbox_deliveries WHERE message_id = ANY($1::bigint[]))`,
        [ids],
      );
      await q.query('DELETE FROM outbox_deliveries WHERE message_id = ANY($1::bigint[])', [ids]);
      await q.query('DELETE FROM outbox_messages WHERE id = ANY($1::bigint[])', [ids]);
      return ids.length;
    });
  }

  /** Starts the background loop: a pass every pollMs, and one soon after wake(). */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#schedule(0);
  }

  /** Asks for a pass soon, e.g. after a transaction that enqueued something committed. */
  wake(): void {
    if (!this.#started) return;
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    this.#schedule(0);
  }

  /** Stops the loop and waits for a pass in progress (its sends finish and are recorded). */
  async stop(): Promise<void> {
    this.#started = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  #schedule(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#loop().finally(() => {
        this.#running = null;
        if (this.#started) this.#schedule(this.#again ? 0 : this.#pollMs);
        this.#again = false;
      });
    }, ms);
    this.#timer.unref();
  }

  async #loop(): Promise<void> {
    try {
      // A full batch means more may be due: keep going rather than wait a poll interval.
      for (;;) {
        const r = await this.dispatchDue();
        if (r.attempted < this.#batch || !this.#started) break;
      }
    } catch (err) {
      this.#log?.warn({ err }, 'outbox pass failed; retrying at the next poll');
    }
  }
}
