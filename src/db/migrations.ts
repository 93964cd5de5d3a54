/**
 * Schema migrations, as TypeScript strings so the build needs no file copying.
 * Append only: a migration that has shipped is never edited (its checksum is
 * recorded and a change is reported at start); fix forward with a new one.
 * Each statement is separate because PGlite's query() runs one statement per
 * call (extended protocol), and both backends must take the same path.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import type { Queryable } from './db.js';

export interface Migration {
  id: number;
  name: string;
  statements: readonly string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    name: 'devices and dead letters',
    statements: [
      // COLLATE "C": keyset pagination orders by id, and byte order is the same on every server
      // whatever locale initdb chose, and cheaper to compare.
      `CREATE TABLE devices (
        id text COLLATE "C" PRIMARY KEY,
        model text NOT NULL,
        firmware text,
        owner_id text,
        owner_locale text,
        region text,
        batch text,
        secret_hash text NOT NULL,
        disabled boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz,
        last_seen_at timestamptz,
        online boolean NOT NULL DEFAULT false
      )`,
      // (column, id) rather than (column): a filtered page is then one index range scan in id order.
      'CREATE INDEX devices_model_idx ON devices (model, id)',
      'CREATE INDEX devices_owner_idx ON devices (owner_id, id)',
      `CREATE TABLE dead_letters (
        id bigserial PRIMARY KEY,
        received_at timestamptz NOT NULL,
        device_id text,
        topic text NOT NULL,
        reason text NOT NULL,
        message text NOT NULL,
        payload bytea NOT NULL,
        payload_bytes integer NOT NULL,
        CONSTRAINT dead_letters_payload_capped CHECK (octet_length(payload) <= 1048576)
      )`,
      // Listing is newest first by (received_at, id), optionally per reason or device.
      'CREATE INDEX dead_letters_received_idx ON dead_letters (received_at, id)',
      'CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, received_at, id)',
      'CREATE INDEX dead_letters_device_idx ON dead_letters (device_id, received_at, id)',
    ],
  },
];

/** Any constant works; it only has to be the same in every Faultline process sharing a database. */
const MIGRATION_LOCK_KEY = 0x46_4c_4d_47; // "FLMG"

export function migrationChecksum(m: Migration): string {
  return createHash('sha256').update(m.statements.join('\n;\n')).digest('hex');
}

interface TxRunner {
  tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
}

/**
 * Takes the migration lock for the rest of the transaction and makes sure the bookkeeping table
 * exists. The advisory lock serializes concurrent starts against one PostgreSQL (two bridges, or a
 * bridge and a CLI), so a migration is never applied twice; on PGlite it is a no-op that keeps one
 * code path.
 */
async function lockAndEnsureTable(q: Queryable): Promise<void> {
  await q.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
  await q.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    id integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
}

/** Applies pending migrations, each in its own transaction; returns the ids applied now. */
export async function applyMigrations(
  db: TxRunner,
  log: Logger,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  const applied = await db.tx(async (q) => {
    await lockAndEnsureTable(q);
    const { rows } = await q.query<{ id: number; checksum: string }>(
      'SELECT id, checksum FROM schema_migrations ORDER BY id',
    );
    return new Map(rows.map((r) => [r.id, r.checksum]));
  });

  const known = new Set(migrations.map((m) => m.id));
  const newer = [...applied.keys()].filter((id) => !known.has(id));
  if (newer.length > 0) {
    log.warn(
      { unknownMigrations: newer },
      'the database was migrated by a newer Faultline; this version may not understand its schema',
    );
  }
  for (const m of migrations) {
    const sum = applied.get(m.id);
    if (sum !== undefined && sum !== migrationChecksum(m)) {
      log.warn({ migration: m.id, name: m.name }, 'an applied migration was edited since it ran');
    }
  }

  const done: number[] = [];
  for (const m of migrations) {
    if (applied.has(m.id)) continue;
    const ran = await db.tx(async (q) => {
      await lockAndEnsureTable(q);
      // Re-check under the lock: a concurrent start may have applied it since we looked.
      const { rows } = await q.query('SELECT 1 FROM schema_migrations WHERE id = $1', [m.id]);
      if (rows.length > 0) return false;
      for (const statement of m.statements) await q.query(statement);
      await q.query('INSERT INTO schema_migrations (id, name, checksum) VALUES ($1, $2, $3)', [
        m.id,
        m.name,
        migrationChecksum(m),
      ]);
      return true;
    });
    if (ran) {
      done.push(m.id);
      log.info({ migration: m.id, name: m.name }, 'applied database migration');
    }
  }
  return done;
}
