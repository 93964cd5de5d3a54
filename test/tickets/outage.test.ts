/** A database that goes away: rule events wait for it instead of being dropped. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Db, openDb } from '../../src/db/db.js';
import { silentLogger } from '../../src/log/logger.js';
import { type PostgresServer, startPostgres } from '../helpers/postgres.js';
import { count, fired, rig } from './fixtures.js';

let pg: PostgresServer;
let db: Db;

beforeAll(async () => {
  pg = await startPostgres();
  db = await openDb({ url: pg.url, dataDir: '/nonexistent-unused', log: silentLogger() });
}, 60_000);
afterAll(async () => {
  await db?.close();
  await pg?.stop();
});

describe('tickets during a PostgreSQL outage', { timeout: 60_000 }, () => {
  it('keeps a rule event that arrives while the database is down and opens its ticket when it is back', async () => {
    const { service } = rig(db);
    await pg.halt();
    const handling = service.handleFired(fired({ deviceId: 'ac-outage' }));
    // Wait until the pool itself sees the server gone, so the event's first attempt certainly failed.
    await expect(db.query('SELECT 1')).rejects.toMatchObject({ code: 'FL_DB_UNAVAILABLE' });
    await pg.resume();
    const outcome = await handling;
    expect(outcome.action).toBe('opened');
    expect(
      await count(db, `SELECT count(*) FROM tickets WHERE fingerprint = 'ac-compressor-overheat:ac-outage'`),
    ).toBe(1);
  });
});
