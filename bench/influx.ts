/**
 * InfluxDB write throughput of the sink, beside a plain writer, into a real
 * influxd (Debian's 1.6.7) measured in the same run, rounds interleaved.
 *
 * - spool: the sink drains a write-ahead log already holding POINTS samples
 *   (records of 500 samples, as offline-buffer uploads arrive): read the log,
 *   parse, encode line protocol, batch (5,000), send with 2 in flight, move the
 *   cursor on each 2xx. Points/s from the first read to the cursor at the end.
 * - mqtt: the whole bridge (MQTT QoS 1 → log → sink → influxd); points/s from the
 *   first publish to the last point confirmed by InfluxDB.
 * - references: POST /write of the same lines, pre-encoded, in the same batch size
 *   with the same 2 requests in flight: with fetch (the plain writer the target
 *   is set against) and with node:http and a keep-alive agent (what the sink's v1
 *   writer uses; it costs the client less CPU, so it is the stricter reference).
 *
 * Each case writes into a fresh database, so every run does the same work.
 * Run: npx tsx bench/influx.ts [points per run]
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { deviceTags, telemetryLine } from '../src/influx/line-protocol.js';
import { Quarantine } from '../src/influx/quarantine.js';
import { InfluxSink } from '../src/influx/sink.js';
import { createWriter, type InfluxSettings } from '../src/influx/writer.js';
import { encodeRecord } from '../src/ingest/record.js';
import { silentLogger } from '../src/log/logger.js';
import { Metrics } from '../src/metrics/registry.js';
import { WriteAheadLog } from '../src/wal/index.js';
import { type Influxd, startInfluxd } from '../test/helpers/influxd.js';
import { tempDir } from '../test/helpers/process.js';
import { type Figure, printTable, progress, summarize, writeResults } from './lib.js';

const POINTS = Number(process.argv[2] ?? 500_000);
const ROUNDS = 3;
const DEVICES = 20;
const PER_RECORD = 500;
const BATCH = 5_000;
const IN_FLIGHT = 2;
const T0 = Date.UTC(2025, 0, 1);

const deviceIds = Array.from({ length: DEVICES }, (_, d) => `bench-${String(d).padStart(3, '0')}`);
const info = (id: string) => ({
  id,
  model: 'AC-9000',
  firmware: '2.4.1',
  ownerId: null,
  ownerLocale: null,
  region: 'north',
  batch: 'B2025-01',
});

/** Sample i of device d: the four metrics of a typical air-conditioner report. */
function sample(d: number, i: number) {
  return {
    ts: T0 + i * 10_000,
    seq: i + 1,
    metrics: {
      compressor_temp: 60 + ((i * 7 + d) % 400) / 10,
      compressor_freq: 40 + ((i + d) % 30),
      fan_rpm: 900 + ((i * 3) % 200),
      mode: i % 100 < 70 ? 'cool' : 'dry',
    },
  };
}

/** The samples as device messages: per device, records of PER_RECORD samples. */
function messages(): Array<{ d: number; payload: string }> {
  const perDevice = POINTS / DEVICES;
  const out: Array<{ d: number; payload: string }> = [];
  for (let start = 0; start < perDevice; start += PER_RECORD) {
    for (let d = 0; d < DEVICES; d++) {
      const batch = Array.from({ length: Math.min(PER_RECORD, perDevice - start) }, (_, k) =>
        sample(d, start + k),
      );
      out.push({ d, payload: JSON.stringify({ batch }) });
    }
  }
  return out;
}

function settings(url: string, database: string): InfluxSettings {
  const config = loadConfig({ env: {}, overrides: { influx: { url, database } } });
  return config.influx as InfluxSettings;
}

async function createDb(influxd: Influxd, db: string): Promise<void> {
  const r = await influxd.query(`CREATE DATABASE ${db}`);
  if (r.results[0]?.error) throw new Error(r.results[0].error);
}

