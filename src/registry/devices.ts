/**
 * The device registry: who may connect, with which secret, and what the
 * pipeline knows about each device. Secrets are stored hashed (see
 * credentials.ts) and no method returns the secret or its hash.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { parse } from 'csv-parse';
import { z } from 'zod';
import { DEVICE_ID_PATTERN, OWNER_ID_PATTERN } from '../contract/index.js';
import { type Db, isUniqueViolation } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';
import type { DeviceInfo } from '../events/types.js';
import type { Logger } from '../log/logger.js';
import { Batcher } from './batcher.js';
import {
  DUMMY_HASH,
  hashSecret,
  MAX_SECRET_LENGTH,
  MIN_SECRET_LENGTH,
  SALT_BYTES,
  verifySecret,
} from './credentials.js';

export interface DeviceRecord {
  id: string;
  model: string;
  firmware: string | null;
  ownerId: string | null;
  ownerLocale: string | null;
  region: string | null;
  batch: string | null;
  disabled: boolean;
  createdAt: string;
  lastSeenAt: string | null;
  online: boolean;
}

/** Printable text: these values end up in tickets, logs and owner notifications. */
const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
    .regex(/^[^\u0000-\u001f\u007f]*$/, 'must not contain control characters');

/** BCP 47-ish: a 2-3 letter language and optional subtags (zh-CN, en, pt-BR, sr-Latn-RS). */
export const LOCALE_PATTERN = /^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$/;

export const deviceInput = z.strictObject({
  id: z.string().regex(DEVICE_ID_PATTERN, 'not a valid device id (letters, digits and _ . : -, at most 128)'),
  model: text(128),
  firmware: text(64).nullish(),
  ownerId: z.string().regex(OWNER_ID_PATTERN, 'not a valid owner id').nullish(),
  ownerLocale: z.string().max(35).regex(LOCALE_PATTERN, 'a language tag such as en or zh-CN').nullish(),
  region: text(64).nullish(),
  batch: text(128).nullish(),
  secret: z
    .string()
    .min(MIN_SECRET_LENGTH, `device secrets must be at least ${MIN_SECRET_LENGTH} characters`)
    .max(MAX_SECRET_LENGTH),
});
export type DeviceInput = z.input<typeof deviceInput>;

export interface DeviceListQuery {
  limit?: number | undefined;
  cursor?: string | undefined;
  model?: string | undefined;
  ownerId?: string | undefined;
  disabled?: boolean | undefined;
}

export interface ImportResult {
  imported: number;
  /** Always empty when the import succeeds: any bad row throws FL_IMPORT_INVALID instead. */
  errors: Array<{ line: number; message: string }>;
}

export type CsvInput = string | Buffer | Readable | AsyncIterable<string | Buffer>;

export type AuthResult =
  | { ok: true; device: DeviceInfo }
  | { ok: false; reason: 'unknown_device' | 'bad_secret' | 'disabled' };

export interface DeviceRegistryOptions {
  log?: Logger;
  /** Devices whose credentials stay in memory; a connect storm beyond this hits the database. */
  cacheSize?: number;
  /**
   * How long a cached credential is trusted. Changes made through this registry take effect
   * at once; this bounds how long a change made by another process (a second bridge on the
   * same PostgreSQL) takes to be seen.
   */
  cacheTtlMs?: number;
  /**
   * Least time between two credential lookup statements (cache misses arriving meanwhile share
   * the next one): a connect storm costs a statement per interval, not one per device, for at
   * most this much more connect latency. Default 10 ms.
   */
  lookupIntervalMs?: number;
  /** Rows per INSERT during CSV import. */
  importChunkSize?: number;
  /**
   * Told after a change commits, so the broker can drop a disabled device's live session and the
   * rule engine can watch a new device for silence before it ever reports.
   */
  onChange?: (change: DeviceChange) => void;
}

export type DeviceChange =
  | { kind: 'added'; devices: DeviceRecord[] }
  | { kind: 'imported'; ids: string[] }
  | { kind: 'disabled' | 'enabled'; id: string };

const MAX_REPORTED_ERRORS = 100;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

const COLUMNS =
  'id, model, firmware, owner_id, owner_locale, region, batch, disabled, created_at, last_seen_at, online';

