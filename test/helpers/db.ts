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
 * each test (public schema dropped and migrated again), because a new PGlite costs ~1 s and a
 * reset ~50 ms. Tests must not close `db`; a test that closes or reopens it opens its own with
 * `backend.open()` and disposes of it.
 */
export function freshDbPerTest(backend: Backend): () => TestDb {
  let current: TestDb | null = null;
  let used = false;
  beforeAll(async () => {
    current = await backend.open();
  });
  beforeEach(async () => {
    if (!current) throw new Error('no test database');
    if (used) await resetDb(current.db);
    used = true;
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

/** Back to a freshly migrated, empty database. */
export async function resetDb(db: Db): Promise<void> {
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
