/**
 * `faultline owners add`: with a bridge running on the data dir it goes through
 * the bridge's API (PGlite is single-process); without one it opens the database,
 * as `devices add` does (src/cli/data-access.ts).
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { openDb } from '../db/db.js';
import { readLock } from '../db/lock.js';
import { FaultlineError, isFaultlineError } from '../errors/catalogue.js';
import { createLogger } from '../log/logger.js';
import { type OwnerInput, type OwnerRecord, OwnerStore } from './store.js';

export interface OwnerAccess {
  via: 'database' | 'http';
  add(input: OwnerInput): Promise<OwnerRecord>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Runs fn with the bridge's API or the database, and closes what it opened. */
export async function withOwnerAccess<T>(
  config: Readonly<Config>,
  fn: (access: OwnerAccess) => Promise<T>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<T> {
  const dataDir = resolve(config.dataDir);
  const lock = await readLock(dataDir);
  if (lock && alive(lock.pid) && lock.pid !== process.pid)
    return fn(await httpAccess(config, dataDir, lock.httpUrl, env));
  let db: Awaited<ReturnType<typeof openDb>>;
  try {
    db = await openDb({ url: config.database.url, dataDir, log: createLogger({ level: 'warn', fd: 2 }) });
  } catch (err) {
    // Lost a race with a bridge that started meanwhile: use its API.
    if (isFaultlineError(err) && err.code === 'FL_DATA_DIR_LOCKED') {
      return fn(await httpAccess(config, dataDir, undefined, env));
    }
    throw err;
  }
  try {
    const owners = new OwnerStore(db);
    return await fn({ via: 'database', add: (input) => owners.add(input) });
  } finally {
    await db.close();
  }
}

async function httpAccess(
  config: Readonly<Config>,
  dataDir: string,
  lockUrl: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<OwnerAccess> {
  const base = env.FAULTLINE_HTTP_PORT
    ? `http://127.0.0.1:${env.FAULTLINE_HTTP_PORT}`
    : (lockUrl ?? `http://127.0.0.1:${config.http.port}`);
  let token = env.FAULTLINE_ADMIN_TOKEN ?? config.http.adminToken;
  if (!token)
    token = (await readFile(join(dataDir, 'admin-token'), 'utf8').catch(() => '')).trim() || undefined;
  if (!token) {
    throw new FaultlineError(
      'FL_AUTH_MISSING',
      'a bridge is running on this data dir; set FAULTLINE_ADMIN_TOKEN so this command can use its HTTP API',
    );
  }
  return {
    via: 'http',
    async add(input) {
      const res = await fetch(`${base}/api/v1/owners`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(input),
      });
      const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
      if (!res.ok) {
        const e = (json.error ?? {}) as { code?: string; message?: string; details?: unknown };
        throw new FaultlineError(
          (e.code ?? 'FL_INTERNAL') as ConstructorParameters<typeof FaultlineError>[0],
          e.message ?? `HTTP ${res.status}`,
          e.details,
        );
      }
      return json as unknown as OwnerRecord;
    },
  };
}
