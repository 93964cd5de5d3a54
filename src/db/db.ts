/**
 * One database interface over embedded PGlite and real PostgreSQL, raw SQL.
 * Both backends return the same JS types for the same SQL (see PARSERS), so code
 * and tests written against one behave the same on the other.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { FaultlineError, isFaultlineError } from '../errors/catalogue.js';
import type { Logger } from '../log/logger.js';
import { acquireDataDirLock, type DataDirLock } from './lock.js';
import { applyMigrations } from './migrations.js';
import { Mutex } from './mutex.js';

export interface QueryResult<T> {
  rows: T[];
  /** Rows inserted, updated or deleted (RETURNING included); 0 for anything else, SELECT too. */
  affectedRows: number;
}

export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<T>>;
}

export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /**
   * Runs fn in a transaction: COMMIT when it resolves, ROLLBACK (and rethrow) when it rejects.
   * Use only the handle inside fn: calling db.query()/db.tx() there throws, because on PGlite
   * (one connection) it would wait for the transaction that waits for it.
   */
  tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface OpenDbOptions {
  /** postgres:// URL; without it an embedded PGlite lives in <dataDir>/db. */
  url?: string | undefined;
  dataDir: string;
  log: Logger;
}

const OID = { BYTEA: 17, INT8: 20, DATE: 1082 } as const;

/**
 * Where the two drivers' defaults differ, both are set to what pg does, except DATE:
 * - int8 (bigserial ids, count(*)): string, as pg does, because it may exceed 2^53; PGlite gives a number.
 * - bytea: Buffer; PGlite gives a Uint8Array.
 * - date: the 'YYYY-MM-DD' text; pg makes a Date at local midnight and PGlite at UTC midnight.
 */
const PGLITE_PARSERS = {
  [OID.INT8]: (v: string) => v,
  [OID.BYTEA]: (v: string) => Buffer.from(v.slice(2), 'hex'),
  [OID.DATE]: (v: string) => v,
};

const PG_TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === OID.DATE && format !== 'binary'
      ? (v: string) => v
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

const MUTATING_COMMANDS = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE']);

interface TxFrame {
  owner: object;
  state: { open: boolean };
  parent: TxFrame | undefined;
}

/**
 * Which transactions the current async call chain runs inside: a guard against a
 * programming error, kept where the code is exercised (NODE_ENV=test, which vitest
 * sets, or FAULTLINE_TX_GUARD=1). On Node 20 an AsyncLocalStorage that has run once
 * installs promise hooks for the whole process, which cost the ingest path ~5% of
 * its CPU (bench/README.md), so a production bridge runs without it.
 */
const txFrames =
  process.env.NODE_ENV === 'test' || process.env.FAULTLINE_TX_GUARD === '1'
    ? new AsyncLocalStorage<TxFrame>()
    : null;

function assertNotInOwnTx(owner: object, what: 'query' | 'tx'): void {
  if (!txFrames) return;
  for (let f = txFrames.getStore(); f; f = f.parent) {
    if (f.owner === owner && f.state.open) {
      throw new FaultlineError(
        'FL_INTERNAL',
        `db.${what}() called inside db.tx() on the same database: use the transaction's handle ` +
          '(on PGlite, a single connection, this would deadlock)',
      );
    }
  }
}

async function runInTx<T>(owner: object, raw: Queryable, fn: (q: Queryable) => Promise<T>): Promise<T> {
  const state = { open: true };
  const handle: Queryable = {
    query: (sql, params) => {
      // A query fired and forgotten inside fn would otherwise land outside the transaction, or
      // (PGlite) on a closed handle with a confusing message.
      if (!state.open) {
        return Promise.reject(
          new FaultlineError('FL_INTERNAL', 'transaction handle used after its transaction ended'),
        );
      }
      return raw.query(sql, params);
    },
  };
  try {
    if (!txFrames) return await fn(handle);
    return await txFrames.run({ owner, state, parent: txFrames.getStore() }, () => fn(handle));
  } finally {
    state.open = false;
  }
}

function closedError(): FaultlineError {
  return new FaultlineError('FL_DB_UNAVAILABLE', 'the database is closed');
}

/** Redacts the password, so a URL can go into logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable database url>';
  }
}

/** True for the SQLSTATE of a unique-constraint violation, on either backend. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '23505';
}

/**
 * Errors that mean "the server is unreachable", not "this statement is wrong", become
 * FL_DB_UNAVAILABLE (503); SQL errors keep their SQLSTATE `code` for callers to inspect.
 */
function translatePgError(err: unknown): unknown {
  if (isFaultlineError(err) || !(err instanceof Error)) return err;
  const code = (err as { code?: unknown }).code;
  const unavailable =
    (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) || UNAVAILABLE_MESSAGE.test(err.message);
  if (!unavailable) return err;
  const e = new FaultlineError('FL_DB_UNAVAILABLE', `the database is unavailable: ${err.message}`);
  (e as { cause?: unknown }).cause = err;
  return e;
}

