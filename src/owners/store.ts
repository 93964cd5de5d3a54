/**
 * Appliance owners as the push feature knows them: a pseudonymous id the owner
 * app's backend assigns, a locale and time zone, a secret the app presents,
 * and only what a push channel needs (a channel name and token). No name,
 * phone number or address is ever stored. Secrets are hashed like device
 * secrets (see src/registry/credentials.ts) and never returned.
 */
import { z } from 'zod';
import { OWNER_ID_PATTERN } from '../contract/index.js';
import { type Db, isUniqueViolation, type Queryable } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';
import {
  DUMMY_HASH,
  hashSecret,
  MAX_SECRET_LENGTH,
  MIN_SECRET_LENGTH,
  verifySecret,
} from '../registry/credentials.js';
import { LOCALE_PATTERN } from '../registry/devices.js';
import { isTimeZone, QUIET_HOURS_PATTERN } from './fields.js';

const fields = {
  locale: z.string().max(35).regex(LOCALE_PATTERN, 'a language tag such as en or zh-CN'),
  timezone: z
    .string()
    .max(64)
    .refine(isTimeZone, 'an IANA time zone such as Asia/Shanghai')
    .nullish()
    .describe('for quiet hours; default push.defaultTimezone'),
  quietHours: z
    .string()
    .regex(QUIET_HOURS_PATTERN, '"HH:MM-HH:MM" (local time, may wrap midnight) or "off"')
    .nullish()
    .describe('no notifications in this local-time window except DANGER; default push.quietHours'),
  pushChannel: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}$/, 'a short name such as fcm, apns, hms, mipush')
    .nullish()
    .describe('which push service the token belongs to, for the gateway'),
  pushToken: z.string().min(1).max(1024).nullish().describe("the app's device token for that service"),
};

const secret = z
  .string()
  .min(MIN_SECRET_LENGTH, `owner secrets must be at least ${MIN_SECRET_LENGTH} characters`)
  .max(MAX_SECRET_LENGTH);

export const ownerInput = z.strictObject({
  id: z.string().regex(OWNER_ID_PATTERN, 'not a valid owner id (letters, digits and _ . : -, at most 128)'),
  secret,
  ...fields,
});
export type OwnerInput = z.input<typeof ownerInput>;

/** What an admin or the app itself may change; a new secret rotates the credential. */
export const ownerUpdate = z.strictObject({
  secret: secret.optional(),
  locale: fields.locale.optional(),
  timezone: fields.timezone,
  quietHours: fields.quietHours,
  pushChannel: fields.pushChannel,
  pushToken: fields.pushToken,
  disabled: z.boolean().optional(),
});
export type OwnerUpdate = z.input<typeof ownerUpdate>;

export type OwnerRecord = {
  id: string;
  locale: string;
  timezone: string | null;
  quietHours: string | null;
  pushChannel: string | null;
  /** Whether a token is stored; the token itself is only in the owner's export. */
  hasPushToken: boolean;
  disabled: boolean;
  createdAt: string;
  updatedAt: string | null;
};

/** The fields push delivery needs, token included. */
export interface OwnerContact {
  id: string;
  locale: string;
  timezone: string | null;
  quietHours: string | null;
  pushChannel: string | null;
  pushToken: string | null;
  disabled: boolean;
}

interface OwnerRow {
  id: string;
  locale: string;
  timezone: string | null;
  quiet_hours: string | null;
  push_channel: string | null;
  push_token: string | null;
  disabled: boolean;
  created_at: Date;
  updated_at: Date | null;
}

const COLUMNS =
  'id, locale, timezone, quiet_hours, push_channel, push_token, disabled, created_at, updated_at';
export const MAX_IMPORT = 10_000;

