/**
 * Runs one test suite against both database backends, each test on a fresh,
 * empty, migrated database:
 *
 *   describeBackends('device registry', (backend) => {
 *     const t = freshDbPerTest(backend);
 *     it('adds', async () => { const reg = new DeviceRegistry(t().db); ... });
 *   });
 *
 * `backends` is the plain list, for describe.each of your own. PGlite: a temp dataDir per database. Creating a PGlite from nothing (its initdb)
 * takes ~5 s, so each worker does that once into a template and copies it.
 * PostgreSQL: one server per test file (started on first use, stopped after the
 * file), and a fresh `CREATE DATABASE t_<random>` per database.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe } from 'vitest';
import { type Db, type OpenDbOptions, openDb } from '../../src/db/db.js';
import { applyMigrations } from '../../src/db/migrations.js';
import { silentLogger } from '../../src/log/logger.js';
import { type PostgresServer, startPostgres } from './postgres.js';

export type BackendName = 'pglite' | 'postgres';

export interface TestDb {
  backend: BackendName;
  db: Db;
  /** Opens the same storage again (on PGlite, close `db` first: the data dir is locked). */
  options: OpenDbOptions;
  /** Opens another Db on the same storage; it is closed by dispose(). */
  openAgain(): Promise<Db>;
  /** Closes every Db opened here and deletes the storage. */
  dispose(): Promise<void>;
}

export interface Backend {
  name: BackendName;
  open(): Promise<TestDb>;
}

let template: Promise<string> | null = null;

function pgliteVersion(): string {
  let dir = dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === '@electric-sql/pglite' && pkg.version) return pkg.version;
    }
    const up = dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
}

/**
 * A PGlite data directory that has been through initdb (nothing else), shared by every test file
 * and run on this machine: tmpdir/faultline-pglite-template-<pglite version>-<uid>. It is built in
 * a staging dir and renamed into place, so a reader never sees a half-made one, and two workers
 * building it at once both succeed. It is only ever copied, never opened, so it cannot go stale
 * within a PGlite version. Delete it freely; the next run rebuilds it (~5 s).
 */
