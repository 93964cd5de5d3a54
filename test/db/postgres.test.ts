/** What only a real PostgreSQL server can show: concurrent starts, and a server that is not there. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type Db, openDb } from '../../src/db/db.js';
import { MIGRATIONS } from '../../src/db/migrations.js';
import { silentLogger } from '../../src/log/logger.js';
import { sharedPostgres, stopSharedPostgres } from '../helpers/db.js';
import { freePort } from '../helpers/net.js';
import { startPostgres } from '../helpers/postgres.js';

afterAll(stopSharedPostgres);

async function emptyDatabase(): Promise<string> {
  const server = await sharedPostgres();
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return server.adminUrl.replace(/\/postgres$/, `/${name}`);
}

describe('PostgreSQL', () => {
  it('applies each migration once when several processes start at the same time', async () => {
    const url = await emptyDatabase();
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => openDb({ url, dataDir: '/nonexistent', log: silentLogger() })),
    );
    const dbs = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    try {
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      const { rows } = await dbs[0]!.query<{ id: number; n: number }>(
        'SELECT id, count(*)::int AS n FROM schema_migrations GROUP BY id ORDER BY id',
      );
      expect(rows).toEqual(MIGRATIONS.map((m) => ({ id: m.id, n: 1 })));
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
    }
  });

  it('reports an unreachable server as FL_DB_UNAVAILABLE without leaking the password', async () => {
    const port = await freePort();
    const err = await openDb({
      url: `postgres://faultline:hunter2-secret@127.0.0.1:${port}/x`,
      dataDir: '/nonexistent',
      log: silentLogger(),
    }).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(err).toMatchObject({ code: 'FL_DB_UNAVAILABLE' });
    expect(err!.message).toContain(`127.0.0.1:${port}`);
    expect(err!.message).not.toContain('hunter2');
  });

  it('turns a server that went away into FL_DB_UNAVAILABLE, keeping SQL errors as they are', async () => {
    const server = await startPostgres();
    let db: Db | undefined;
    try {
      db = await openDb({ url: server.url, dataDir: '/nonexistent', log: silentLogger() });
      await expect(db.query('SELECT nope')).rejects.toMatchObject({ code: '42703' });
      await server.stop();
      await expect(db.query('SELECT 1')).rejects.toMatchObject({ code: 'FL_DB_UNAVAILABLE' });
      await expect(db.tx((q) => q.query('SELECT 1'))).rejects.toMatchObject({ code: 'FL_DB_UNAVAILABLE' });
    } finally {
      await db?.close();
      await server.stop();
    }
  });
});
