/**
 * Fleet-incident linking runs under a per-rule database lock after a ticket commits. While that
 * lock is busy (another bridge's check, or a burst of this rule's tickets), new firings must still
 * open their tickets at once: the wait must not take the rule-event slots that ticket opening
 * needs. Here another session holds the rule's lock, more firings arrive than there are slots, and
 * every ticket must open before the lock is released; once it is, linking catches up exactly as
 * documented (one incident, every ticket linked once).
 *
 * PostgreSQL only: the lock is held from a second session, which PGlite (one connection) has not.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ticketsConfig } from '../../src/tickets/config.js';
import { TicketService } from '../../src/tickets/service.js';
import { postgresBackend, stopSharedPostgres, type TestDb } from '../helpers/db.js';
import { clock, count, fired } from './fixtures.js';

/** The ticket service's advisory-lock key of a rule's fleet check. */
const fleetLockKey = (ruleId: string) =>
  createHash('sha256').update(`faultline.fleet:${ruleId}`).digest().readBigInt64BE(0).toString();

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('fleet linking does not hold up ticket opening [postgres]', () => {
  let t: TestDb | null = null;
  let holder: pg.Client | null = null;
  afterAll(async () => {
    await holder?.end();
    await t?.dispose();
    await stopSharedPostgres();
  });

  it('opens every ticket while the fleet lock is busy, then links them all to one incident', async () => {
    t = await postgresBackend.open();
    const service = new TicketService({
      db: t.db,
      config: ticketsConfig({ fleet: { threshold: 5, scopes: ['model'] } }),
      now: clock().now,
      maxConcurrentEvents: 4,
    });
    holder = new pg.Client({ connectionString: t.options.url });
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [fleetLockKey('ac-compressor-overheat')]);

    const firings = Array.from({ length: 12 }, (_, i) => service.handleFired(fired({ deviceId: `ac-${i}` })));
    // Three times the slots: with the fleet wait inside a slot, only the first 4 would ever open.
    await until('12 tickets to open while the fleet lock is held', async () => {
      return (await count(t!.db, 'SELECT count(*) FROM tickets')) === 12;
    });
    expect(await count(t.db, 'SELECT count(*) FROM fleet_incidents')).toBe(0);

    await holder.query('SELECT pg_advisory_unlock($1::bigint)', [fleetLockKey('ac-compressor-overheat')]);
    const outcomes = await Promise.all(firings);
    expect(outcomes.map((o) => o.action)).toEqual(Array(12).fill('opened'));
    expect(await count(t.db, 'SELECT count(*) FROM fleet_incidents')).toBe(1);
    expect(await count(t.db, "SELECT count(*) FROM ticket_links WHERE kind = 'fleet_incident'")).toBe(12);
    expect(await count(t.db, "SELECT count(*) FROM ticket_events WHERE kind = 'fleet.linked'")).toBe(12);
    expect(await count(t.db, 'SELECT affected_devices FROM fleet_incidents')).toBe(12);
  });
});