async function countPoints(influxd: Influxd, db: string): Promise<number> {
  const r = await influxd.query('SELECT count(compressor_temp) FROM telemetry', db);
  return Number(r.results[0]?.series?.[0]?.values[0]?.[1] ?? 0);
}

/** The sink draining a log that already holds every sample. */
async function spoolRun(influxd: Influxd, db: string, payloads: Array<{ d: number; payload: string }>) {
  const dir = tempDir('bench-influx-wal');
  try {
    const wal = await WriteAheadLog.open({ dir: dir.path, fsync: false });
    for (let i = 0; i < payloads.length; i += 256) {
      await wal.appendMany(
        payloads.slice(i, i + 256).map(({ d, payload }) =>
          encodeRecord({
            kind: 'telemetry',
            deviceId: deviceIds[d]!,
            topic: `devices/${deviceIds[d]}/telemetry`,
            receivedAt: T0,
            reason: '',
            message: '',
            payload: Buffer.from(payload),
          }),
        ),
      );
    }
    await createDb(influxd, db);
    const metrics = new Metrics();
    const sink = new InfluxSink({
      wal,
      writer: createWriter(settings(influxd.url, db)),
      quarantine: new Quarantine(`${dir.path}/quarantine`),
      deviceInfo: async (id) => info(id),
      metrics,
      log: silentLogger(),
      batchSize: BATCH,
      flushIntervalMs: 1_000,
      maxInFlight: IN_FLIGHT,
      maxRetryDelayMs: 1_000,
      writeStatus: false,
    });
    const started = performance.now();
    sink.start();
    while (sink.position < wal.lastLsn) await new Promise((r) => setTimeout(r, 2));
    const seconds = (performance.now() - started) / 1000;
    await sink.stop();
    await wal.close();
    metrics.close();
    const stored = await countPoints(influxd, db);
    if (stored !== POINTS) throw new Error(`spool run stored ${stored} of ${POINTS} points`);
    return POINTS / seconds;
  } finally {
    dir.remove();
  }
}

const agent = new Agent({ keepAlive: true });

function postHttp(url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const buf = Buffer.from(body);
    const req = request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'text/plain', 'content-length': buf.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(buf);
  });
}

async function postFetch(url: string, body: string): Promise<number> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body });
  await res.text();
  return res.status;
}

/** POST /write of the same lines, pre-encoded, same batch size, same requests in flight. */
async function plainRun(influxd: Influxd, db: string, batches: string[], post: typeof postFetch) {
  await createDb(influxd, db);
  const url = `${influxd.url}/write?db=${db}&precision=ms`;
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < batches.length) {
      const status = await post(url, batches[next++]!);
      if (status !== 204) throw new Error(`plain writer got ${status}`);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const seconds = (performance.now() - started) / 1000;
  const stored = await countPoints(influxd, db);
  if (stored !== POINTS) throw new Error(`plain run stored ${stored} of ${POINTS} points`);
  return POINTS / seconds;
}

