/**
 * Data commands (devices, dead letters) work with or without a running bridge.
 * While a bridge holds the data dir (PGlite is single-process), they go
 * through its HTTP API; otherwise they open the database directly.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { type Db, openDb } from '../db/db.js';
import { readLock } from '../db/lock.js';
import { DeadLetterStore } from '../deadletters/store.js';
import { FaultlineError, isFaultlineError } from '../errors/catalogue.js';
import { createLogger } from '../log/logger.js';
import { DeviceRegistry } from '../registry/devices.js';

export interface DataAccess {
  readonly via: 'database' | 'http';
  addDevice(input: Record<string, unknown>): Promise<unknown>;
  importDevices(csv: string): Promise<{ imported: number }>;
  listDevices(
    q: Record<string, string | number | boolean | undefined>,
  ): Promise<{ items: unknown[]; nextCursor: string | null }>;
  getDevice(id: string): Promise<unknown>;
  setDisabled(id: string, disabled: boolean): Promise<unknown>;
  listDeadLetters(
    q: Record<string, string | number | undefined>,
  ): Promise<{ items: unknown[]; nextCursor: string | null }>;
  close(): Promise<void>;
}

export async function openDataAccess(
  config: Readonly<Config>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<DataAccess> {
  const dataDir = resolve(config.dataDir);
  const lock = await readLock(dataDir);
  const running = lock && isAlive(lock.pid) && lock.pid !== process.pid;
  if (running) return httpAccess(config, dataDir, lock.httpUrl, env);
  try {
    return await databaseAccess(config, dataDir);
  } catch (err) {
    // Lost a race with a bridge that started meanwhile: use its API.
    if (isFaultlineError(err) && err.code === 'FL_DATA_DIR_LOCKED')
      return httpAccess(config, dataDir, undefined, env);
    throw err;
  }
}

async function databaseAccess(config: Readonly<Config>, dataDir: string): Promise<DataAccess> {
  const log = createLogger({ level: 'warn', fd: 2 });
  const db: Db = await openDb({ url: config.database.url, dataDir, log });
  const devices = new DeviceRegistry(db);
  const deadLetters = new DeadLetterStore(db);
  return {
    via: 'database',
    addDevice: (input) => devices.add(input as Parameters<DeviceRegistry['add']>[0]),
    importDevices: async (csv) => {
      const r = await devices.importCsv(csv);
      return { imported: r.imported };
    },
    listDevices: (q) => devices.list(q as Parameters<DeviceRegistry['list']>[0]),
    getDevice: async (id) => {
      const d = await devices.get(id);
      if (!d) throw new FaultlineError('FL_DEVICE_NOT_FOUND', `no device ${id}`);
      return d;
    },
    setDisabled: (id, disabled) => devices.setDisabled(id, disabled),
    listDeadLetters: (q) => deadLetters.list(q as Parameters<DeadLetterStore['list']>[0]),
    close: () => db.close(),
  };
}

async function httpAccess(
  config: Readonly<Config>,
  dataDir: string,
  lockUrl: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<DataAccess> {
  const base = env.FAULTLINE_HTTP_PORT
    ? `http://127.0.0.1:${env.FAULTLINE_HTTP_PORT}`
    : (lockUrl ?? `http://127.0.0.1:${config.http.port}`);
  const token = env.FAULTLINE_ADMIN_TOKEN ?? config.http.adminToken ?? (await readTokenFile(dataDir));
  if (!token) {
    throw new FaultlineError(
      'FL_AUTH_MISSING',
      'a bridge is running on this data dir; set FAULTLINE_ADMIN_TOKEN so this command can use its HTTP API',
    );
  }
  const call = async (method: string, path: string, body?: string, contentType = 'application/json') => {
    const res = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': contentType }),
      },
      body,
    });
    const text = await res.text();
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (!res.ok) {
      const error = (json.error ?? {}) as { code?: string; message?: string; details?: unknown };
      const code = (error.code ?? 'FL_INTERNAL') as ConstructorParameters<typeof FaultlineError>[0];
      throw new FaultlineError(code, error.message ?? `HTTP ${res.status}`, error.details);
    }
    return json;
  };
  const qs = (q: Record<string, unknown>) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
    const s = p.toString();
    return s ? `?${s}` : '';
  };
  return {
    via: 'http',
    addDevice: (input) => call('POST', '/devices', JSON.stringify(input)),
    importDevices: async (csv) =>
      (await call('POST', '/devices/import', csv, 'text/csv')) as { imported: number },
    listDevices: async (q) =>
      (await call('GET', `/devices${qs(q)}`)) as { items: unknown[]; nextCursor: string | null },
    getDevice: (id) => call('GET', `/devices/${encodeURIComponent(id)}`),
    setDisabled: (id, disabled) =>
      call('POST', `/devices/${encodeURIComponent(id)}/${disabled ? 'disable' : 'enable'}`),
    listDeadLetters: async (q) =>
      (await call('GET', `/deadletters${qs(q)}`)) as { items: unknown[]; nextCursor: string | null },
    close: async () => undefined,
  };
}

async function readTokenFile(dataDir: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
