import { expect, it } from 'vitest';
import { ticketsConfig } from '../../src/tickets/config.js';
import { TicketService } from '../../src/tickets/service.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { clock, count, fired, MINUTE, resolved, T0 } from './fixtures.js';

const FINGERPRINTS = 100;
const EVENTS_PER_FINGERPRINT = 5;

/** Deterministic shuffle, so a failure can be rerun with the same interleaving of submissions. */
function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Upper bound for the 500-event runs: PGlite runs every statement on one connection, on a shared machine. */
const SLOW = 180_000;

describeBackends('tickets under concurrency', (backend) => {
  const t = freshDbPerTest(backend);

  /**
   * On PostgreSQL, two services with their own connection pools stand for two bridges sharing one
   * database: events of one fingerprint race between them, which only the unique index settles.
   * PGlite is one process's embedded database, so there is one service.
   */
  async function services(config = ticketsConfig()): Promise<TicketService[]> {
    const c = clock();
    const dbs = [t().db];
    if (backend.name === 'postgres') dbs.push(await t().openAgain());
    // 8 at a time each: 16 transactions in flight, below the two pools' 20 connections.
    return dbs.map((db) => new TicketService({ db, config, now: c.now, maxConcurrentEvents: 8 }));
  }

  it(
    `opens exactly ${FINGERPRINTS} tickets for ${FINGERPRINTS * EVENTS_PER_FINGERPRINT} concurrent firing events`,
    async () => {
      const all = await services(ticketsConfig({ fleet: { scopes: ['model'] } }));

      const events = shuffle(
        Array.from({ length: FINGERPRINTS * EVENTS_PER_FINGERPRINT }, (_, i) =>
          fired({
            deviceId: `ac-${String(i % FINGERPRINTS).padStart(3, '0')}`,
            firingSince: T0 + Math.floor(i / FINGERPRINTS) * 1000,
          }),
        ),
        42,
      );
      const outcomes = await Promise.all(events.map((e, i) => all[i % all.length]!.handleFired(e)));

      const db = t().db;
      expect(await count(db, 'SELECT count(*) FROM tickets')).toBe(FINGERPRINTS);
      expect(await count(db, 'SELECT count(DISTINCT fingerprint) FROM tickets')).toBe(FINGERPRINTS);
      expect(outcomes.filter((o) => o.action === 'opened')).toHaveLength(FINGERPRINTS);
      expect(outcomes.filter((o) => o.action === 'appended')).toHaveLength(
        FINGERPRINTS * (EVENTS_PER_FINGERPRINT - 1),
      );
      expect(await count(db, 'SELECT sum(occurrences) FROM tickets')).toBe(
        FINGERPRINTS * EVENTS_PER_FINGERPRINT,
      );
      expect(await count(db, 'SELECT count(*) FROM ticket_occurrences')).toBe(
        FINGERPRINTS * EVENTS_PER_FINGERPRINT,
      );
      expect(await count(db, `SELECT count(*) FROM ticket_events WHERE kind = 'ticket.opened'`)).toBe(
        FINGERPRINTS,
      );
      expect(await count(db, 'SELECT max(occurrences) - min(occurrences) FROM tickets')).toBe(0);
      // The same race decides the fleet incident: one, holding every ticket once.
      expect(await count(db, 'SELECT count(*) FROM fleet_incidents')).toBe(1);
      expect(await count(db, `SELECT count(*) FROM ticket_links WHERE kind = 'fleet_incident'`)).toBe(
        FINGERPRINTS,
      );
      expect(await count(db, 'SELECT affected_customers FROM fleet_incidents')).toBe(FINGERPRINTS);
    },
    SLOW,
  );

  it('counts a redelivered event once however many copies race', async () => {
    const all = await services();
    const e = fired();
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => all[i % all.length]!.handleFired(e)),
    );
    expect(outcomes.filter((o) => o.action === 'opened')).toHaveLength(1);
    expect(outcomes.filter((o) => o.action === 'duplicate')).toHaveLength(19);
    expect(await count(t().db, 'SELECT occurrences FROM tickets')).toBe(1);
  });

  it("applies each fingerprint's events in the order they were emitted", async () => {
    // fired, resolved, fired, resolved for 30 devices, all submitted at once: every ticket must
    // end recovered after two occurrences, never open with its last resolve overtaken.
    const [service] = await services();
    const work: Array<Promise<unknown>> = [];
    for (let d = 0; d < 30; d++) {
      for (let round = 0; round < 2; round++) {
        const e = fired({ deviceId: `ac-${d}`, firingSince: T0 + round * MINUTE });
        work.push(service!.handleFired(e), service!.handleResolved(resolved(e)));
      }
    }
    await Promise.all(work);
    expect(
      await count(t().db, `SELECT count(*) FROM tickets WHERE status = 'recovered' AND occurrences = 2`),
    ).toBe(30);
  });
});
