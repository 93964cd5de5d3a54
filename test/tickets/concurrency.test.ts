import { expect, it } from 'vitest';
import { ticketsConfig } from '../../src/tickets/config.js';
import { TicketService } from '../../src/tickets/service.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { clock, count, fired, T0 } from './fixtures.js';

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

describeBackends('tickets under concurrency', (backend) => {
  const t = freshDbPerTest(backend);

  it(`opens exactly ${FINGERPRINTS} tickets for ${FINGERPRINTS * EVENTS_PER_FINGERPRINT} concurrent firing events`, async () => {
    const c = clock();
    const config = ticketsConfig({ fleet: { scopes: ['model'] } });
    const dbs = [t().db];
    // On PostgreSQL, two services with their own connection pools stand for two bridges sharing
    // one database; PGlite is one process's embedded database, so there is one.
    if (backend.name === 'postgres') dbs.push(await t().openAgain());
    const services = dbs.map((db) => new TicketService({ db, config, now: c.now }));

    const events = shuffle(
      Array.from({ length: FINGERPRINTS * EVENTS_PER_FINGERPRINT }, (_, i) =>
        fired({
          deviceId: `ac-${String(i % FINGERPRINTS).padStart(3, '0')}`,
          firingSince: T0 + Math.floor(i / FINGERPRINTS) * 1000,
        }),
      ),
      42,
    );
    const outcomes = await Promise.all(events.map((e, i) => services[i % services.length]!.handleFired(e)));

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
  });

  it('counts a redelivered event once however many copies race', async () => {
    const { service } = {
      service: new TicketService({ db: t().db, config: ticketsConfig(), now: clock().now }),
    };
    const e = fired();
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => service.handleFired(e)));
    expect(outcomes.filter((o) => o.action === 'opened')).toHaveLength(1);
    expect(outcomes.filter((o) => o.action === 'duplicate')).toHaveLength(19);
    expect(await count(t().db, 'SELECT occurrences FROM tickets')).toBe(1);
  });
});