function pgliteTemplate(): Promise<string> {
  template ??= (async () => {
    const final = join(tmpdir(), `faultline-pglite-template-${pgliteVersion()}-${process.getuid?.() ?? 0}`);
    if (existsSync(join(final, 'PG_VERSION'))) return final;
    const staging = mkdtempSync(`${final}.staging-`);
    try {
      const pglite = await PGlite.create(staging);
      await pglite.close();
      try {
        renameSync(staging, final);
      } catch (err) {
        // Another worker got there first: its template is as good as ours.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      }
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    return final;
  })();
  return template;
}

let server: Promise<PostgresServer> | null = null;

export function sharedPostgres(): Promise<PostgresServer> {
  server ??= startPostgres();
  return server;
}

export async function stopSharedPostgres(): Promise<void> {
  const pending = server;
  server = null;
  if (pending !== null) await (await pending).stop();
}

function tracked(
  backend: BackendName,
  options: OpenDbOptions,
  first: Db,
  removeStorage: () => Promise<void>,
): TestDb {
  const opened: Db[] = [first];
  return {
    backend,
    db: first,
    options,
    async openAgain() {
      const db = await openDb(options);
      opened.push(db);
      return db;
    },
    async dispose() {
      for (const db of opened) await db.close();
      await removeStorage();
    },
  };
}

export const pgliteBackend: Backend = {
  name: 'pglite',
  async open() {
    const source = await pgliteTemplate();
    const dataDir = mkdtempSync(join(tmpdir(), 'faultline-pglite-'));
    cpSync(source, join(dataDir, 'db'), { recursive: true });
    const options: OpenDbOptions = { dataDir, log: silentLogger() };
    const db = await openDb(options);
    return tracked('pglite', options, db, async () => rmSync(dataDir, { recursive: true, force: true }));
  },
};

export const postgresBackend: Backend = {
  name: 'postgres',
  async open() {
    const s = await sharedPostgres();
    const name = `t_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: s.adminUrl });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    const url = s.adminUrl.replace(/\/postgres$/, `/${name}`);
    // dataDir is unused with a URL, but must not be shared state: point it at a throwaway path.
    const options: OpenDbOptions = {
      url,
      dataDir: join(tmpdir(), `faultline-unused-${name}`),
      log: silentLogger(),
    };
    const db = await openDb(options);
    return tracked('postgres', options, db, async () => {
      const c = new pg.Client({ connectionString: s.adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    });
  },
};

export const backends: Backend[] = [pgliteBackend, postgresBackend];

/** describe.each over both backends; stops this file's PostgreSQL server afterwards. */
export function describeBackends(title: string, body: (backend: Backend) => void): void {
  describe.each(backends)(`${title} [$name]`, (backend) => body(backend));
  afterAll(stopSharedPostgres);
}

/**
 * Gives each test an empty, migrated database: one database per describe block, reset before
 * each test (see resetDb), because a new PGlite costs ~1 s. Tests must not close `db`; a test
 * that closes or reopens it opens its own with `withDb(backend, ...)`.
 */
export function freshDbPerTest(backend: Backend): () => TestDb {
  let current: TestDb | null = null;
  let baseline: Baseline | null = null;
  beforeAll(async () => {
    current = await backend.open();
    baseline = await takeBaseline(current.db);
  });
  beforeEach(async () => {
    if (!current || !baseline) throw new Error('no test database');
    await resetDb(current.db, baseline);
  });
  afterAll(async () => {
    const c = current;
    current = null;
    await c?.dispose();
  });
  return () => {
    if (!current) throw new Error('no test database: call the getter inside a test');
    return current;
  };
}

/** The schema right after migrating: its tables, its applied migrations, and a fingerprint of every object. */
export interface Baseline {
  tables: Set<string>;
  migrations: number[];
  fingerprint: string;
}

/** Names (and shapes) of everything in the public schema, as one hash. */
async function fingerprint(db: Db): Promise<string> {
  const { rows } = await db.query<{ fp: string | null }>(
    `SELECT md5(string_agg(x, ',' ORDER BY x)) AS fp FROM (
       SELECT 'c:' || c.relname || ':' || c.relkind::text || ':' || c.relnatts AS x
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
       UNION ALL SELECT 'p:' || p.proname || ':' || p.pronargs
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
       UNION ALL SELECT 't:' || t.typname
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND t.typrelid = 0
       UNION ALL SELECT 'k:' || k.conname
         FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'public'
     ) s`,
  );
  return rows[0]?.fp ?? '';
}

async function publicTables(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
  );
  return rows.map((r) => r.name);
}

export async function takeBaseline(db: Db): Promise<Baseline> {
  const { rows } = await db.query<{ id: number }>('SELECT id FROM schema_migrations ORDER BY id');
  return {
    tables: new Set(await publicTables(db)),
    migrations: rows.map((r) => r.id),
    fingerprint: await fingerprint(db),
  };
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Back to a freshly migrated, empty database. Fast path (~5x cheaper on PGlite than migrating
 * again): drop the tables a test created, and if the schema then matches the baseline
 * fingerprint exactly, truncate the migrated tables (restarting their sequences) and forget
 * migrations a test applied. Anything else a test changed (an altered table, a function, a
 * type) fails the fingerprint, and the public schema is dropped and migrated from scratch.
 */
export async function resetDb(db: Db, baseline?: Baseline): Promise<void> {
  if (baseline) {
    const extra = (await publicTables(db)).filter((t) => !baseline.tables.has(t));
    if (extra.length > 0) await db.query(`DROP TABLE IF EXISTS ${extra.map(quote).join(', ')} CASCADE`);
    if ((await fingerprint(db)) === baseline.fingerprint) {
      const data = [...baseline.tables].filter((t) => t !== 'schema_migrations');
      if (data.length > 0) await db.query(`TRUNCATE ${data.map(quote).join(', ')} RESTART IDENTITY CASCADE`);
      await db.query('DELETE FROM schema_migrations WHERE NOT (id = ANY($1::int[]))', [baseline.migrations]);
      return;
    }
  }
  await db.query('DROP SCHEMA public CASCADE');
  await db.query('CREATE SCHEMA public');
  await applyMigrations(db, silentLogger());
}

/** Opens a database for one test body and always disposes of it. */
export async function withDb<T>(backend: Backend, fn: (t: TestDb) => Promise<T>): Promise<T> {
  const t = await backend.open();
  try {
    return await fn(t);
  } finally {
    await t.dispose();
  }
}