interface DeviceRow {
  id: string;
  model: string;
  firmware: string | null;
  owner_id: string | null;
  owner_locale: string | null;
  region: string | null;
  batch: string | null;
  disabled: boolean;
  created_at: Date;
  last_seen_at: Date | null;
  online: boolean;
}

function toRecord(r: DeviceRow): DeviceRecord {
  return {
    id: r.id,
    model: r.model,
    firmware: r.firmware,
    ownerId: r.owner_id,
    ownerLocale: r.owner_locale,
    region: r.region,
    batch: r.batch,
    disabled: r.disabled,
    createdAt: r.created_at.toISOString(),
    lastSeenAt: r.last_seen_at ? r.last_seen_at.toISOString() : null,
    online: r.online,
  };
}

function toInfo(r: Omit<DeviceRow, 'disabled' | 'created_at' | 'last_seen_at' | 'online'>): DeviceInfo {
  return {
    id: r.id,
    model: r.model,
    firmware: r.firmware,
    ownerId: r.owner_id,
    ownerLocale: r.owner_locale,
    region: r.region,
    batch: r.batch,
  };
}

function issuesText(error: z.ZodError): string {
  return error.issues
    .map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message))
    .join('; ');
}

function validationError(error: z.ZodError): FaultlineError {
  // Issues carry paths and messages only (zod does not echo input by default), so no secret leaks.
  return new FaultlineError('FL_VALIDATION', `invalid device: ${issuesText(error)}`, {
    issues: error.issues,
  });
}

const CURSOR_PREFIX = 'd1:';

