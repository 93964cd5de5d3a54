/**
 * Messages the bridge refused, kept for people to inspect. Payloads are capped
 * at 1 MiB stored (with the original size recorded), so a device sending huge
 * messages cannot grow the database by more than that per refusal.
 */
import { z } from 'zod';
import type { Db } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';

export const MAX_STORED_PAYLOAD_BYTES = 1024 * 1024;
const PREVIEW_CHARS = 200;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

export interface DeadLetterInput {
  deviceId: string | null;
  topic: string;
  reason: string;
  message: string;
  payload: Buffer;
  receivedAt: Date;
}

export interface DeadLetter {
  id: string;
  receivedAt: string;
  deviceId: string | null;
  topic: string;
  reason: string;
  message: string;
  /** The stored payload: the first MAX_STORED_PAYLOAD_BYTES of it when it was larger. */
  payloadBase64: string;
  /** The first 200 characters as UTF-8 (invalid bytes become U+FFFD). */
  payloadPreview: string;
  /** The size of the payload as received, before any truncation. */
  payloadBytes: number;
}

export interface DeadLetterListQuery {
  limit?: number | undefined;
  cursor?: string | undefined;
  reason?: string | undefined;
  deviceId?: string | undefined;
}

interface Row {
  id: string;
  received_at: Date;
  device_id: string | null;
  topic: string;
  reason: string;
  message: string;
  payload: Buffer;
  payload_bytes: number;
}

const listQuery = z.object({
  limit: z.number().int().min(1).max(MAX_LIMIT).optional(),
  cursor: z.string().min(1).max(512).optional(),
  reason: z.string().min(1).max(128).optional(),
  deviceId: z.string().min(1).max(128).optional(),
});

/** Newest first by (received_at, id): the cursor carries both, as receivedAt comes from the caller and may repeat. */
function encodeCursor(row: Row): string {
  return Buffer.from(`l1:${row.received_at.getTime()}:${row.id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): { at: Date; id: string } {
  const m = /^l1:(-?\d{1,16}):(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new FaultlineError('FL_VALIDATION', 'invalid cursor: pass nextCursor from the previous page');
  return { at: new Date(Number(m[1])), id: m[2]! };
}

function preview(payload: Buffer): string {
  // UTF-8 takes at most 4 bytes per character, so decoding 4x the characters always yields enough;
  // a character cut at the slice end becomes U+FFFD only past the 200 kept.
  return Array.from(payload.subarray(0, PREVIEW_CHARS * 4).toString('utf8'))
    .slice(0, PREVIEW_CHARS)
    .join('');
}

export class DeadLetterStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Stores one refused message; returns its id. */
  async add(input: DeadLetterInput): Promise<string> {
    const payload =
      input.payload.length > MAX_STORED_PAYLOAD_BYTES
        ? input.payload.subarray(0, MAX_STORED_PAYLOAD_BYTES)
        : input.payload;
    const { rows } = await this.#db.query<{ id: string }>(
      `INSERT INTO dead_letters (received_at, device_id, topic, reason, message, payload, payload_bytes)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [
        input.receivedAt,
        input.deviceId,
        input.topic,
        input.reason,
        input.message,
        payload,
        input.payload.length,
      ],
    );
    return rows[0]!.id;
  }

  async list(query: DeadLetterListQuery = {}): Promise<{ items: DeadLetter[]; nextCursor: string | null }> {
    const parsed = listQuery.safeParse(query);
    if (!parsed.success) {
      throw new FaultlineError(
        'FL_VALIDATION',
        `invalid list query: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
        { issues: parsed.error.issues },
      );
    }
    const q = parsed.data;
    const limit = q.limit ?? DEFAULT_LIMIT;
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.cursor !== undefined) {
      const c = decodeCursor(q.cursor);
      params.push(c.at, c.id);
      where.push(`(d.received_at, d.id) < ($${params.length - 1}, $${params.length}::bigint)`);
    }
    if (q.reason !== undefined) {
      params.push(q.reason);
      where.push(`d.reason = $${params.length}`);
    }
    if (q.deviceId !== undefined) {
      params.push(q.deviceId);
      where.push(`d.device_id = $${params.length}`);
    }
    params.push(limit + 1);
    const { rows } = await this.#db.query<Row>(
      // Qualified as d.id: a bare "id" in ORDER BY would mean the text alias and sort '10' before '9'.
      `SELECT d.id::text AS id, d.received_at, d.device_id, d.topic, d.reason, d.message, d.payload, d.payload_bytes
       FROM dead_letters d ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY d.received_at DESC, d.id DESC LIMIT $${params.length}`,
      params,
    );
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    return {
      items: page.map((r) => ({
        id: r.id,
        receivedAt: r.received_at.toISOString(),
        deviceId: r.device_id,
        topic: r.topic,
        reason: r.reason,
        message: r.message,
        payloadBase64: r.payload.toString('base64'),
        payloadPreview: preview(r.payload),
        payloadBytes: r.payload_bytes,
      })),
      nextCursor: more ? encodeCursor(page[page.length - 1]!) : null,
    };
  }

  async count(): Promise<number> {
    const { rows } = await this.#db.query<{ n: number }>('SELECT count(*)::int AS n FROM dead_letters');
    return rows[0]!.n;
  }

  /** Deletes dead letters received before `before`; returns how many. Nothing else bounds the table. */
  async prune(before: Date): Promise<number> {
    const { affectedRows } = await this.#db.query('DELETE FROM dead_letters WHERE received_at < $1', [
      before,
    ]);
    return affectedRows;
  }
}