/** Network errnos, and the SQLSTATEs of lost connections and server shutdown (not 08P01: a bad message). */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '57P01',
  '57P02',
  '57P03',
]);
/** pg reports a dropped socket or a pool timeout with these messages and no code. */
const UNAVAILABLE_MESSAGE = /Connection terminated|timeout exceeded when trying to connect|connection error/i;

class PgliteDb implements Db {
  readonly kind = 'pglite' as const;
  readonly #pg: PGlite;
  readonly #lock: DataDirLock;
  // PGlite is one connection. All access goes through this FIFO so a query waits for an open
  // transaction instead of interleaving with it, and close() waits for work already queued.
  readonly #mutex = new Mutex();
  #closed = false;

  constructor(pglite: PGlite, lock: DataDirLock) {
    this.#pg = pglite;
    this.#lock = lock;
  }

  async query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<T>> {
    assertNotInOwnTx(this, 'query');
    if (this.#closed) throw closedError();
    return this.#mutex.run(async () => {
      const r = await this.#pg.query<T>(sql, params);
      return { rows: r.rows, affectedRows: r.affectedRows ?? 0 };
    });
  }

  async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    assertNotInOwnTx(this, 'tx');
    if (this.#closed) throw closedError();
    return this.#mutex.run(() =>
      this.#pg.transaction((t) =>
        runInTx(
          this,
          {
            query: async <R>(sql: string, params?: unknown[]) => {
              const r = await t.query<R>(sql, params);
              return { rows: r.rows, affectedRows: r.affectedRows ?? 0 };
            },
          },
          fn,
        ),
      ),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#mutex.run(() => this.#pg.close());
    } finally {
      await this.#lock.release();
    }
  }
}

class PostgresDb implements Db {
  readonly kind = 'postgres' as const;
  readonly #pool: pg.Pool;
  #closed = false;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<T>> {
    assertNotInOwnTx(this, 'query');
    if (this.#closed) throw closedError();
    return runPg<T>(this.#pool, sql, params);
  }

  async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    assertNotInOwnTx(this, 'tx');
    if (this.#closed) throw closedError();
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw translatePgError(err);
    }
    let broken: Error | undefined;
    try {
      await runPg(client, 'BEGIN');
      let result: T;
      try {
        result = await runInTx(this, { query: (sql, params) => runPg(client, sql, params) }, fn);
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr as Error; // the connection is unusable: do not return it to the pool
        }
        throw err;
      }
      const commit = await client.query('COMMIT');
      // PostgreSQL answers COMMIT of a failed transaction (fn swallowed a statement error) with
      // ROLLBACK and no error; PGlite throws. Throw here too, so callers see the same thing.
      if (commit.command === 'ROLLBACK') {
        throw new FaultlineError(
          'FL_INTERNAL',
          'the transaction was rolled back because a statement in it failed (the error was caught inside tx())',
        );
      }
      return result;
    } finally {
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}

async function runPg<T>(
  client: pg.Pool | pg.PoolClient,
  sql: string,
  params?: unknown[],
): Promise<QueryResult<T>> {
  try {
    const r = await client.query(sql, params);
    return {
      rows: r.rows as T[],
      affectedRows: MUTATING_COMMANDS.has(r.command) ? (r.rowCount ?? 0) : 0,
    };
  } catch (err) {
    throw translatePgError(err);
  }
}

async function openPglite(dataDir: string, log: Logger): Promise<Db> {
  const dir = resolve(dataDir);
  const lock = await acquireDataDirLock(dir, log);
  try {
    const dbDir = join(dir, 'db');
    // PGlite does not create parent directories itself.
    await mkdir(dbDir, { recursive: true });
    const pglite = await PGlite.create(dbDir, { parsers: PGLITE_PARSERS });
    log.info({ backend: 'pglite', dataDir: dbDir }, 'database opened');
    return new PgliteDb(pglite, lock);
  } catch (err) {
    await lock.release();
    if (isFaultlineError(err)) throw err;
    const e = new FaultlineError(
      'FL_DB_UNAVAILABLE',
      `cannot open the embedded database in ${dir}: ${(err as Error).message}`,
    );
    (e as { cause?: unknown }).cause = err;
    throw e;
  }
}

async function openPostgres(url: string, log: Logger): Promise<Db> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: 'faultline',
    types: PG_TYPES,
  });
  // Without a listener, an idle client losing its connection (server restart) crashes the process.
  pool.on('error', (err) => log.warn({ err }, 'idle PostgreSQL connection failed; the pool replaces it'));
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    const e = new FaultlineError(
      'FL_DB_UNAVAILABLE',
      `cannot connect to PostgreSQL at ${redactUrl(url)}: ${(err as Error).message}`,
    );
    (e as { cause?: unknown }).cause = err;
    throw e;
  }
  log.info({ backend: 'postgres', url: redactUrl(url) }, 'database opened');
  return new PostgresDb(pool);
}

/**
 * Opens PostgreSQL when a URL is given, else PGlite in <dataDir>/db (holding the data dir lock
 * until close), and applies pending migrations before returning.
 */
export async function openDb(options: OpenDbOptions): Promise<Db> {
  const db = options.url
    ? await openPostgres(options.url, options.log)
    : await openPglite(options.dataDir, options.log);
  try {
    await applyMigrations(db, options.log);
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
  return db;
}
