/**
 * How the sink reacts to each kind of answer, with a proxy in front of a real
 * influxd that injects failures: 5xx and 429 are retried, 401 waits for the fix
 * instead of quarantining good data, 413 splits the batch, and the cursor never
 * moves past a batch that is still in flight, even when a later one finished first.
 */
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { type Influxd, rows, startInfluxd } from '../helpers/influxd.js';
import { until } from '../helpers/net.js';
import {
  caughtUp,
  type FaultProxy,
  metricValue,
  type ProxyAnswer,
  type ProxyRequest,
  quarantined,
  sink,
  startFaultProxy,
} from './support.js';

const DB = 'delivery';
let influxd: Influxd;
let proxy: FaultProxy;
let bridge: TestBridge;
let client: MqttClient;
let decide: (req: ProxyRequest) => ProxyAnswer = () => 'forward';
let seq = 0;
const T0 = Date.UTC(2025, 2, 1);

beforeAll(async () => {
  influxd = await startInfluxd();
  await influxd.query(`CREATE DATABASE ${DB}`);
  proxy = await startFaultProxy(influxd.url, (req) => decide(req));
  bridge = await startBridge({
    influx: { url: proxy.url, database: DB, batchSize: 50, flushIntervalMs: 100, maxRetryDelayMs: 100 },
  });
  const secret = await bridge.addDevice('dl-1');
  client = await bridge.connect('dl-1', secret);
});

afterAll(async () => {
  await bridge?.stop();
  await proxy?.stop();
  await influxd?.stop();
});

beforeEach(async () => {
  decide = () => 'forward';
  await caughtUp(bridge);
});

/** Publishes n samples in one message; resolves with their timestamps. */
async function publish(n: number): Promise<number[]> {
  const batch = Array.from({ length: n }, () => {
    seq++;
    return { ts: T0 + seq * 1000, seq, metrics: { temp: seq / 2 } };
  });
  await client.publishAsync('devices/dl-1/telemetry', JSON.stringify({ batch }), { qos: 1 });
  return batch.map((s) => s.ts);
}

async function storedTimes(): Promise<number[]> {
  return rows(await influxd.query(`SELECT temp FROM telemetry WHERE device = 'dl-1' ORDER BY time`, DB)).map(
    (r) => r.time as number,
  );
}

const isWrite = (req: ProxyRequest) => req.url.startsWith('/write');

describe('delivery to InfluxDB', () => {
  it('retries 5xx and 429 answers until InfluxDB takes the points', async () => {
    const before = {
      server: await metricValue(bridge, 'faultline_influx_write_retries_total', { reason: 'server' }),
      throttled: await metricValue(bridge, 'faultline_influx_write_retries_total', { reason: 'throttled' }),
    };
    let failures = 0;
    decide = (req) => {
      if (!isWrite(req) || failures >= 4) return 'forward';
      failures++;
      return failures === 4
        ? { status: 429, body: '{"error":"too many requests"}', headers: { 'retry-after': '0' } }
        : { status: 503, body: '{"error":"engine: cache maximum memory size exceeded"}' };
    };
    const expected = [...(await storedTimes()), ...(await publish(120))];
    await caughtUp(bridge);
    expect(await storedTimes()).toEqual(expected);
    expect(
      (await metricValue(bridge, 'faultline_influx_write_retries_total', { reason: 'server' })) -
        before.server,
    ).toBe(3);
    expect(
      (await metricValue(bridge, 'faultline_influx_write_retries_total', { reason: 'throttled' })) -
        before.throttled,
    ).toBe(1);
    expect(quarantined(bridge.dataDir)).toEqual([]);
  });

  it('keeps points in the log through 401s instead of quarantining them', async () => {
    let refusals = 0;
    decide = (req) => {
      if (!isWrite(req) || refusals >= 3) return 'forward';
      refusals++;
      return { status: 401, body: '{"error":"authorization failed"}' };
    };
    const expected = [...(await storedTimes()), ...(await publish(30))];
    await caughtUp(bridge);
    expect(refusals).toBe(3);
    expect(await storedTimes()).toEqual(expected);
    expect(quarantined(bridge.dataDir)).toEqual([]);
  });

  it('splits a batch InfluxDB finds too large (413) until the pieces fit', async () => {
    const sizes: number[] = [];
    decide = (req) => {
      if (!isWrite(req)) return 'forward';
      const lines = req.body.split('\n').length;
      sizes.push(lines);
      return lines > 12 ? { status: 413, body: '{"error":"Request Entity Too Large"}' } : 'forward';
    };
    const expected = [...(await storedTimes()), ...(await publish(50))];
    await caughtUp(bridge);
    expect(await storedTimes()).toEqual(expected);
    // Halves, depth first, until each piece is accepted; no point is sent by a request that failed.
    expect(sizes).toEqual([50, 25, 12, 13, 6, 7, 25, 12, 13, 6, 7]);
    expect(quarantined(bridge.dataDir)).toEqual([]);
  });

  it('never moves the cursor past a batch still in flight when a later batch finishes first', async () => {
    const start = sink(bridge).position;
    const written = () => metricValue(bridge, 'faultline_influx_batches_total', { outcome: 'written' });
    const writtenBefore = await written();
    let release!: () => void;
    const held = new Promise<'forward'>((resolve) => {
      release = () => resolve('forward');
    });
    let writes = 0;
    decide = (req) => {
      if (!isWrite(req)) return 'forward';
      writes++;
      return writes === 1 ? held : 'forward';
    };
    // Two records of exactly one batch each: two batches, both in flight at once (maxInFlight 2).
    const first = await publish(50);
    const second = await publish(50);
    // The sink has taken the second batch's 2xx (the counter moves before the cursor is considered).
    await until('the second batch to be confirmed', async () => (await written()) === writtenBefore + 1);
    expect(writes).toBe(2);
    expect(await storedTimes()).toEqual(expect.arrayContaining(second));
    expect(sink(bridge).position).toBe(start);

    release();
    await caughtUp(bridge);
    const stored = await storedTimes();
    expect(stored).toEqual(expect.arrayContaining([...first, ...second]));
  });
});
