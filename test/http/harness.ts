/** A real HTTP server over a real embedded database, for the tests in this folder. */
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { configSchema, type Role } from '../../src/config/schema.js';
import { type Db, openDb } from '../../src/db/db.js';
import { DeadLetterStore } from '../../src/deadletters/store.js';
import { FaultlineError } from '../../src/errors/catalogue.js';
import { buildHttpServer, type HttpDeps } from '../../src/http/server.js';
import { silentLogger } from '../../src/log/logger.js';
import { Metrics } from '../../src/metrics/registry.js';
import { DeviceRegistry } from '../../src/registry/devices.js';
import { tempDir } from '../helpers/process.js';

export const TOKENS: Record<Role, string> = {
  admin: 'admin-token-0123456789abcdef',
  engineer: 'engineer-token-0123456789abcdef',
  staff: 'staff-token-0123456789abcdef',
};

function testConfig() {
  return configSchema.parse({
    http: {
      adminToken: TOKENS.admin,
      tokens: [
        { name: 'field-engineers', token: TOKENS.engineer, role: 'engineer' },
        { name: 'service-desk', token: TOKENS.staff, role: 'staff' },
      ],
    },
  });
}

export const auth = (role: Role): { authorization: string } => ({ authorization: `Bearer ${TOKENS[role]}` });

export type ReadinessState = ReturnType<HttpDeps['readiness']>;

export interface Harness {
  app: FastifyInstance;
  metrics: Metrics;
  db: Db;
  devices: DeviceRegistry;
  deadLetters: DeadLetterStore;
  /** Every log line the server wrote, parsed. The logger does not redact, so a leak would show. */
  logs: Array<Record<string, unknown>>;
  logText(): string;
  setReadiness(state: ReadinessState | (() => ReadinessState)): void;
  close(): Promise<void>;
}

export interface HarnessOptions {
  extraRoutes?: HttpDeps['extraRoutes'];
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dir = tempDir('http');
  const db = await openDb({ dataDir: dir.path, log: silentLogger() });
  const metrics = new Metrics();
  const logs: Array<Record<string, unknown>> = [];
  const lines: string[] = [];
  // Deliberately no redaction: the server itself must keep tokens out of its log lines.
  const log = pino(
    { level: 'trace' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        const line = chunk.toString();
        lines.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  );
  let readiness: () => ReadinessState = () => ({ ready: true, components: { db: { ok: true } } });
  const devices = new DeviceRegistry(db);
  const deadLetters = new DeadLetterStore(db);
  let app: FastifyInstance;
  try {
    app = await buildHttpServer({
      config: testConfig(),
      log,
      metrics,
      devices,
      deadLetters,
      readiness: () => readiness(),
      ...(options.extraRoutes ? { extraRoutes: options.extraRoutes } : {}),
    });
  } catch (err) {
    await db.close();
    metrics.close();
    dir.remove();
    throw err;
  }
  return {
    app,
    metrics,
    db,
    devices,
    deadLetters,
    logs,
    logText: () => lines.join(''),
    setReadiness(state) {
      readiness = typeof state === 'function' ? state : () => state;
    },
    async close() {
      await app.close();
      await db.close();
      metrics.close();
      dir.remove();
    },
  };
}

/** A database that refuses every query: for servers whose tests never reach a store. */
export const unusedDb: Db = {
  kind: 'pglite',
  query: () => Promise.reject(new FaultlineError('FL_DB_UNAVAILABLE', 'this test has no database')),
  tx: () => Promise.reject(new FaultlineError('FL_DB_UNAVAILABLE', 'this test has no database')),
  close: () => Promise.resolve(),
};

/** The server without a database, which starts in milliseconds rather than seconds. */
export async function buildWithoutDb(
  extraRoutes: NonNullable<HttpDeps['extraRoutes']>,
): Promise<{ app: FastifyInstance; close(): Promise<void> }> {
  const metrics = new Metrics();
  try {
    const app = await buildHttpServer({
      config: testConfig(),
      log: silentLogger(),
      metrics,
      devices: new DeviceRegistry(unusedDb),
      deadLetters: new DeadLetterStore(unusedDb),
      readiness: () => ({ ready: true, components: {} }),
      extraRoutes,
    });
    return {
      app,
      async close() {
        await app.close();
        metrics.close();
      },
    };
  } catch (err) {
    metrics.close();
    throw err;
  }
}

/** The value of a labelled counter, 0 when the label was never used. */
export async function counterValue(metrics: Metrics, reason: string): Promise<number> {
  const { values } = await metrics.httpAuthFailures.get();
  return values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/** (method, url) of every route the router knows, read from printRoutes' tree, not from our own table. */
export function routerRoutes(app: FastifyInstance): Array<{ method: string; url: string }> {
  const out: Array<{ method: string; url: string }> = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    const segment = m[2]!;
    stack.push(segment);
    const url = stack.join('');
    for (const method of (m[3] ?? '').split(',').map((s) => s.trim())) {
      if (method) out.push({ method, url });
    }
  }
  return out;
}
