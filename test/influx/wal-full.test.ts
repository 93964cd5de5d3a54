/**
 * InfluxDB down long enough fills the write-ahead log: the bridge raises an alarm
 * (a log line naming the consumer behind, and faultline_wal_full_total), pushes
 * back on ingestion instead of dropping anything, and once InfluxDB is back the
 * log drains, ingest resumes and every sample arrives.
 */
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import { ADMIN_TOKEN } from '../helpers/bridge.js';
import { type Influxd, rows, startInfluxd } from '../helpers/influxd.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';
import { type FaultProxy, startFaultProxy } from './support.js';

const PER_MESSAGE = 1_000;
const T0 = Date.UTC(2025, 5, 1);
let influxd: Influxd;
let proxy: FaultProxy;
let app: App;
let down = true;
const dir = tempDir('wal-full');
const lines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  influxd = await startInfluxd();
  proxy = await startFaultProxy(influxd.url, () =>
    down ? { status: 503, body: '{"error":"shutting down"}' } : 'forward',
  );
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: dir.path,
      mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { host: '127.0.0.1', port: 0, adminToken: ADMIN_TOKEN },
      ingest: { walSegmentBytes: 65_536, walMaxBytes: 1024 * 1024 },
      influx: { url: proxy.url, database: 'walfull', flushIntervalMs: 50, maxRetryDelayMs: 100 },
    },
  });
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      done();
    },
  });
  app = buildApp(config, { log: pino({ level: 'info' }, stream) });
  await app.start();
  await app.parts.devices.add({ id: 'wf-1', model: 'AC-9000', secret: 'secret-wf-1-0123456789' });
});

afterAll(async () => {
  await app?.stop();
  await proxy?.stop();
  await influxd?.stop();
  dir.remove();
});

function message(m: number): string {
  const batch = Array.from({ length: PER_MESSAGE }, (_, i) => {
    const seq = m * PER_MESSAGE + i + 1;
    return {
      ts: T0 + seq * 1000,
      seq,
      metrics: { compressor_temp: seq / 8, compressor_freq: 60 + (seq % 7) },
    };
  });
  return JSON.stringify({ batch });
}

describe('write-ahead log full', () => {
  it('raises the alarm, pushes back on the device, and loses nothing once InfluxDB is back', async () => {
    const client = await mqtt.connectAsync(app.parts.addresses.mqtt!.replace('localhost', '127.0.0.1'), {
      clientId: 'wf-1',
      username: 'wf-1',
      password: 'secret-wf-1-0123456789',
      reconnectPeriod: 0,
    });
    const walFull = async () =>
      (await app.metrics.registry.getSingleMetric('faultline_wal_full_total')?.get())?.values[0]?.value ?? 0;
    // Publish until the log is full; the publish that finds it full is held (not refused) by backpressure.
    let sent = 0;
    const pending: Array<Promise<unknown>> = [];
    while (!app.parts.wal.full && sent < 200) {
      pending.push(client.publishAsync('devices/wf-1/telemetry', message(sent), { qos: 1 }));
      sent++;
      await Promise.race([
        pending[pending.length - 1],
        until('the log to fill', () => app.parts.wal.full, 2_000).catch(() => null),
      ]);
    }
    expect(app.parts.wal.full).toBe(true);
    expect(await walFull()).toBe(1);
    await until('ingest to pause', () => app.parts.pipeline.paused);
    const alarm = lines.find((l) => String(l.msg).startsWith('ALARM write-ahead log is full'));
    expect(alarm).toBeDefined();
    expect(alarm!.behind).toMatch(/^influx \(\d+ records behind\)$/);

    down = false;
    await Promise.all(pending);
    await until(
      'the log to drain',
      () => !app.parts.wal.full && app.parts.influx.sink!.position >= app.parts.wal.lastLsn,
      30_000,
    );
    expect(app.parts.pipeline.paused).toBe(false);
    // The paused connection reads again: one more message goes all the way through.
    await client.publishAsync('devices/wf-1/telemetry', message(sent), { qos: 1 });
    sent++;
    await until(
      'the last message in InfluxDB',
      () => app.parts.influx.sink!.position >= app.parts.wal.lastLsn,
    );
    const count = rows(await influxd.query('SELECT count(compressor_temp) FROM telemetry', 'walfull'));
    expect(count[0]!.count).toBe(sent * PER_MESSAGE);
    await client.endAsync();
  }, 60_000);
});
