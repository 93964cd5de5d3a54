/**
 * GET /api/v1/devices/:id/series against a real influxd: downsampled means (and
 * last values for strings), the default step, the point cap, roles, and the
 * disabled feature (no influx.url): one clear log line at start and 503
 * FL_FEATURE_DISABLED from the API, while the rest of the bridge works.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import { ADMIN_TOKEN, startBridge, type TestBridge } from '../helpers/bridge.js';
import { type Influxd, startInfluxd } from '../helpers/influxd.js';
import { tempDir } from '../helpers/process.js';
import { caughtUp } from './support.js';

const STAFF_TOKEN = 'history-staff-token-0123456789';
const T0 = Date.UTC(2025, 4, 1, 10, 0, 0);
const N = 360; // one sample every 10 s for an hour

let influxd: Influxd;
let bridge: TestBridge;

beforeAll(async () => {
  influxd = await startInfluxd();
  bridge = await startBridge({
    http: { tokens: [{ name: 'desk', token: STAFF_TOKEN, role: 'staff' }] },
    influx: { url: influxd.url, database: 'history', flushIntervalMs: 20, maxSeriesPoints: 100 },
  });
  const secret = await bridge.addDevice('h-1');
  const client = await bridge.connect('h-1', secret);
  const batch = Array.from({ length: N }, (_, i) => ({
    ts: T0 + i * 10_000,
    seq: i + 1,
    metrics: { temp: i, mode: i % 60 < 30 ? 'cool' : 'heat' },
  }));
  await client.publishAsync('devices/h-1/telemetry', JSON.stringify({ batch }), { qos: 1 });
  await caughtUp(bridge);
});

afterAll(async () => {
  await bridge?.stop();
  await influxd?.stop();
});

const iso = (ms: number) => new Date(ms).toISOString();

interface SeriesBody {
  device: string;
  step: string;
  stepMs: number;
  stepAdjusted: boolean;
  series: Array<{ metric: string; aggregate: string; points: Array<[number, number | string | boolean]> }>;
  error?: { code: string };
}

async function series(query: string, token = ADMIN_TOKEN) {
  const res = await bridge.api(`/api/v1/devices/h-1/series?${query}`, { token });
  return { status: res.status, body: (await res.json()) as SeriesBody };
}

describe('history API', () => {
  it('returns the mean per step for numbers and the last value for strings', async () => {
    const { status, body } = await series(
      `metrics=temp,mode&from=${iso(T0)}&to=${iso(T0 + 3_600_000)}&step=5m`,
    );
    expect(status).toBe(200);
    expect(body).toMatchObject({ device: 'h-1', step: '5m', stepMs: 300_000, stepAdjusted: false });
    const [temp, mode] = body.series as [SeriesBody['series'][0], SeriesBody['series'][0]];
    expect(temp.metric).toBe('temp');
    expect(temp.aggregate).toBe('mean');
    // 30 samples per 5 minutes: i = 30k .. 30k+29, mean 30k + 14.5.
    expect(temp.points).toEqual(Array.from({ length: 12 }, (_, k) => [T0 + k * 300_000, 30 * k + 14.5]));
    expect(mode).toMatchObject({ metric: 'mode', aggregate: 'last' });
    expect(mode.points.map((p) => p[1])).toEqual(
      Array.from({ length: 12 }, (_, k) => (k % 2 === 0 ? 'cool' : 'heat')),
    );
  });

  it('chooses a step from the range, and coarsens a step that would exceed the point cap', async () => {
    const range = `from=${iso(T0)}&to=${iso(T0 + 3_600_000)}`;
    const chosen = await series(`metrics=temp&${range}`);
    // 1 h / 500 points would be 7.2 s, but the cap (100 here) comes first: 36 s, so the next nice step.
    expect(chosen.body).toMatchObject({ step: '1m', stepMs: 60_000, stepAdjusted: false });
    expect(chosen.body.series[0]!.points).toHaveLength(60);

    const tooFine = await series(`metrics=temp&${range}&step=1s`);
    expect(tooFine.body).toMatchObject({ step: '1m', stepAdjusted: true });
    expect(tooFine.body.series[0]!.points.length).toBeLessThanOrEqual(100);
  });

  it('lets staff read history, and refuses bad input and unknown devices', async () => {
    const range = `from=${iso(T0)}&to=${iso(T0 + 600_000)}&step=10m`;
    const staff = await series(`metrics=temp&${range}`, STAFF_TOKEN);
    expect(staff.status).toBe(200);
    expect(staff.body.series[0]!.points).toEqual([[T0, 29.5]]);

    const badMetric = await series(`metrics=Temp;DROP&${range}`);
    expect(badMetric.status).toBe(400);
    expect(badMetric.body.error?.code).toBe('FL_VALIDATION');
    const backwards = await series(`metrics=temp&from=${iso(T0 + 600_000)}&to=${iso(T0)}`);
    expect(backwards.status).toBe(400);
    const unknown = await bridge.api(`/api/v1/devices/nobody/series?metrics=temp&${range}`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('FL_DEVICE_NOT_FOUND');
    const anonymous = await fetch(`${bridge.addresses.http}/api/v1/devices/h-1/series?metrics=temp`);
    expect(anonymous.status).toBe(401);
  });
});

describe('without influx.url', () => {
  it('says so once at start, answers 503 FL_FEATURE_DISABLED, and keeps no influx cursor', async () => {
    const dir = tempDir('no-influx');
    const lines: Array<Record<string, unknown>> = [];
    const sinkStream = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line));
        done();
      },
    });
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir.path,
        mqtt: { host: '127.0.0.1', port: 0, wsPort: 0 },
        http: { host: '127.0.0.1', port: 0, adminToken: ADMIN_TOKEN },
      },
    });
    const app = buildApp(config, { log: pino({ level: 'info' }, sinkStream) });
    try {
      const addresses = await app.start();
      const res = await fetch(`${addresses.http}/api/v1/devices/x-1/series?metrics=temp`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(res.status).toBe(503);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('FL_FEATURE_DISABLED');
      expect(body.error.message).toContain('FAULTLINE_INFLUX_URL');
      const mentions = lines.filter((l) => /influx/i.test(String(l.msg)));
      expect(mentions).toHaveLength(1);
      expect(mentions[0]!.msg).toMatch(
        /InfluxDB is not configured.*rules, tickets and pushes are unaffected/,
      );
      expect(app.parts.influx.sink).toBeNull();
      expect(Object.keys(app.parts.wal.stats().cursors)).not.toContain('influx');
    } finally {
      await app.stop();
      dir.remove();
    }
  });
});
