/**
 * Imports 100,000 devices into a fresh PGlite through DeviceRegistry.importCsv
 * (parse, validate, hash, duplicate checks, chunked inserts in one transaction)
 * and prints rows/s beside references measured in the same run, on the same
 * kind of fresh database: the same rows inserted as raw multi-row INSERT ...
 * VALUES statements (1,000 rows each, one transaction, no validation or
 * hashing): the floor the database gives; and the same with unnest() arrays,
 * the statement shape the registry uses. Then 10,000 cold authenticates and
 * 10,000 markSeen calls, the connect-storm path.
 *
 *   npx tsx bench/import.ts [rows]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Db, openDb } from '../src/db/db.js';
import { silentLogger } from '../src/log/logger.js';
import { DeviceRegistry } from '../src/registry/devices.js';
import { type Figure, writeResults } from './lib.js';

const ROWS = Number(process.argv[2] ?? 100_000);
const CHUNK = 1000;

function secretFor(i: number): string {
  return `bench-secret-${i.toString(36)}-0123456789`;
}

function device(i: number): string[] {
  const id = `dev-${String(i).padStart(7, '0')}`;
  return [
    id,
    `WM-${i % 20}`,
    '1.4.2',
    `owner-${i % 50_000}`,
    i % 2 ? 'zh-CN' : 'en',
    'eu-west',
    `B${i % 100}`,
  ];
}

async function withFreshDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'faultline-bench-'));
  const db = await openDb({ dataDir, log: silentLogger() });
  try {
    return await fn(db);
  } finally {
    await db.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return (performance.now() - start) / 1000;
}

function line(label: string, rows: number, seconds: number): void {
  console.log(
    `${label.padEnd(58)} ${seconds.toFixed(2).padStart(7)} s ${Math.round(rows / seconds)
      .toLocaleString('en-US')
      .padStart(10)} rows/s`,
  );
}

async function main(): Promise<void> {
  const rows = Array.from({ length: ROWS }, (_, i) => device(i));
  const csv = `id,model,firmware,owner_id,owner_locale,region,batch,secret\n${rows
    .map((r, i) => `${r.join(',')},${secretFor(i)}`)
    .join('\n')}\n`;
  const fixedHash = 'sha256$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
  console.log(
    `${ROWS.toLocaleString('en-US')} devices, ${(csv.length / 1e6).toFixed(1)} MB of CSV, PGlite, Node ${process.version}\n`,
  );

  let authSeconds = 0;
  let seenSeconds = 0;
  let authOk = 0;
  const importSeconds = await withFreshDb(async (db) => {
    const registry = new DeviceRegistry(db);
    const seconds = await timed(() => registry.importCsv(csv));
    const total = (await registry.counts()).total;
    if (total !== ROWS) throw new Error(`imported ${total}, expected ${ROWS}`);

    const storm = Math.min(10_000, ROWS);
    const fresh = new DeviceRegistry(db); // cold cache, as after a restart
    authSeconds = await timed(async () => {
      const results = await Promise.all(
        Array.from({ length: storm }, (_, i) => fresh.authenticate(device(i)[0]!, secretFor(i))),
      );
      authOk = results.filter((r) => r.ok).length;
    });
    if (authOk !== storm) throw new Error(`${storm - authOk} authentications failed`);
    const now = new Date();
    seenSeconds = await timed(() =>
      Promise.all(Array.from({ length: storm }, (_, i) => fresh.markSeen(device(i)[0]!, true, now))),
    );
    return seconds;
  });

  const valuesSeconds = await withFreshDb((db) =>
    timed(() =>
      db.tx(async (q) => {
        for (let i = 0; i < ROWS; i += CHUNK) {
          const chunk = rows.slice(i, i + CHUNK);
          const params: unknown[] = [];
          const tuples = chunk.map((r) => {
            const base = params.length;
            params.push(...r, fixedHash);
            return `(${Array.from({ length: 8 }, (_, c) => `$${base + c + 1}`).join(', ')})`;
          });
          await q.query(
            `INSERT INTO devices (id, model, firmware, owner_id, owner_locale, region, batch, secret_hash) VALUES ${tuples.join(', ')}`,
            params,
          );
        }
      }),
    ),
  );

  const unnestSeconds = await withFreshDb((db) =>
    timed(() =>
      db.tx(async (q) => {
        for (let i = 0; i < ROWS; i += CHUNK) {
          const chunk = rows.slice(i, i + CHUNK);
          const columns = Array.from({ length: 8 }, (_, c) => chunk.map((r) => (c < 7 ? r[c] : fixedHash)));
          await q.query(
            `INSERT INTO devices (id, model, firmware, owner_id, owner_locale, region, batch, secret_hash)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])`,
            columns,
          );
        }
      }),
    ),
  );

  line('DeviceRegistry.importCsv (parse+validate+hash+insert)', ROWS, importSeconds);
  line(`reference: raw INSERT ... VALUES, ${CHUNK} rows/statement`, ROWS, valuesSeconds);
  line(`reference: raw INSERT ... SELECT unnest(), ${CHUNK} rows/statement`, ROWS, unnestSeconds);
  const storm = Math.min(10_000, ROWS);
  line('authenticate, cold cache, concurrent', storm, authSeconds);
  line('markSeen(online), concurrent', storm, seenSeconds);
  const one = (v: number) => ({ value: v, min: v, max: v });
  const figures: Figure[] = [
    {
      name: `import ${ROWS.toLocaleString('en-US')} devices (parse, validate, hash, insert)`,
      unit: 'devices/s',
      ...one(ROWS / importSeconds),
      reference: { name: 'raw INSERT ... VALUES of the same rows', ...one(ROWS / valuesSeconds) },
      ratio: valuesSeconds / importSeconds,
    },
    { name: 'authenticate, cold cache, concurrent', unit: 'auth/s', ...one(storm / authSeconds) },
    { name: 'markSeen(online), concurrent', unit: 'updates/s', ...one(storm / seenSeconds) },
  ];
  console.log(`results: ${writeResults('import', figures)}`);
  console.log(
    `\nimport costs ${(importSeconds / valuesSeconds).toFixed(2)}x the raw VALUES floor, ` +
      `${(importSeconds / unnestSeconds).toFixed(2)}x the raw unnest floor`,
  );
}

await main();
