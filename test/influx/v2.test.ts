/**
 * The v2 write path (@influxdata/influxdb-client, POST /api/v2/write with org,
 * bucket and token) against a real VictoriaMetrics, which parses line protocol
 * and shows what arrived through /api/v1/export (`measurement field` becomes the
 * metric `measurement_field`). A recording proxy in between checks the requests
 * and injects a 503 and a 2.x-style 400, which go through the client's error path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { startVictoria, type Victoria } from '../helpers/victoria.js';
import {
  caughtUp,
  type FaultProxy,
  metricValue,
  type ProxyAnswer,
  type ProxyRequest,
  quarantined,
  startFaultProxy,
  writeRequests,
} from './support.js';

const TOKEN = 'v2-test-token-0123456789';
let victoria: Victoria;
let proxy: FaultProxy;
let bridge: TestBridge;
let decide: (req: ProxyRequest) => ProxyAnswer = () => 'forward';

beforeAll(async () => {
  victoria = await startVictoria();
  proxy = await startFaultProxy(victoria.url, (req) => decide(req));
  bridge = await startBridge({
    influx: {
      url: proxy.url,
      api: 'v2',
      org: 'acme appliances',
      bucket: 'telemetry',
      token: TOKEN,
      flushIntervalMs: 20,
      maxRetryDelayMs: 100,
    },
  });
});

afterAll(async () => {
  await bridge?.stop();
  await proxy?.stop();
  await victoria?.stop();
});

describe('InfluxDB v2 write API', () => {
  it('writes through /api/v2/write with org, bucket, precision and token; VictoriaMetrics stores the values', async () => {
    let failed = false;
    decide = (req) => {
      if (!failed && req.url.startsWith('/api/v2/write')) {
        failed = true;
        return { status: 503, body: '{"code":"unavailable","message":"service unavailable"}' };
      }
      return 'forward';
    };
    const secret = await bridge.addDevice('v2-ac-1', {
      model: 'AC-9000',
      firmware: '3.0.1',
      region: 'south',
    });
    const client = await bridge.connect('v2-ac-1', secret);
    const t0 = Date.UTC(2025, 3, 1, 6, 0, 0);
    const samples = Array.from({ length: 200 }, (_, i) => ({
      ts: t0 + i * 10_000,
      seq: i + 1,
      metrics: { compressor_temp: 55 + i / 8, defrost: i % 10 === 0 },
    }));
    await client.publishAsync('devices/v2-ac-1/telemetry', JSON.stringify({ batch: samples }), { qos: 1 });
    await client.publishAsync(
      'devices/v2-ac-1/faults',
      JSON.stringify({ ts: t0 + 5, seq: 900, code: 'E05' }),
      {
        qos: 1,
      },
    );
    await caughtUp(bridge);

    const writes = writeRequests(proxy);
    expect(writes.length).toBeGreaterThanOrEqual(2);
    for (const w of writes) {
      const url = new URL(w.url, 'http://x');
      expect(url.pathname).toBe('/api/v2/write');
      expect(Object.fromEntries(url.searchParams)).toEqual({
        org: 'acme appliances',
        bucket: 'telemetry',
        precision: 'ms',
      });
      expect(w.headers.authorization).toBe(`Token ${TOKEN}`);
    }
    expect(await metricValue(bridge, 'faultline_influx_write_retries_total', { reason: 'server' })).toBe(1);

    const temp = await victoria.exportSeries('telemetry_compressor_temp{device="v2-ac-1"}');
    expect(temp).toHaveLength(1);
    expect(temp[0]!.metric).toEqual({
      __name__: 'telemetry_compressor_temp',
      device: 'v2-ac-1',
      model: 'AC-9000',
      firmware: '3.0.1',
      region: 'south',
    });
    expect(temp[0]!.timestamps).toEqual(samples.map((s) => s.ts));
    expect(temp[0]!.values).toEqual(samples.map((s) => s.metrics.compressor_temp));
    const defrost = await victoria.exportSeries('telemetry_defrost{device="v2-ac-1"}');
    expect(defrost[0]!.values).toEqual(samples.map((s) => (s.metrics.defrost ? 1 : 0)));
    // VictoriaMetrics keeps no strings, but the fault point arrived at its device time.
    const code = await victoria.exportSeries('faults_code{device="v2-ac-1"}');
    expect(code[0]!.timestamps).toEqual([t0 + 5]);
  });

  it('quarantines what a v2 server refuses with 400, with its message, and goes on', async () => {
    decide = (req) =>
      req.url.startsWith('/api/v2/write') && req.body.includes('mode="turbo"')
        ? {
            status: 400,
            body: JSON.stringify({
              code: 'invalid',
              message:
                'partial write: field type conflict: input field "mode" on measurement "telemetry" is type string, already exists as type float dropped=1',
            }),
          }
        : 'forward';
    const secret = await bridge.addDevice('v2-ac-2');
    const client = await bridge.connect('v2-ac-2', secret);
    const t0 = Date.UTC(2025, 3, 2);
    const batch = Array.from({ length: 8 }, (_, i) => ({
      ts: t0 + i * 1000,
      seq: i + 1,
      metrics: i === 5 ? { mode: 'turbo', coil_temp: i } : { coil_temp: i },
    }));
    await client.publishAsync('devices/v2-ac-2/telemetry', JSON.stringify({ batch }), { qos: 1 });
    await caughtUp(bridge);

    const files = quarantined(bridge.dataDir);
    expect(files).toHaveLength(1);
    expect(files[0]!.lines).toEqual([
      `telemetry,device=v2-ac-2,model=AC-9000 mode="turbo",coil_temp=5 ${t0 + 5000}`,
    ]);
    expect(files[0]!.sidecar.status).toBe(400);
    expect(files[0]!.sidecar.message).toMatch(/^partial write: field type conflict/);
    const coil = await victoria.exportSeries('telemetry_coil_temp{device="v2-ac-2"}');
    expect(coil[0]!.values).toEqual([0, 1, 2, 3, 4, 6, 7]);
  });

  it('does not take a 201 that lists refused lines (early InfluxDB 3 partial writes) as success', async () => {
    decide = (req) => {
      if (!req.url.startsWith('/api/v2/write')) return 'forward';
      if (!req.body.includes('mode="eco"')) return 'forward';
      return {
        status: 201,
        body: '{"error":"partial write of line protocol occurred","data":[{"line_number":1}]}',
      };
    };
    const secret = await bridge.addDevice('v2-ac-3');
    const client = await bridge.connect('v2-ac-3', secret);
    const t0 = Date.UTC(2025, 3, 3);
    const batch = Array.from({ length: 4 }, (_, i) => ({
      ts: t0 + i * 1000,
      seq: i + 1,
      metrics: i === 2 ? { mode: 'eco', coil_temp: i } : { coil_temp: i },
    }));
    await client.publishAsync('devices/v2-ac-3/telemetry', JSON.stringify({ batch }), { qos: 1 });
    await caughtUp(bridge);
    const files = quarantined(bridge.dataDir).filter((f) => f.lines[0]!.includes('v2-ac-3'));
    expect(files.map((f) => [f.lines, f.sidecar.status])).toEqual([
      [[`telemetry,device=v2-ac-3,model=AC-9000 mode="eco",coil_temp=2 ${t0 + 2000}`], 201],
    ]);
    const coil = await victoria.exportSeries('telemetry_coil_temp{device="v2-ac-3"}');
    expect(coil[0]!.values).toEqual([0, 1, 3]);
  });
});
