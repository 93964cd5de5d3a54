import { describe, expect, it } from 'vitest';
import { isUniqueViolation, type Queryable } from '../../src/db/db.js';
import { applyMigrations, MIGRATIONS, type Migration } from '../../src/db/migrations.js';
import { FaultlineError } from '../../src/errors/catalogue.js';
import { silentLogger } from '../../src/log/logger.js';
import { describeBackends, freshDbPerTest, resetDb, takeBaseline, withDb } from '../helpers/db.js';

describeBackends('database', (backend) => {
  const t = freshDbPerTest(backend);

  describe('migrations', () => {
    it('creates the schema and records every migration once', async () => {
      const { db } = t();
      const { rows } = await db.query<{ id: number }>('SELECT id FROM schema_migrations ORDER BY id');
      expect(rows.map((r) => r.id)).toEqual(MIGRATIONS.map((m) => m.id));
      const tables = await db.query<{ name: string }>(
        `SELECT table_name AS name FROM information_schema.tables
         WHERE table_schema = 'public' ORDER BY table_name`,
      );
      // Other migrations add their own tables; these are the ones this layer owns.
      expect(tables.rows.map((r) => r.name)).toEqual(
        expect.arrayContaining(['dead_letters', 'devices', 'schema_migrations']),
      );
    });

    it('is idempotent: opening again applies nothing and changes nothing', async () => {
      await withDb(backend, async (ctx) => {
        const before = await ctx.db.query(
          'SELECT id, checksum, applied_at FROM schema_migrations ORDER BY id',
        );
        await ctx.db.query(
          `INSERT INTO devices (id, model, secret_hash) VALUES ('keep-me', 'm', 'sha256$x$y')`,
        );
        // PGlite's data dir is locked while open, so it is reopened after closing; PostgreSQL is
        // opened a second time alongside.
        if (ctx.backend === 'pglite') await ctx.db.close();
        const again = await ctx.openAgain();
        const after = await again.query('SELECT id, checksum, applied_at FROM schema_migrations ORDER BY id');
        expect(after.rows).toEqual(before.rows);
        expect(await applyMigrations(again, silentLogger())).toEqual([]);
        const kept = await again.query('SELECT id FROM devices');
        expect(kept.rows).toEqual([{ id: 'keep-me' }]);
      });
    });

    it('applies a new migration exactly once, in its own transaction', async () => {
      const { db } = t();
      const extra: Migration[] = [
        ...MIGRATIONS,
        {
          id: 900,
          name: 'test table',
          statements: ['CREATE TABLE extra (x int)', 'INSERT INTO extra VALUES (1)'],
        },
      ];
      expect(await applyMigrations(db, silentLogger(), extra)).toEqual([900]);
      expect(await applyMigrations(db, silentLogger(), extra)).toEqual([]);
      const { rows } = await db.query('SELECT x FROM extra');
      expect(rows).toEqual([{ x: 1 }]);
    });

    it('rolls a failing migration back entirely and does not record it', async () => {
      const { db } = t();
      const broken: Migration[] = [
        ...MIGRATIONS,
        { id: 901, name: 'broken', statements: ['CREATE TABLE half (x int)', 'SELECT no_such_function()'] },
      ];
      await expect(applyMigrations(db, silentLogger(), broken)).rejects.toThrow(/no_such_function/);
      const half = await db.query(`SELECT to_regclass('half') IS NULL AS absent`);
      expect(half.rows).toEqual([{ absent: true }]);
      const recorded = await db.query('SELECT id FROM schema_migrations WHERE id = 901');
      expect(recorded.rows).toEqual([]);
    });
  });

  describe('test helper reset', () => {
    it('returns to an empty, freshly migrated schema whatever a test changed', async () => {
      const { db } = t();
      const baseline = await takeBaseline(db);
      const state = async () => ({
        tables: (await db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"))
          .rows,
        columns: (
          await db.query(
            "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'devices'",
          )
        ).rows,
        migrations: (await db.query('SELECT id FROM schema_migrations ORDER BY id')).rows,
        devices: (await db.query('SELECT count(*)::int AS n FROM devices')).rows,
      });
      const fresh = await state();
      const letter = `INSERT INTO dead_letters (received_at, topic, reason, message, payload, payload_bytes)
                      VALUES (now(), 't', 'r', 'm', '\\x00', 1) RETURNING id`;
      expect((await db.query(letter)).rows).toEqual([{ id: '1' }]);

      // Data and a table of its own: the fast path.
      await db.query(`INSERT INTO devices (id, model, secret_hash) VALUES ('x', 'm', 'h')`);
      await db.query('CREATE TABLE scratch (x int)');
      await db.query(`INSERT INTO schema_migrations (id, name, checksum) VALUES (999, 'test', 'c')`);
      await resetDb(db, baseline);
      expect(await state()).toEqual(fresh);
      expect((await db.query(letter)).rows).toEqual([{ id: '1' }]);

      // A changed migrated table: only a full reset undoes it.
      await db.query('ALTER TABLE devices ADD COLUMN colour text');
      await db.query('CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$');
      await resetDb(db, baseline);
      expect(await state()).toEqual(fresh);
      expect((await db.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'f'")).rows).toEqual([
        { n: 0 },
      ]);
    });
  });

  describe('queries', () => {
    it('returns the same JS types on both backends', async () => {
      const { db } = t();
      const { rows } = await db.query<Record<string, unknown>>(
        `SELECT 9007199254740993::int8 AS big, 7::int AS small, true AS flag, 1.5::numeric AS num,
                '2024-03-01T10:00:00Z'::timestamptz AS at, '2024-03-01'::date AS day,
                '\\x00ff10'::bytea AS bytes, '{"a":[1,"b"]}'::jsonb AS doc, NULL::text AS nothing`,
      );
      const r = rows[0]!;
      expect(r.big).toBe('9007199254740993');
      expect(r.small).toBe(7);
      expect(r.flag).toBe(true);
      expect(r.num).toBe('1.5');
      expect(r.at).toBeInstanceOf(Date);
      expect((r.at as Date).toISOString()).toBe('2024-03-01T10:00:00.000Z');
      expect(r.day).toBe('2024-03-01');
      expect(Buffer.isBuffer(r.bytes)).toBe(true);
      expect([...(r.bytes as Buffer)]).toEqual([0, 255, 16]);
      expect(r.doc).toEqual({ a: [1, 'b'] });
      expect(r.nothing).toBeNull();
    });

    it('round-trips parameters: Date, Buffer, arrays, null', async () => {
      const { db } = t();
      const at = new Date('2025-06-01T12:34:56.789Z');
      const { rows } = await db.query<{ at: Date; b: Buffer; n: number; isnull: boolean }>(
        'SELECT $1::timestamptz AS at, $2::bytea AS b, cardinality($3::text[]) AS n, $4::text IS NULL AS isnull',
        [at, Buffer.from([1, 2, 3]), ['x', null, 'z'], null],
      );
      expect(rows[0]!.at.toISOString()).toBe(at.toISOString());
      expect([...rows[0]!.b]).toEqual([1, 2, 3]);
      expect(rows[0]!.n).toBe(3);
      expect(rows[0]!.isnull).toBe(true);
    });

    it('reports affectedRows for writes and 0 for reads', async () => {
      const { db } = t();
      await db.query('CREATE TABLE n (x int)');
      expect((await db.query('INSERT INTO n VALUES (1), (2), (3)')).affectedRows).toBe(3);
      expect((await db.query('UPDATE n SET x = x + 10 WHERE x >= 2')).affectedRows).toBe(2);
      const returning = await db.query<{ x: number }>('UPDATE n SET x = x + 1 WHERE x = 1 RETURNING x');
      expect(returning.affectedRows).toBe(1);
      expect(returning.rows).toEqual([{ x: 2 }]);
      expect((await db.query('SELECT * FROM n')).affectedRows).toBe(0);
      expect((await db.query('DELETE FROM n')).affectedRows).toBe(3);
    });

    it('keeps the SQLSTATE of SQL errors', async () => {
      const { db } = t();
      await db.query(`INSERT INTO devices (id, model, secret_hash) VALUES ('a', 'm', 'h')`);
      const err = await db.query(`INSERT INTO devices (id, model, secret_hash) VALUES ('a', 'm', 'h')`).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isUniqueViolation(err)).toBe(true);
    });

    it('refuses queries once closed', async () => {
      await withDb(backend, async ({ db }) => {
        await db.close();
        await expect(db.query('SELECT 1')).rejects.toMatchObject({ code: 'FL_DB_UNAVAILABLE' });
        await expect(db.tx(async () => 1)).rejects.toMatchObject({ code: 'FL_DB_UNAVAILABLE' });
      });
    });
  });

  describe('transactions', () => {
    it('commits when the function resolves', async () => {
      const { db } = t();
      await db.query('CREATE TABLE n (x int)');
      const result = await db.tx(async (q) => {
        await q.query('INSERT INTO n VALUES (1)');
        await q.query('INSERT INTO n VALUES (2)');
        return 'done';
      });
      expect(result).toBe('done');
      expect((await db.query('SELECT count(*)::int AS c FROM n')).rows).toEqual([{ c: 2 }]);
    });

    it('rolls back and rethrows when the function throws', async () => {
      const { db } = t();
      await db.query('CREATE TABLE n (x int)');
      const boom = new Error('boom');
      await expect(
        db.tx(async (q) => {
          await q.query('INSERT INTO n VALUES (1)');
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect((await db.query('SELECT count(*)::int AS c FROM n')).rows).toEqual([{ c: 0 }]);
      // The connection is usable afterwards.
      await db.tx((q) => q.query('INSERT INTO n VALUES (5)'));
      expect((await db.query('SELECT x FROM n')).rows).toEqual([{ x: 5 }]);
    });

    it('rolls back when a statement fails', async () => {
      const { db } = t();
      await db.query('CREATE TABLE n (x int PRIMARY KEY)');
      await expect(
        db.tx(async (q) => {
          await q.query('INSERT INTO n VALUES (1)');
          await q.query('INSERT INTO n VALUES (1)');
        }),
      ).rejects.toSatisfy(isUniqueViolation);
      expect((await db.query('SELECT count(*)::int AS c FROM n')).rows).toEqual([{ c: 0 }]);
    });

    it('fails, rather than silently rolling back, when a statement error was caught inside', async () => {
      const { db } = t();
      await db.query('CREATE TABLE n (x int PRIMARY KEY)');
      await expect(
        db.tx(async (q) => {
          await q.query('INSERT INTO n VALUES (1)');
          await q.query('INSERT INTO n VALUES (1)').catch(() => undefined);
        }),
      ).rejects.toThrow();
      expect((await db.query('SELECT count(*)::int AS c FROM n')).rows).toEqual([{ c: 0 }]);
    });

    it('refuses db.query() and db.tx() inside a transaction instead of deadlocking', async () => {
      const { db } = t();
      await expect(db.tx(() => db.query('SELECT 1'))).rejects.toMatchObject({
        code: 'FL_INTERNAL',
        message: expect.stringMatching(/transaction's handle/),
      });
      await expect(db.tx(() => db.tx(async () => 1))).rejects.toBeInstanceOf(FaultlineError);
      // Both still work outside.
      expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    });

    it('refuses the handle once its transaction has ended', async () => {
      const { db } = t();
      let leaked: Queryable | undefined;
      await db.tx(async (q) => {
        leaked = q;
      });
      await expect(leaked!.query('SELECT 1')).rejects.toMatchObject({ code: 'FL_INTERNAL' });
    });

    it('serves a query issued while a transaction is open, without deadlock', async () => {
      const { db } = t();
      await db.query('CREATE TABLE n (x int)');
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let inserted!: () => void;
      const insertedOnce = new Promise<void>((r) => {
        inserted = r;
      });
      const tx = db.tx(async (q) => {
        await q.query('INSERT INTO n VALUES (1)');
        inserted();
        await gate;
        await q.query('INSERT INTO n VALUES (2)');
      });
      await insertedOnce;
      // Issued from outside while the transaction is open and waiting.
      const outside = db.query<{ c: number }>('SELECT count(*)::int AS c FROM n');
      release();
      const [, seen] = await Promise.all([tx, outside]);
      if (backend.name === 'pglite') {
        // One connection: the query waited for the commit, so it sees both rows.
        expect(seen.rows).toEqual([{ c: 2 }]);
      } else {
        // Its own connection: it ran at once, and never sees uncommitted rows.
        expect([0, 2]).toContain(seen.rows[0]!.c);
      }
      expect((await db.query('SELECT count(*)::int AS c FROM n')).rows).toEqual([{ c: 2 }]);
    });

    it('keeps a counter exact under many concurrent transactions and queries', async () => {
      const { db } = t();
      await db.query('CREATE TABLE counter (v int NOT NULL)');
      await db.query('INSERT INTO counter VALUES (0)');
      const work = Array.from({ length: 60 }, (_, i) =>
        i % 3 === 0
          ? db.query('SELECT v FROM counter')
          : db.tx(async (q) => {
              const { rows } = await q.query<{ v: number }>('SELECT v FROM counter FOR UPDATE');
              await q.query('UPDATE counter SET v = $1', [rows[0]!.v + 1]);
            }),
      );
      await Promise.all(work);
      expect((await db.query('SELECT v FROM counter')).rows).toEqual([{ v: 40 }]);
    });
  });
});