/** The whole bridge: devices publish at QoS 1, the sink writes what the log holds. */
async function mqttRun(influxd: Influxd, db: string, payloads: Array<{ d: number; payload: string }>) {
  const dir = tempDir('bench-influx-bridge');
  await createDb(influxd, db);
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: dir.path,
      log: { level: 'silent' },
      mqtt: { host: '127.0.0.1', port: 0, wsPort: null, limits: { maxPacketBytes: 1024 * 1024 } },
      http: { host: '127.0.0.1', port: 0, adminToken: 'bench-admin-token-0123456789' },
      influx: {
        url: influxd.url,
        database: db,
        batchSize: BATCH,
        maxInFlight: IN_FLIGHT,
        writeStatus: false,
      },
    },
  });
  const app = buildApp(config, { log: silentLogger() });
  try {
    const addresses = await app.start();
    for (const id of deviceIds)
      await app.parts.devices.add({
        id,
        model: 'AC-9000',
        secret: `secret-${id}-0123456789`,
        region: 'north',
      });
    const clients = await Promise.all(
      deviceIds.map((id) =>
        mqtt.connectAsync(addresses.mqtt!.replace('localhost', '127.0.0.1'), {
          clientId: id,
          username: id,
          password: `secret-${id}-0123456789`,
          reconnectPeriod: 0,
        }),
      ),
    );
    const sink = app.parts.influx.sink!;
    const started = performance.now();
    await Promise.all(
      clients.map(async (client, d) => {
        for (const m of payloads) {
          if (m.d === d)
            await client.publishAsync(`devices/${deviceIds[d]}/telemetry`, m.payload, { qos: 1 });
        }
      }),
    );
    while (sink.position < app.parts.wal.lastLsn) await new Promise((r) => setTimeout(r, 2));
    const seconds = (performance.now() - started) / 1000;
    await Promise.all(clients.map((c) => c.endAsync()));
    const stored = await countPoints(influxd, db);
    if (stored !== POINTS) throw new Error(`mqtt run stored ${stored} of ${POINTS} points`);
    return POINTS / seconds;
  } finally {
    await app.stop();
    dir.remove();
  }
}

async function main(): Promise<void> {
  const influxd = await startInfluxd();
  try {
    const payloads = messages();
    // The reference gets exactly the lines the sink would send, cut into the same batches.
    const lines: string[] = [];
    for (const { d, payload } of payloads) {
      const tags = deviceTags(info(deviceIds[d]!));
      for (const s of (JSON.parse(payload) as { batch: ReturnType<typeof sample>[] }).batch)
        lines.push(telemetryLine(tags, s.ts, s.metrics)!);
    }
    const batches: string[] = [];
    for (let i = 0; i < lines.length; i += BATCH) batches.push(lines.slice(i, i + BATCH).join('\n'));

    const cases = ['fetch', 'spool', 'http', 'mqtt'] as const;
    const runs: Record<(typeof cases)[number], number[]> = { fetch: [], spool: [], http: [], mqtt: [] };
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate the order, so a warming or cooling (or shared) machine does not favour one side.
      const order = round % 2 ? cases : [...cases].reverse();
      for (const [k, which] of order.entries()) {
        const db = `bench_${which}_${round}`;
        if (which === 'spool') runs.spool.push(await spoolRun(influxd, db, payloads));
        else if (which === 'fetch') runs.fetch.push(await plainRun(influxd, db, batches, postFetch));
        else if (which === 'http') runs.http.push(await plainRun(influxd, db, batches, postHttp));
        else runs.mqtt.push(await mqttRun(influxd, db, payloads));
        progress('runs', (round - 1) * cases.length + k + 1, ROUNDS * cases.length);
      }
    }
    const reference = (name: string, samples: number[]) => ({ name, ...summarize(samples) });
    const fetchRef = reference('plain fetch writer', runs.fetch);
    const httpRef = reference('plain node:http writer', runs.http);
    const figure = (name: string, samples: number[], ref: typeof fetchRef, target?: string): Figure => {
      const s = summarize(samples);
      const ratio = s.value / ref.value;
      return {
        name,
        unit: 'points/s',
        ...s,
        reference: ref,
        ratio,
        ...(target ? { target, met: ratio >= 0.8 } : {}),
      };
    };
    const figures = [
      figure('sink draining the log (spool)', runs.spool, fetchRef, '>= 80% of the plain writer'),
      figure('sink draining the log (spool)', runs.spool, httpRef),
      figure('MQTT QoS 1 -> log -> sink (end to end)', runs.mqtt, fetchRef),
    ];
    printTable(
      `InfluxDB writes (influxd 1.6.7, ${POINTS.toLocaleString('en-US')} points per run, batches of ${BATCH}, ${IN_FLIGHT} in flight, ${ROUNDS} rounds)`,
      figures,
    );
    console.log(`results: ${writeResults('influx', figures)}`);
  } finally {
    await influxd.stop();
  }
}

await main();