function encodeCursor(id: string): string {
  return Buffer.from(`${CURSOR_PREFIX}${id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const raw = Buffer.from(cursor, 'base64url').toString('utf8');
  const id = raw.slice(CURSOR_PREFIX.length);
  if (!raw.startsWith(CURSOR_PREFIX) || !DEVICE_ID_PATTERN.test(id)) {
    throw new FaultlineError('FL_VALIDATION', 'invalid cursor: pass nextCursor from the previous page');
  }
  return id;
}

const listQuery = z.object({
  limit: z.number().int().min(1).max(MAX_LIMIT).optional(),
  cursor: z.string().min(1).max(512).optional(),
  model: z.string().min(1).max(128).optional(),
  ownerId: z.string().min(1).max(128).optional(),
  disabled: z.boolean().optional(),
});

/** CSV header names, snake_case or camelCase, to input fields. */
const CSV_COLUMNS: Record<string, keyof DeviceInput> = {
  id: 'id',
  model: 'model',
  firmware: 'firmware',
  ownerid: 'ownerId',
  ownerlocale: 'ownerLocale',
  region: 'region',
  batch: 'batch',
  secret: 'secret',
};
const REQUIRED_CSV_COLUMNS: ReadonlyArray<keyof DeviceInput> = ['id', 'model', 'secret'];

interface ValidRow {
  line: number;
  values: [string, string, string | null, string | null, string | null, string | null, string | null, string];
}

interface SeenEvent {
  id: string;
  online: boolean;
  at: Date;
}

interface CacheEntry {
  hash: string;
  disabled: boolean;
  info: DeviceInfo;
  expiresAt: number;
}

export class DeviceRegistry {
  readonly #db: Db;
  readonly #log: Logger | undefined;
  readonly #onChange: ((change: DeviceChange) => void) | undefined;
  readonly #cacheSize: number;
  readonly #cacheTtlMs: number;
  readonly #chunkSize: number;
  /** Insertion-ordered, so the first key is the least recently used. */
  readonly #cache = new Map<string, CacheEntry>();
  /** One database lookup per id however many connects for it arrive at once. */
  readonly #inflight = new Map<string, Promise<CacheEntry | null>>();
  /** Cache misses and presence updates arriving together share one statement. */
  readonly #fetches: Batcher<string, CacheEntry | null>;
  readonly #seen: Batcher<SeenEvent, undefined>;

  constructor(db: Db, options: DeviceRegistryOptions = {}) {
    this.#db = db;
    this.#log = options.log;
    this.#onChange = options.onChange;
    this.#cacheSize = options.cacheSize ?? 50_000;
    this.#cacheTtlMs = options.cacheTtlMs ?? 60_000;
    this.#chunkSize = options.importChunkSize ?? 1000;
    this.#fetches = new Batcher((ids) => this.#fetchMany(ids), 1000, {
      minIntervalMs: options.lookupIntervalMs ?? 10,
    });
    this.#seen = new Batcher((events) => this.#writeSeen(events), 1000);
  }

  async add(input: DeviceInput): Promise<DeviceRecord> {
    const parsed = deviceInput.safeParse(input);
    if (!parsed.success) throw validationError(parsed.error);
    const d = parsed.data;
    try {
      const { rows } = await this.#db.query<DeviceRow>(
        `INSERT INTO devices (id, model, firmware, owner_id, owner_locale, region, batch, secret_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
        [
          d.id,
          d.model,
          d.firmware ?? null,
          d.ownerId ?? null,
          d.ownerLocale ?? null,
          d.region ?? null,
          d.batch ?? null,
          hashSecret(d.secret),
        ],
      );
      const record = toRecord(rows[0]!);
      this.#onChange?.({ kind: 'added', devices: [record] });
      return record;
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new FaultlineError('FL_DEVICE_EXISTS', `device ${d.id} already exists`, { id: d.id });
      }
      throw err;
    } finally {
      this.#invalidate(d.id);
    }
  }

  async get(id: string): Promise<DeviceRecord | null> {
    const { rows } = await this.#db.query<DeviceRow>(`SELECT ${COLUMNS} FROM devices WHERE id = $1`, [id]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** Keyset pagination in id order; nextCursor is null on the last page. */
  async list(query: DeviceListQuery = {}): Promise<{ items: DeviceRecord[]; nextCursor: string | null }> {
    const parsed = listQuery.safeParse(query);
    if (!parsed.success) {
      throw new FaultlineError('FL_VALIDATION', `invalid list query: ${issuesText(parsed.error)}`, {
        issues: parsed.error.issues,
      });
    }
    const q = parsed.data;
    const limit = q.limit ?? DEFAULT_LIMIT;
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (q.cursor !== undefined) add('id > ?', decodeCursor(q.cursor));
    if (q.model !== undefined) add('model = ?', q.model);
    if (q.ownerId !== undefined) add('owner_id = ?', q.ownerId);
    if (q.disabled !== undefined) add('disabled = ?', q.disabled);
    params.push(limit + 1);
    const { rows } = await this.#db.query<DeviceRow>(
      `SELECT ${COLUMNS} FROM devices ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY id LIMIT $${params.length}`,
      params,
    );
    const more = rows.length > limit;
    const items = (more ? rows.slice(0, limit) : rows).map(toRecord);
    return { items, nextCursor: more ? encodeCursor(items[items.length - 1]!.id) : null };
  }

  /** The caller should also disconnect a device it disables; this only refuses its next connect. */
  async setDisabled(id: string, disabled: boolean): Promise<DeviceRecord> {
    try {
      const { rows } = await this.#db.query<DeviceRow>(
        `UPDATE devices SET disabled = $2, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
        [id, disabled],
      );
      if (!rows[0]) throw new FaultlineError('FL_DEVICE_NOT_FOUND', `no device ${id}`, { id });
      const record = toRecord(rows[0]);
      this.#onChange?.({ kind: disabled ? 'disabled' : 'enabled', id });
      return record;
    } finally {
      this.#invalidate(id);
    }
  }

  /**
   * Checks a connecting device's credential. The secret is verified before the disabled flag is
   * looked at, so a caller without the secret cannot learn that a device is disabled, and an
   * unknown id costs one hash too, so timing does not tell unknown ids from known ones.
   */
  async authenticate(id: string, secret: string): Promise<AuthResult> {
    const entry = await this.#lookup(id);
    if (!entry) {
      verifySecret(secret, DUMMY_HASH);
      return { ok: false, reason: 'unknown_device' };
    }
    if (!verifySecret(secret, entry.hash)) return { ok: false, reason: 'bad_secret' };
    if (entry.disabled) return { ok: false, reason: 'disabled' };
    return { ok: true, device: entry.info };
  }

  /**
   * What the pipeline needs about a device (cached like authenticate), or null if unknown.
   * Disabled devices are returned too: replaying messages accepted before the device was
   * disabled must still find it.
   */
  async deviceInfo(id: string): Promise<DeviceInfo | null> {
    return (await this.#lookup(id))?.info ?? null;
  }

  /**
   * Records a connect (online) or disconnect/last will (offline). Cheap at connect storms: calls
   * arriving together become one UPDATE. An event older than the last one recorded is ignored, so
   * a late disconnect cannot mark a device that has since reconnected offline. Unknown ids are
   * ignored.
   */
  markSeen(id: string, online: boolean, at: Date): Promise<void> {
    return this.#seen.add({ id, online, at });
  }

  async counts(): Promise<{ total: number; online: number; disabled: number }> {
    const { rows } = await this.#db.query<{ total: number; online: number; disabled: number }>(
      `SELECT count(*)::int AS total,
              (count(*) FILTER (WHERE online))::int AS online,
              (count(*) FILTER (WHERE disabled))::int AS disabled
       FROM devices`,
    );
    return rows[0]!;
  }

  /**
   * Imports devices from CSV (header row: id,model,firmware,owner_id,owner_locale,region,batch,secret;
   * only id, model and secret are required; camelCase names work too). All or nothing: every row is
   * validated (and checked against existing ids) first; any bad row throws FL_IMPORT_INVALID whose
   * details hold the first 100 errors by line and nothing is imported. Otherwise the rows are
   * inserted in chunks within one transaction.
   */
  async importCsv(
    input: CsvInput,
    opts: { onProgress?: (imported: number) => void } = {},
  ): Promise<ImportResult> {
    const { rows, errors, errorCount } = await parseDeviceCsv(input);
    if (errorCount > 0) {
      // Report collisions with registered devices too, so one round of fixes covers the file.
      const existing = await this.#findExisting(rows);
      throw importInvalid([...errors, ...existing.first], errorCount + existing.count);
    }

    await this.#db.tx(async (q) => {
      const collisions = { first: [] as RowError[], count: 0 };
      let done = 0;
      for (let i = 0; i < rows.length; i += this.#chunkSize) {
        const chunk = rows.slice(i, i + this.#chunkSize);
        // One statement per chunk: unnest() turns 8 array parameters into rows, so the statement
        // text and its parameter count stay the same whatever the chunk size. ON CONFLICT DO
        // NOTHING: an id already registered (also one added while we run) is missing from RETURNING
        // instead of aborting the transaction, so every collision in the file gets reported.
        const columns = Array.from({ length: 8 }, (_, c) => chunk.map((r) => r.values[c]));
        const { rows: inserted } = await q.query<{ id: string }>(
          `INSERT INTO devices (id, model, firmware, owner_id, owner_locale, region, batch, secret_hash)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
           ON CONFLICT (id) DO NOTHING RETURNING id`,
          columns,
        );
        if (inserted.length < chunk.length)
          collectCollisions(chunk, new Set(inserted.map((r) => r.id)), collisions);
        if (collisions.count === 0) {
          done += chunk.length;
          opts.onProgress?.(done);
        }
      }
      // Throwing rolls back everything inserted so far.
      if (collisions.count > 0) throw importInvalid(collisions.first, collisions.count);
    });
    for (const r of rows) this.#invalidate(r.values[0]);
    this.#log?.info({ imported: rows.length }, 'devices imported');
    this.#onChange?.({ kind: 'imported', ids: rows.map((r) => r.values[0]) });
    return { imported: rows.length, errors: [] };
  }

  async #findExisting(rows: ValidRow[]): Promise<{ first: RowError[]; count: number }> {
    const collisions = { first: [] as RowError[], count: 0 };
    for (let i = 0; i < rows.length; i += this.#chunkSize) {
      const chunk = rows.slice(i, i + this.#chunkSize);
      const ids = chunk.map((r) => r.values[0]);
      const { rows: found } = await this.#db.query<{ id: string }>(
        'SELECT id FROM devices WHERE id = ANY($1::text[])',
        [ids],
      );
      if (found.length === 0) continue;
      const taken = new Set(found.map((f) => f.id));
      collectCollisions(chunk, new Set(ids.filter((id) => !taken.has(id))), collisions);
    }
    return collisions;
  }

  #invalidate(id: string): void {
    this.#cache.delete(id);
    // A lookup already under way read the row before this change; dropping it here stops it from
    // caching what it read (see #lookup).
    this.#inflight.delete(id);
  }

  #lookup(id: string): Promise<CacheEntry | null> {
    const cached = this.#cache.get(id);
    if (cached && cached.expiresAt > Date.now()) {
      this.#cache.delete(id);
      this.#cache.set(id, cached); // most recently used goes last
      return Promise.resolve(cached);
    }
    const pending = this.#inflight.get(id);
    if (pending !== undefined) return pending;
    const lookup = this.#fetches.add(id).then(
      (entry) => {
        if (this.#inflight.get(id) === lookup) {
          this.#inflight.delete(id);
          // Unknown ids are not cached: a device added by another process must work at once, and
          // a flood of made-up ids must not evict the real ones.
          if (entry) this.#remember(id, entry);
        }
        return entry;
      },
      (err: unknown) => {
        if (this.#inflight.get(id) === lookup) this.#inflight.delete(id);
        throw err;
      },
    );
    this.#inflight.set(id, lookup);
    return lookup;
  }

  async #fetchMany(ids: string[]): Promise<Array<CacheEntry | null>> {
    const { rows } = await this.#db.query<DeviceRow & { secret_hash: string }>(
      `SELECT id, model, firmware, owner_id, owner_locale, region, batch, disabled, secret_hash
       FROM devices WHERE id = ANY($1::text[])`,
      [ids],
    );
    const expiresAt = Date.now() + this.#cacheTtlMs;
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => {
      const r = byId.get(id);
      return r ? { hash: r.secret_hash, disabled: r.disabled, info: toInfo(r), expiresAt } : null;
    });
  }

  async #writeSeen(events: SeenEvent[]): Promise<undefined[]> {
    // One row per id, the latest event (the last of equal ones), as if applied one by one.
    const latest = new Map<string, SeenEvent>();
    for (const e of events) {
      const prev = latest.get(e.id);
      if (!prev || prev.at.getTime() <= e.at.getTime()) latest.set(e.id, e);
    }
    const list = [...latest.values()];
    await this.#db.query(
      `UPDATE devices d SET online = v.online, last_seen_at = v.at
       FROM unnest($1::text[], $2::boolean[], $3::timestamptz[]) AS v(id, online, at)
       WHERE d.id = v.id AND (d.last_seen_at IS NULL OR d.last_seen_at <= v.at)`,
      [list.map((e) => e.id), list.map((e) => e.online), list.map((e) => e.at)],
    );
    return events.map(() => undefined);
  }

  #remember(id: string, entry: CacheEntry): void {
    this.#cache.delete(id);
    this.#cache.set(id, entry);
    while (this.#cache.size > this.#cacheSize) {
      const oldest = this.#cache.keys().next().value;
      if (oldest === undefined) break;
      this.#cache.delete(oldest);
    }
  }
}

type RowError = { line: number; message: string };

/** Records the rows of chunk whose id is not in `fresh` as collisions with registered devices. */
function collectCollisions(
  chunk: ValidRow[],
  fresh: Set<string>,
  into: { first: RowError[]; count: number },
): void {
  for (const r of chunk) {
    if (fresh.has(r.values[0])) continue;
    into.count++;
    if (into.first.length < MAX_REPORTED_ERRORS) {
      into.first.push({ line: r.line, message: `device ${r.values[0]} already exists` });
    }
  }
}

function importInvalid(errors: RowError[], count: number): FaultlineError {
  // Each list arrives in line order, but validation errors and collisions interleave.
  const first = [...errors].sort((a, b) => a.line - b.line).slice(0, MAX_REPORTED_ERRORS);
  const head = first[0];
  return new FaultlineError(
    'FL_IMPORT_INVALID',
    `the file has ${count === 1 ? '1 invalid row' : `${count} invalid rows`}` +
      `${head ? ` (first: line ${head.line}: ${head.message})` : ''}; nothing was imported`,
    { errors: first, errorCount: count },
  );
}

/** Parses and validates a device CSV; secrets are hashed as rows are read and not kept. */
async function parseDeviceCsv(
  input: CsvInput,
): Promise<{ rows: ValidRow[]; errors: Array<{ line: number; message: string }>; errorCount: number }> {
  const errors: Array<{ line: number; message: string }> = [];
  let errorCount = 0;
  const fail = (line: number, message: string) => {
    errorCount++;
    // Rows arrive in line order, so the first ones recorded are the first by line.
    if (errors.length < MAX_REPORTED_ERRORS) errors.push({ line, message });
  };
  const rows: ValidRow[] = [];
  const seen = new Map<string, number>();
  // Salts drawn from one CSPRNG buffer per 4,096 rows: a randomBytes() call per row is a third of
  // the hashing time, and salts need to be unique and unpredictable, which slices of it are.
  let salts = randomBytes(0);
  const nextSalt = () => {
    if (salts.length === 0) salts = randomBytes(SALT_BYTES * 4096);
    const salt = salts.subarray(0, SALT_BYTES);
    salts = salts.subarray(SALT_BYTES);
    return salt;
  };
  let header: Array<keyof DeviceInput> | null = null;

  const parser = parse({
    bom: true,
    trim: true,
    skip_empty_lines: true,
    relax_column_count: true,
    info: true,
    // Explicit, because with auto-detection a file mixing \r\n and \n gets its line numbers wrong.
    record_delimiter: ['\r\n', '\n'],
    max_record_size: 64 * 1024,
  });
  const source =
    typeof input === 'string' || Buffer.isBuffer(input) ? Readable.from([input]) : Readable.from(input);
  source.on('error', (err) => parser.destroy(err));
  source.pipe(parser);

  try {
    for await (const { record, info } of parser as AsyncIterable<{
      record: string[];
      info: { lines: number };
    }>) {
      // info.lines is where the record ends; a quoted field may span lines and we report its start.
      const line = info.lines - record.reduce((n, field) => n + (field.match(/\n/g)?.length ?? 0), 0);
      if (header === null) {
        header = parseHeader(record, line);
        continue;
      }
      if (record.length !== header.length) {
        fail(line, `expected ${header.length} fields, found ${record.length}`);
        continue;
      }
      const candidate: Record<string, string> = {};
      header.forEach((field, i) => {
        const value = record[i]!;
        if (value !== '') candidate[field] = value;
      });
      const parsed = deviceInput.safeParse(candidate);
      if (!parsed.success) {
        fail(line, issuesText(parsed.error));
        continue;
      }
      const d = parsed.data;
      const first = seen.get(d.id);
      if (first !== undefined) {
        fail(line, `duplicate id ${d.id} (first on line ${first})`);
        continue;
      }
      seen.set(d.id, line);
      rows.push({
        line,
        values: [
          d.id,
          d.model,
          d.firmware ?? null,
          d.ownerId ?? null,
          d.ownerLocale ?? null,
          d.region ?? null,
          d.batch ?? null,
          hashSecret(d.secret, nextSalt()),
        ],
      });
    }
  } catch (err) {
    if (err instanceof FaultlineError) throw err;
    // A broken quote or an oversized record: the rest of the file cannot be read reliably.
    const line = (err as { lines?: number }).lines ?? 0;
    fail(line, `unreadable CSV: ${(err as Error).message}`);
  }
  if (header === null) {
    // csv-parse may fail before yielding any record, header included.
    const [first] = errors;
    throw new FaultlineError(
      'FL_IMPORT_INVALID',
      first ? `line ${first.line}: ${first.message}` : 'the file is empty: expected a header row',
      {
        errors: first ? errors : [{ line: 1, message: 'expected a header row' }],
        errorCount: Math.max(1, errorCount),
      },
    );
  }
  return { rows, errors, errorCount };
}

function parseHeader(record: string[], line: number): Array<keyof DeviceInput> {
  const problems: string[] = [];
  const fields = record.map((name) => {
    const field = CSV_COLUMNS[name.toLowerCase().replace(/[_\s-]/g, '')];
    if (!field) problems.push(`unknown column "${name}"`);
    return field;
  });
  const present = new Set(fields);
  if (present.size !== fields.length) problems.push('a column appears twice');
  for (const required of REQUIRED_CSV_COLUMNS) {
    if (!present.has(required)) problems.push(`missing column "${required}"`);
  }
  if (problems.length > 0) {
    const message = `${problems.join('; ')} (columns: id,model,firmware,owner_id,owner_locale,region,batch,secret)`;
    throw new FaultlineError('FL_IMPORT_INVALID', `bad header row: ${message}`, {
      errors: [{ line, message }],
      errorCount: 1,
    });
  }
  return fields as Array<keyof DeviceInput>;
}
