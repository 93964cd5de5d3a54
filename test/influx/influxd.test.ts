/**
 * Against a real InfluxDB 1.6.7: samples, fault events and status changes sent
 * over MQTT into an in-process bridge come back from InfluxDB exactly (count,
 * tags, field types and values), and a point InfluxDB refuses is quarantined
 * without holding up the points around it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { type Influxd, rows, startInfluxd } from '../helpers/influxd.js';
import { caughtUp, metricValue, quarantined } from './support.js';

let influxd: Influxd;
let bridge: TestBridge;
const DB = 'fl_test';

beforeAll(async () => {
  influxd = await startInfluxd();
  bridge = await startBridge({
    influx: { url: influxd.url, database: DB, flushIntervalMs: 20, maxRetryDelayMs: 200 },
  });
});

afterAll(async () => {
  await bridge?.stop();
  await influxd?.stop();
});

const q = async (query: string) => rows(await influxd.query(query, DB));

describe('InfluxDB 1.x through the v1 API', () => {
  it('writes every sample, fault and status change with device tags, read back exactly', async () => {
    await bridge.addDevice('lp-ac-1', {
      model: 'AC-9000',
      firmware: '2.1.0',
      region: 'eu west',
      batch: 'B,7',
    });
    const bare = await bridge.addDevice('lp-ac-2', { model: 'AC 12000' });
    const client = await bridge.connect('lp-ac-1', 'secret-lp-ac-1-0123456789');
    const client2 = await bridge.connect('lp-ac-2', bare);
    const t0 = Date.UTC(2025, 0, 10, 8, 0, 0);
    const samples = Array.from({ length: 120 }, (_, i) => ({
      ts: t0 + i * 1000,
      seq: i + 1,
      metrics: {
        compressor_temp: 60 + i / 4,
        compressor_freq: 72 + (i % 3),
        running: i % 2 === 0,
        mode: i < 60 ? 'cool' : 'dry "eco"',
        // Named like a tag: written as the field model_, read back as the metric model.
        model: 3,
      },
    }));
    // One sample on its own, the rest as offline-buffer batches.
    await client.publishAsync('devices/lp-ac-1/telemetry', JSON.stringify(samples[0]), { qos: 1 });
    await client.publishAsync('devices/lp-ac-1/telemetry', JSON.stringify({ batch: samples.slice(1, 70) }), {
      qos: 1,
    });
    await client.publishAsync('devices/lp-ac-1/telemetry', JSON.stringify({ batch: samples.slice(70) }), {
      qos: 1,
    });
    await client.publishAsync(
      'devices/lp-ac-1/faults',
      JSON.stringify({
        ts: t0 + 500,
        seq: 500,
        code: 'E05',
        detail: 'indoor/outdoor\ncommunication lost, "retry"',
      }),
      { qos: 1 },
    );
    await client.publishAsync(
      'devices/lp-ac-1/faults',
      JSON.stringify({ ts: t0 + 1500, seq: 501, code: 'P4' }),
      {
        qos: 1,
      },
    );
    await client2.publishAsync(
      'devices/lp-ac-2/telemetry',
      JSON.stringify({ ts: t0, seq: 1, metrics: { compressor_temp: -0.5 } }),
      { qos: 1 },
    );
    await client2.publishAsync(
      'devices/lp-ac-2/status',
      JSON.stringify({ state: 'online', firmware: '9.9', ts: t0 + 10 }),
      { qos: 1 },
    );
    await caughtUp(bridge);

    const telemetry = await q(`SELECT * FROM telemetry WHERE device = 'lp-ac-1' ORDER BY time`);
    expect(telemetry).toHaveLength(samples.length);
    telemetry.forEach((row, i) => {
      const s = samples[i]!;
      expect(row).toEqual({
        time: s.ts,
        device: 'lp-ac-1',
        model: 'AC-9000',
        firmware: '2.1.0',
        region: 'eu west',
        batch: 'B,7',
        compressor_temp: s.metrics.compressor_temp,
        compressor_freq: s.metrics.compressor_freq,
        running: s.metrics.running,
        mode: s.metrics.mode,
        model_: 3,
      });
    });
    const types = await q('SHOW FIELD KEYS FROM telemetry');
    expect(Object.fromEntries(types.map((r) => [r.fieldKey, r.fieldType]))).toEqual({
      compressor_temp: 'float',
      compressor_freq: 'float',
      running: 'boolean',
      mode: 'string',
      model_: 'float',
    });

    const faults = await q(`SELECT * FROM faults ORDER BY time`);
    expect(faults).toEqual([
      {
        time: t0 + 500,
        device: 'lp-ac-1',
        model: 'AC-9000',
        firmware: '2.1.0',
        region: 'eu west',
        batch: 'B,7',
        code: 'E05',
        detail: 'indoor/outdoor\ncommunication lost, "retry"',
      },
      {
        time: t0 + 1500,
        device: 'lp-ac-1',
        model: 'AC-9000',
        firmware: '2.1.0',
        region: 'eu west',
        batch: 'B,7',
        code: 'P4',
        detail: null,
      },
    ]);

    // A device without firmware, region or batch has only the tags it has.
    const bareRows = await q(`SELECT * FROM telemetry WHERE device = 'lp-ac-2'`);
    expect(bareRows).toHaveLength(1);
    expect(bareRows[0]).toMatchObject({
      time: t0,
      device: 'lp-ac-2',
      model: 'AC 12000',
      compressor_temp: -0.5,
    });
    const tagKeys = await q(`SHOW TAG KEYS FROM telemetry WHERE device = 'lp-ac-2'`);
    expect(tagKeys.map((r) => r.tagKey).sort()).toEqual(['device', 'model']);

    // Status: the device's own message at its own time (connection events are there too, at server time).
    const status = await q(`SELECT * FROM status WHERE device = 'lp-ac-2' AND time = ${t0 + 10}ms`);
    expect(status).toEqual([
      expect.objectContaining({
        state: 'online',
        reported_firmware: '9.9',
        device: 'lp-ac-2',
        time: t0 + 10,
      }),
    ]);

    expect(
      await metricValue(bridge, 'faultline_influx_points_written_total', { measurement: 'telemetry' }),
    ).toBe(samples.length + 1);
    expect(
      await metricValue(bridge, 'faultline_influx_points_written_total', { measurement: 'faults' }),
    ).toBe(2);
  });

  it('quarantines a point of the wrong type with the server message; the rest of its batch and later batches arrive', async () => {
    const secret = await bridge.addDevice('lp-ac-3');
    const client = await bridge.connect('lp-ac-3', secret);
    const t0 = Date.UTC(2025, 0, 11, 8, 0, 0);
    await client.publishAsync(
      'devices/lp-ac-3/telemetry',
      JSON.stringify({ ts: t0, seq: 1, metrics: { fan_speed: 1200 } }),
      { qos: 1 },
    );
    await caughtUp(bridge);
    // In one batch: good points around one whose fan_speed is now a string. InfluxDB 1.6 refuses a
    // conflicting batch whole, so the sink has to find the bad point by splitting.
    const batch = Array.from({ length: 40 }, (_, i) => ({
      ts: t0 + (i + 1) * 1000,
      seq: i + 2,
      metrics: { fan_speed: i === 17 ? 'high' : 1200 + i, coil_temp: 10 + i },
    }));
    await client.publishAsync('devices/lp-ac-3/telemetry', JSON.stringify({ batch }), { qos: 1 });
    await client.publishAsync(
      'devices/lp-ac-3/telemetry',
      JSON.stringify({ ts: t0 + 100_000, seq: 100, metrics: { fan_speed: 900 } }),
      { qos: 1 },
    );
    await caughtUp(bridge);

    const files = quarantined(bridge.dataDir);
    expect(files).toHaveLength(1);
    expect(files[0]!.lines).toEqual([
      `telemetry,device=lp-ac-3,model=AC-9000 fan_speed="high",coil_temp=27 ${t0 + 18_000}`,
    ]);
    expect(files[0]!.sidecar).toMatchObject({ status: 400, points: 1 });
    expect(files[0]!.sidecar.message).toContain('field type conflict');
    expect(await metricValue(bridge, 'faultline_influx_quarantined_points_total')).toBe(1);

    const written = await q(
      `SELECT fan_speed, coil_temp FROM telemetry WHERE device = 'lp-ac-3' ORDER BY time`,
    );
    expect(written.map((r) => r.time)).toEqual([
      t0,
      ...batch.filter((_, i) => i !== 17).map((s) => s.ts),
      t0 + 100_000,
    ]);
    expect(written.at(-1)).toMatchObject({ fan_speed: 900 });
  });
});
