/**
 * An InfluxDB outage costs no data. While 50,000 samples stream in over MQTT,
 * influxd is killed (SIGKILL, by PID), Faultline is stopped and started again on
 * the same data dir, then influxd comes back: every sample is in InfluxDB exactly
 * once, with its value. "Exactly once" is what a reader sees: distinct points,
 * although the log holds some samples twice (a device resending a batch) and the
 * unconfirmed tail is sent again after the restart.
 */
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { type Influxd, rows, startInfluxd } from '../helpers/influxd.js';
import { until } from '../helpers/net.js';
import { caughtUp, metricValue, sink } from './support.js';

const DEVICES = 10;
const PER_MESSAGE = 500;
const MESSAGES_PER_DEVICE = 10;
const TOTAL = DEVICES * PER_MESSAGE * MESSAGES_PER_DEVICE;
const T0 = Date.UTC(2025, 1, 1);
const DB = 'outage';

let influxd: Influxd;
let bridge: TestBridge;
let dataDir: string;

const ids = Array.from({ length: DEVICES }, (_, d) => `out-${d}`);
const secretOf = (id: string) => `secret-${id}-0123456789`;
const value = (d: number, seq: number) => d * 100_000 + seq / 4;

function message(d: number, m: number): string {
  const batch = Array.from({ length: PER_MESSAGE }, (_, i) => {
    const seq = m * PER_MESSAGE + i + 1;
    return { ts: T0 + seq * 1000, seq, metrics: { temp: value(d, seq), on: seq % 2 === 0 } };
  });
  return JSON.stringify({ batch });
}

async function connectAll(b: TestBridge): Promise<MqttClient[]> {
  return Promise.all(ids.map((id) => b.connect(id, secretOf(id))));
}

/** Publishes messages [from, to) of every device, devices in parallel, each message acknowledged (QoS 1). */
async function publish(clients: MqttClient[], from: number, to: number, during?: (m: number) => void) {
  for (let m = from; m < to; m++) {
    during?.(m);
    await Promise.all(
      clients.map((c, d) => c.publishAsync(`devices/${ids[d]}/telemetry`, message(d, m), { qos: 1 })),
    );
  }
}

const config = () => ({
  influx: { url: influxd.url, database: DB, flushIntervalMs: 50, maxRetryDelayMs: 300, batchSize: 2_000 },
});

beforeAll(async () => {
  influxd = await startInfluxd();
  bridge = await startBridge(config());
  dataDir = bridge.dataDir;
  for (const id of ids) await bridge.addDevice(id, { model: 'AC-9000', region: 'north' });
});

afterAll(async () => {
  await bridge?.stop();
  await influxd?.stop();
});

describe('InfluxDB outage', () => {
  it('delivers every sample exactly once across an InfluxDB kill and a Faultline restart', async () => {
    let clients = await connectAll(bridge);
    const half = MESSAGES_PER_DEVICE / 2;
    let killed: Promise<void> | null = null;
    // InfluxDB dies while samples are streaming in and batches are in flight.
    await publish(clients, 0, half, (m) => {
      if (m === 2) killed = influxd.kill();
    });
    await killed;
    // A device resends a batch it had already sent (lost PUBACK): the log now holds those samples twice.
    await Promise.all(
      clients.map((c, d) => c.publishAsync(`devices/${ids[d]}/telemetry`, message(d, 1), { qos: 1 })),
    );

    await bridge.stopKeepData();
    bridge = await startBridge(config(), dataDir);
    clients = await connectAll(bridge);
    await publish(clients, half, MESSAGES_PER_DEVICE);

    // With InfluxDB down the new process is retrying and the log holds the backlog.
    await until(
      'a failed write to be retried',
      async () => (await metricValue(bridge, 'faultline_influx_write_retries_total')) > 0,
    );
    expect(sink(bridge).failing).toBe(true);
    expect(sink(bridge).lag).toBeGreaterThan(0);

    await influxd.restart();
    await caughtUp(bridge, 45_000);

    const counts = rows(await influxd.query('SELECT count(temp) FROM telemetry GROUP BY device', DB));
    expect(Object.fromEntries(counts.map((r) => [r.device, r.count]))).toEqual(
      Object.fromEntries(ids.map((id) => [id, TOTAL / DEVICES])),
    );
    for (let d = 0; d < DEVICES; d++) {
      const points = rows(
        await influxd.query(`SELECT temp, "on" FROM telemetry WHERE device = '${ids[d]}' ORDER BY time`, DB),
      );
      const expected = Array.from({ length: TOTAL / DEVICES }, (_, i) => {
        const seq = i + 1;
        return { time: T0 + seq * 1000, temp: value(d, seq), on: seq % 2 === 0 };
      });
      expect(points).toEqual(expected);
    }
  }, 90_000);
});