function toRecord(r: OwnerRow): OwnerRecord {
  return {
    id: r.id,
    locale: r.locale,
    timezone: r.timezone,
    quietHours: r.quiet_hours,
    pushChannel: r.push_channel,
    hasPushToken: r.push_token !== null,
    disabled: r.disabled,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at?.toISOString() ?? null,
  };
}

function toContact(r: OwnerRow): OwnerContact {
  return {
    id: r.id,
    locale: r.locale,
    timezone: r.timezone,
    quietHours: r.quiet_hours,
    pushChannel: r.push_channel,
    pushToken: r.push_token,
    disabled: r.disabled,
  };
}

function validationError(err: z.ZodError, prefix = ''): FaultlineError {
  return new FaultlineError(
    'FL_VALIDATION',
    `${prefix}${err.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`,
    err.issues.map((i) => ({ path: `/${i.path.join('/')}`, message: i.message })),
  );
}

export type OwnerAuthResult = 'ok' | 'unknown_owner' | 'bad_secret' | 'disabled';

export class OwnerStore {
  readonly #db: Db;
  readonly #now: () => number;

  constructor(db: Db, options: { now?: () => number } = {}) {
    this.#db = db;
    this.#now = options.now ?? Date.now;
  }

  async add(input: OwnerInput): Promise<OwnerRecord> {
    const parsed = ownerInput.safeParse(input);
    if (!parsed.success) throw validationError(parsed.error);
    const o = parsed.data;
    try {
      const { rows } = await this.#db.query<OwnerRow>(
        `INSERT INTO owners (id, locale, timezone, quiet_hours, secret_hash, push_channel, push_token, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
        [
          o.id,
          o.locale,
          o.timezone ?? null,
          o.quietHours ?? null,
          hashSecret(o.secret),
          o.pushChannel ?? null,
          o.pushToken ?? null,
          new Date(this.#now()),
        ],
      );
      return toRecord(rows[0]!);
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new FaultlineError('FL_CONFLICT', `owner ${o.id} already exists`, { id: o.id });
      }
      throw err;
    }
  }

  /**
   * Registers many owners in one transaction: all or none. Every bad entry is reported (index and
   * reason) in FL_IMPORT_INVALID's details. With upsert, existing owners are updated (a new
   * secret, locale, token); without it an existing id is an error.
   */
  async importMany(
    input: unknown[],
    options: { upsert?: boolean } = {},
  ): Promise<{ created: number; updated: number }> {
    if (input.length > MAX_IMPORT) {
      throw new FaultlineError('FL_VALIDATION', `at most ${MAX_IMPORT} owners per import`, {
        count: input.length,
      });
    }
    const errors: Array<{ index: number; id?: string; message: string }> = [];
    const valid: Array<z.infer<typeof ownerInput>> = [];
    const seen = new Set<string>();
    input.forEach((raw, index) => {
      const parsed = ownerInput.safeParse(raw);
      if (!parsed.success) {
        const id = (raw as { id?: unknown } | null)?.id;
        errors.push({
          index,
          ...(typeof id === 'string' ? { id } : {}),
          message: parsed.error.issues
            .map((i) => `${i.path.join('.') || '(entry)'}: ${i.message}`)
            .join('; '),
        });
        return;
      }
      if (seen.has(parsed.data.id)) {
        errors.push({ index, id: parsed.data.id, message: 'the same id appears earlier in this import' });
        return;
      }
      seen.add(parsed.data.id);
      valid.push(parsed.data);
    });
    const refuse = () =>
      new FaultlineError('FL_IMPORT_INVALID', `${errors.length} owner(s) refused; nothing was imported`, {
        errors: errors.slice(0, 100),
        errorCount: errors.length,
      });
    if (errors.length > 0) throw refuse();
    if (valid.length === 0) return { created: 0, updated: 0 };
    const at = new Date(this.#now());
    const cols = {
      id: valid.map((o) => o.id),
      locale: valid.map((o) => o.locale),
      timezone: valid.map((o) => o.timezone ?? null),
      quiet: valid.map((o) => o.quietHours ?? null),
      hash: valid.map((o) => hashSecret(o.secret)),
      channel: valid.map((o) => o.pushChannel ?? null),
      token: valid.map((o) => o.pushToken ?? null),
    };
    return this.#db.tx(async (q) => {
      const existing = await q.query<{ id: string }>('SELECT id FROM owners WHERE id = ANY($1::text[])', [
        cols.id,
      ]);
      if (existing.rows.length > 0 && !options.upsert) {
        const taken = new Set(existing.rows.map((r) => r.id));
        valid.forEach((o, index) => {
          if (taken.has(o.id))
            errors.push({ index, id: o.id, message: 'already exists (import with upsert)' });
        });
        throw refuse();
      }
      await q.query(
        `INSERT INTO owners (id, locale, timezone, quiet_hours, secret_hash, push_channel, push_token, created_at)
         SELECT *, $8::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
           $6::text[], $7::text[])
         ON CONFLICT (id) DO UPDATE SET locale = EXCLUDED.locale, timezone = EXCLUDED.timezone,
           quiet_hours = EXCLUDED.quiet_hours, secret_hash = EXCLUDED.secret_hash,
           push_channel = EXCLUDED.push_channel, push_token = EXCLUDED.push_token, updated_at = $8`,
        [cols.id, cols.locale, cols.timezone, cols.quiet, cols.hash, cols.channel, cols.token, at],
      );
      return { created: valid.length - existing.rows.length, updated: existing.rows.length };
    });
  }

  async get(id: string): Promise<OwnerRecord | null> {
    const { rows } = await this.#db.query<OwnerRow>(`SELECT ${COLUMNS} FROM owners WHERE id = $1`, [id]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async contact(id: string, q: Queryable = this.#db): Promise<OwnerContact | null> {
    const { rows } = await q.query<OwnerRow>(`SELECT ${COLUMNS} FROM owners WHERE id = $1`, [id]);
    return rows[0] ? toContact(rows[0]) : null;
  }

  async update(id: string, input: OwnerUpdate): Promise<OwnerRecord> {
    const parsed = ownerUpdate.safeParse(input);
    if (!parsed.success) throw validationError(parsed.error);
    const u = parsed.data;
    const sets: string[] = [];
    const params: unknown[] = [id];
    const set = (column: string, value: unknown) => {
      params.push(value);
      sets.push(`${column} = $${params.length}`);
    };
    if (u.secret !== undefined) set('secret_hash', hashSecret(u.secret));
    if (u.locale !== undefined) set('locale', u.locale);
    if (u.timezone !== undefined) set('timezone', u.timezone);
    if (u.quietHours !== undefined) set('quiet_hours', u.quietHours);
    if (u.pushChannel !== undefined) set('push_channel', u.pushChannel);
    if (u.pushToken !== undefined) set('push_token', u.pushToken);
    if (u.disabled !== undefined) set('disabled', u.disabled);
    set('updated_at', new Date(this.#now()));
    const { rows } = await this.#db.query<OwnerRow>(
      `UPDATE owners SET ${sets.join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`,
      params,
    );
    if (!rows[0]) throw new FaultlineError('FL_NOT_FOUND', `no owner ${id}`, { id });
    return toRecord(rows[0]);
  }

  /** Constant-time enough: an unknown owner costs the same hash as a known one. */
  async authenticate(id: string, presented: string): Promise<OwnerAuthResult> {
    const { rows } = await this.#db.query<{ secret_hash: string; disabled: boolean }>(
      'SELECT secret_hash, disabled FROM owners WHERE id = $1',
      [id],
    );
    const row = rows[0];
    const ok = verifySecret(presented, row?.secret_hash ?? DUMMY_HASH);
    if (!row) return 'unknown_owner';
    if (!ok) return 'bad_secret';
    return row.disabled ? 'disabled' : 'ok';
  }
}
