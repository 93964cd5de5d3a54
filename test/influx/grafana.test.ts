/**
 * The provisioned Grafana dashboard and datasource: every InfluxQL query in the
 * dashboard (panels, variables, annotations) runs on a real influxd over points in
 * Faultline's own encoding, with Grafana's variables filled in as Grafana would.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { deviceTags, faultLine, statusLine, telemetryLine } from '../../src/influx/line-protocol.js';
import { type Influxd, type InfluxQueryResult, startInfluxd } from '../helpers/influxd.js';

const root = join(process.cwd(), 'grafana');
const dashboard = JSON.parse(readFileSync(join(root, 'dashboards/device-telemetry.json'), 'utf8'));
const DB = 'telemetry';
const T0 = Date.now() - 3_600_000;
let influxd: Influxd;

beforeAll(async () => {
  influxd = await startInfluxd();
  await influxd.query(`CREATE DATABASE ${DB}`);
  const lines: string[] = [];
  for (const [id, model] of [
    ['gf-ac-1', 'AC-9000'],
    ['gf-ac-2', 'AC-12000'],
  ] as const) {
    const tags = deviceTags({ id, model, firmware: '2.0.0', region: null, batch: null });
    for (let i = 0; i < 360; i++)
      lines.push(telemetryLine(tags, T0 + i * 10_000, { compressor_temp: 70 + (i % 20), mode: 'cool' })!);
    lines.push(faultLine(tags, T0 + 600_000, 'E05', 'comms lost'));
    lines.push(statusLine(tags, T0, { state: 'online' }));
  }
  const res = await fetch(`${influxd.url}/write?db=${DB}&precision=ms`, {
    method: 'POST',
    body: lines.join('\n'),
  });
  expect(res.status).toBe(204);
});

afterAll(async () => {
  await influxd?.stop();
});

/** Grafana's InfluxQL interpolation for the values used here (regex-escaped, `(a|b)` for several). */
function interpolate(q: string): string {
  return q
    .replaceAll('$timeFilter', `time >= ${T0 - 60_000}ms and time <= ${Date.now()}ms`)
    .replaceAll('$__interval', '1m')
    .replaceAll('$model', '(AC\\-9000|AC\\-12000)')
    .replaceAll('$device', '(gf\\-ac\\-1|gf\\-ac\\-2)')
    .replaceAll('"$metric"', '"compressor_temp"');
}

async function run(q: string): Promise<InfluxQueryResult> {
  const result = await influxd.query(interpolate(q), DB);
  for (const r of result.results) expect(r.error, q).toBeUndefined();
  return result;
}

describe('Grafana provisioning', () => {
  it('provisions an InfluxQL datasource with the token header and the dashboard folder', () => {
    const ds = parseYaml(readFileSync(join(root, 'provisioning/datasources/influxdb.yaml'), 'utf8'));
    expect(ds.datasources[0]).toMatchObject({
      uid: 'faultline-influx',
      type: 'influxdb',
      jsonData: { httpHeaderName1: 'Authorization' },
      // Grafana fills ${INFLUX_TOKEN} from its environment when it provisions.
      secureJsonData: { httpHeaderValue1: `Token $${'{INFLUX_TOKEN}'}` },
    });
    const providers = parseYaml(readFileSync(join(root, 'provisioning/dashboards/faultline.yaml'), 'utf8'));
    expect(providers.providers[0].options.path).toBe('/var/lib/grafana/dashboards');
  });

  it('has a device variable, and every query in the dashboard runs and finds the points', async () => {
    const variables = dashboard.templating.list as Array<{ name: string; query: string }>;
    expect(variables.map((v) => v.name)).toEqual(['model', 'device', 'metric']);
    const values = async (name: string) =>
      ((await run(variables.find((v) => v.name === name)!.query)).results[0]?.series ?? []).flatMap((s) =>
        s.values.map((v) => v[s.columns[0] === 'key' ? 1 : 0]),
      );
    expect(await values('model')).toEqual(['AC-12000', 'AC-9000']);
    expect(await values('device')).toEqual(['gf-ac-1', 'gf-ac-2']);
    expect(await values('metric')).toEqual(['compressor_temp', 'mode']);

    for (const panel of dashboard.panels as Array<{ title: string; targets: Array<{ query: string }> }>) {
      for (const t of panel.targets) {
        const result = await run(t.query);
        const series = result.results[0]?.series ?? [];
        expect(series.length, panel.title).toBeGreaterThan(0);
      }
    }
    for (const a of dashboard.annotations.list as Array<{ query: string }>) {
      const result = await run(a.query);
      expect(result.results[0]?.series?.[0]?.values).toHaveLength(2);
    }
  });
});
