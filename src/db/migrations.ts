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
  {
    id: 2,
    name: 'service tickets, fleet incidents and the webhook outbox',
    statements: [
      `CREATE TABLE fleet_incidents (
        id bigserial PRIMARY KEY,
        status text NOT NULL CHECK (status IN ('open', 'closed')),
        rule_id text NOT NULL,
        code text NOT NULL DEFAULT '',
        scope text NOT NULL CHECK (scope IN ('model', 'batch')),
        scope_value text NOT NULL,
        model text NOT NULL,
        title text NOT NULL,
        severity text NOT NULL,
        category text NOT NULL,
        safety boolean NOT NULL,
        team text NOT NULL,
        priority text NOT NULL CHECK (priority IN ('P1', 'P2', 'P3', 'P4')),
        priority_score real NOT NULL,
        affected_devices integer NOT NULL,
        affected_customers integer NOT NULL,
        opened_at timestamptz NOT NULL,
        last_linked_at timestamptz NOT NULL,
        closed_at timestamptz,
        updated_at timestamptz NOT NULL
      )`,
      // One open incident per rule (and fault code) and model or batch, however many bridges count.
      `CREATE UNIQUE INDEX fleet_incidents_one_open ON fleet_incidents (rule_id, code, scope, scope_value)
        WHERE status = 'open'`,
      'CREATE INDEX fleet_incidents_status_idx ON fleet_incidents (status, id)',
      `CREATE TABLE tickets (
        id bigserial PRIMARY KEY,
        fingerprint text COLLATE "C" NOT NULL,
        status text NOT NULL CHECK (status IN
          ('open', 'acknowledged', 'in_progress', 'waiting', 'recovered', 'resolved', 'closed')),
        status_before_recovery text,
        rule_id text NOT NULL,
        rule_version text NOT NULL,
        rule_file text,
        code text,
        incident_id text NOT NULL,
        title text NOT NULL,
        description text NOT NULL,
        device_id text NOT NULL,
        model text NOT NULL,
        firmware text,
        batch text,
        owner_id text,
        owner_locale text,
        region text,
        severity text NOT NULL,
        category text NOT NULL,
        safety boolean NOT NULL,
        labels jsonb NOT NULL,
        team text NOT NULL,
        priority text NOT NULL CHECK (priority IN ('P1', 'P2', 'P3', 'P4')),
        priority_score real NOT NULL,
        auto_close boolean NOT NULL,
        assignee text,
        occurrences integer NOT NULL,
        stale boolean NOT NULL,
        cycle integer NOT NULL DEFAULT 0,
        waiting_on text,
        previous_ticket_id bigint REFERENCES tickets (id),
        opened_at timestamptz NOT NULL,
        cycle_started_at timestamptz NOT NULL,
        last_fired_at timestamptz NOT NULL,
        acknowledged_at timestamptz,
        recovered_at timestamptz,
        resolved_at timestamptz,
        closed_at timestamptz,
        reopened_at timestamptz,
        response_due_at timestamptz NOT NULL,
        resolution_due_at timestamptz NOT NULL,
        response_breached_at timestamptz,
        resolution_breached_at timestamptz,
        waiting_since timestamptz,
        paused_ms bigint NOT NULL DEFAULT 0,
        response_ms bigint,
        resolution_ms bigint,
        updated_at timestamptz NOT NULL
      )`,
      // The guarantee behind "one ticket per real problem": concurrent events for one fingerprint
      // cannot both open a ticket, whichever process handles them.
      `CREATE UNIQUE INDEX tickets_one_open_per_fingerprint ON tickets (fingerprint)
        WHERE status NOT IN ('resolved', 'closed')`,
      'CREATE INDEX tickets_fingerprint_idx ON tickets (fingerprint, id)',
      'CREATE INDEX tickets_status_idx ON tickets (status, id)',
      'CREATE INDEX tickets_fleet_idx ON tickets (rule_id, model, last_fired_at)',
      `CREATE INDEX tickets_response_due_idx ON tickets (response_due_at)
        WHERE status NOT IN ('resolved', 'closed') AND response_breached_at IS NULL`,
      `CREATE INDEX tickets_resolution_due_idx ON tickets (resolution_due_at)
        WHERE status NOT IN ('resolved', 'closed') AND resolution_breached_at IS NULL`,
      `CREATE TABLE ticket_events (
        id bigserial PRIMARY KEY,
        ticket_id bigint NOT NULL REFERENCES tickets (id),
        at timestamptz NOT NULL,
        actor text NOT NULL,
        kind text NOT NULL,
        data jsonb NOT NULL,
        dedup_key text
      )`,
      'CREATE INDEX ticket_events_ticket_idx ON ticket_events (ticket_id, id)',
      // Entries that must happen once (an SLA escalation per cycle, a page) carry a dedup key.
      `CREATE UNIQUE INDEX ticket_events_once ON ticket_events (ticket_id, dedup_key)
        WHERE dedup_key IS NOT NULL`,
      `CREATE TABLE ticket_occurrences (
        id bigserial PRIMARY KEY,
        ticket_id bigint NOT NULL REFERENCES tickets (id),
        incident_id text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('fired', 'updated')),
        reason text,
        at timestamptz NOT NULL,
        device_time timestamptz NOT NULL,
        severity text NOT NULL,
        metric text,
        value jsonb,
        threshold jsonb,
        stale boolean NOT NULL,
        late boolean NOT NULL,
        evidence jsonb NOT NULL
      )`,
      'CREATE INDEX ticket_occurrences_ticket_idx ON ticket_occurrences (ticket_id, id)',
      // A rule.fired redelivered (a replay after restart) is one occurrence, not two.
      `CREATE UNIQUE INDEX ticket_occurrences_fired_once ON ticket_occurrences (incident_id)
        WHERE kind = 'fired'`,
      `CREATE TABLE ticket_links (
        id bigserial PRIMARY KEY,
        ticket_id bigint NOT NULL REFERENCES tickets (id),
        kind text NOT NULL,
        ref text NOT NULL,
        data jsonb NOT NULL,
        at timestamptz NOT NULL,
        UNIQUE (ticket_id, kind, ref)
      )`,
      'CREATE INDEX ticket_links_ref_idx ON ticket_links (kind, ref, ticket_id)',
      `CREATE TABLE ticket_sla_pauses (
        id bigserial PRIMARY KEY,
        ticket_id bigint NOT NULL REFERENCES tickets (id),
        reason text,
        started_at timestamptz NOT NULL,
        ended_at timestamptz
      )`,
      'CREATE UNIQUE INDEX ticket_sla_pauses_one_open ON ticket_sla_pauses (ticket_id) WHERE ended_at IS NULL',
      `CREATE TABLE outbox_messages (
        id bigserial PRIMARY KEY,
        topic text NOT NULL,
        kind text NOT NULL,
        idempotency_key text NOT NULL,
        payload text NOT NULL,
        created_at timestamptz NOT NULL
      )`,
      `CREATE TABLE outbox_deliveries (
        id bigserial PRIMARY KEY,
        message_id bigint NOT NULL REFERENCES outbox_messages (id),
        receiver text NOT NULL,
        status text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz,
        last_attempt_at timestamptz,
        last_status integer,
        last_error text,
        delivered_at timestamptz,
        created_at timestamptz NOT NULL,
        UNIQUE (message_id, receiver)
      )`,
      `CREATE INDEX outbox_deliveries_due_idx ON outbox_deliveries (next_attempt_at, id)
        WHERE status = 'pending'`,
      'CREATE INDEX outbox_deliveries_receiver_idx ON outbox_deliveries (receiver, id)',
      `CREATE TABLE outbox_attempts (
        id bigserial PRIMARY KEY,
        delivery_id bigint NOT NULL REFERENCES outbox_deliveries (id),
        at timestamptz NOT NULL,
        status_code integer,
        error text,
        duration_ms integer NOT NULL
      )`,
      'CREATE INDEX outbox_attempts_delivery_idx ON outbox_attempts (delivery_id, id)',
    ],
  },
  {
    id: 3,
    name: 'owners and the notifications pushed to their apps',
    statements: [
      // Only what a channel needs: no name, phone or address. quiet_hours: 'HH:MM-HH:MM', 'off',
      // or NULL for the configured default.
      `CREATE TABLE owners (
        id text COLLATE "C" PRIMARY KEY,
        locale text NOT NULL,
        timezone text,
        quiet_hours text,
        secret_hash text NOT NULL,
        push_channel text,
        push_token text,
        disabled boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL,
        updated_at timestamptz
      )`,
      // owner_id is NULL once the owner is deleted: the row stays as a pseudonymous count.
      `CREATE TABLE owner_notifications (
        id text COLLATE "C" PRIMARY KEY,
        seq bigserial NOT NULL,
        owner_id text COLLATE "C",
        kind text NOT NULL CHECK (kind IN ('guide', 'survey')),
        trigger_key text NOT NULL UNIQUE,
        ticket_id bigint,
        device_id text,
        rule_id text,
        collapse_key text NOT NULL,
        guide_id text,
        locale text,
        signal text,
        severity text,
        body jsonb,
        status text NOT NULL CHECK (status IN ('scheduled', 'sent', 'superseded', 'expired', 'cancelled')),
        held text,
        send_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        sent_at timestamptz,
        channels jsonb,
        outbox_message_id bigint,
        timeline_at timestamptz,
        delivered_at timestamptz,
        opened_at timestamptz,
        outcome text CHECK (outcome IN ('fixed', 'not_fixed')),
        outcome_at timestamptz,
        survey_score smallint CHECK (survey_score BETWEEN 1 AND 5),
        survey_text text,
        answered_at timestamptz
      )`,
      `CREATE INDEX owner_notifications_due_idx ON owner_notifications (send_at, id)
        WHERE status = 'scheduled'`,
      'CREATE INDEX owner_notifications_owner_idx ON owner_notifications (owner_id, sent_at)',
      'CREATE INDEX owner_notifications_collapse_idx ON owner_notifications (collapse_key, created_at)',
      'CREATE INDEX owner_notifications_ticket_idx ON owner_notifications (ticket_id)',
      // The push feature's place in the ticket timeline, so a restart resumes where it stopped.
      `CREATE TABLE push_cursors (
        name text PRIMARY KEY,
        event_id bigint NOT NULL,
        updated_at timestamptz NOT NULL
      )`,
    ],
  },
  {
    id: 4,
    name: 'the ticket timeline read in commit order',
    statements: [
      // Timeline ids come from a sequence, so on PostgreSQL a lower id can commit after a higher
      // one was read: a reader keyed on id alone would pass over it for good. Each entry records its
      // writing transaction; readers take entries in (tx, id) order, and only those of transactions
      // older than every one still running (pg_snapshot_xmin), which nothing can precede any more.
      // Existing entries all get this migration's transaction.
      'ALTER TABLE ticket_events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id()',
      'CREATE INDEX ticket_events_tx_idx ON ticket_events (tx, id)',
      'ALTER TABLE push_cursors ADD COLUMN tx xid8',
      // The same transaction as the existing entries: a cursor keeps its place among them.
      'UPDATE push_cursors SET tx = pg_current_xact_id()',
      'ALTER TABLE push_cursors ALTER COLUMN tx SET NOT NULL',
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
