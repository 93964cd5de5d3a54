/**
 * `faultline rules backtest` over two days of history in a real influxd: the
 * tickets a threshold rule and a fault-count rule would have opened, per rule and
 * per day, through the library and through the real CLI (a child process).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { type BacktestReport, runBacktest } from '../../src/influx/backtest.js';
import { deviceTags, faultLine, telemetryLine } from '../../src/influx/line-protocol.js';
import { InfluxReader } from '../../src/influx/reader.js';
import { loadRuleFiles } from '../../src/rules/loader.js';
import { runCli } from '../helpers/cli.js';
import { type Influxd, startInfluxd } from '../helpers/influxd.js';
import { tempDir } from '../helpers/process.js';

const DAY = Date.UTC(2025, 6, 1);
const MIN = 60_000;
const DB = 'backtest';
const RULES = `apiVersion: faultline/v1
rules:
  - id: bt-overheat
    title: "Overheating on {{device.id}}"
    scope: { models: "AC-*" }
    severity: major
    when:
      threshold: { metric: compressor_temp, op: ">", value: 95 }
    for: 10m
    clear:
      when:
        threshold: { metric: compressor_temp, op: "<", value: 90 }
      for: 2m
  - id: bt-e05-repeated
    title: "E05 keeps coming back on {{device.id}}"
    severity: minor
    actions: { ticket: false }
    when:
      faults: { code: E05, count: 3, within: 1h }
`;

let influxd: Influxd;
const dir = tempDir('backtest');
const rulesFile = join(dir.path, 'rules.yaml');

/** compressor_temp once a minute for two days, 80 °C except in the given episodes. */
function history(id: string, model: string, episodes: Array<[start: number, minutes: number, temp: number]>) {
  const tags = deviceTags({ id, model, firmware: '1.0.0', region: 'north', batch: null });
  return Array.from({ length: 2 * 1440 }, (_, i) => {
    const ts = DAY + i * MIN;
    const hot = episodes.find(([start, minutes]) => ts >= start && ts < start + minutes * MIN);
    return telemetryLine(tags, ts, { compressor_temp: hot ? hot[2] : 80, compressor_freq: 50 })!;
  });
}

beforeAll(async () => {
  influxd = await startInfluxd();
  await influxd.query(`CREATE DATABASE ${DB}`);
  writeFileSync(rulesFile, RULES);
  const lines = [
    // Long enough twice (day 1 at 10:00, day 2 at 20:00), too short once (day 2 at 14:00).
    ...history('bt-1', 'AC-9000', [
      [DAY + 600 * MIN, 30, 97],
      [DAY + 1440 * MIN + 840 * MIN, 5, 97],
      [DAY + 1440 * MIN + 1200 * MIN, 60, 98],
    ]),
    ...history('bt-2', 'AC-12000', [[DAY + 180 * MIN, 20, 99]]),
    // Hot all the time, but not an air conditioner: out of the rule's scope.
    ...history('rv-1', 'RV-200', [[DAY, 2 * 1440, 99]]),
  ];
  const tags = deviceTags({ id: 'bt-2', model: 'AC-12000', firmware: '1.0.0', region: 'north', batch: null });
  for (const m of [5, 20, 40]) lines.push(faultLine(tags, DAY + 1440 * MIN + m * MIN, 'E05', 'comms lost'));
  lines.push(faultLine(tags, DAY + 1440 * MIN + 300 * MIN, 'E05', undefined));
  for (let i = 0; i < lines.length; i += 5_000) {
    const res = await fetch(`${influxd.url}/write?db=${DB}&precision=ms`, {
      method: 'POST',
      body: lines.slice(i, i + 5_000).join('\n'),
    });
    expect(res.status).toBe(204);
  }
});

afterAll(async () => {
  await influxd?.stop();
  dir.remove();
});

function expectReport(report: BacktestReport) {
  const day1 = new Date(DAY).toISOString().slice(0, 10);
  const day2 = new Date(DAY + 1440 * MIN).toISOString().slice(0, 10);
  expect(report).toMatchObject({ devices: 3, samples: 3 * 2 * 1440, faults: 4 });
  const [overheat, e05] = report.rules;
  expect(overheat).toMatchObject({ id: 'bt-overheat', opensTickets: true, incidents: 3 });
  expect(overheat!.perDay).toEqual({ [day1]: 2, [day2]: 1 });
  expect(overheat!.tickets.map((t) => [t.device, t.openedAt])).toEqual([
    ['bt-2', new Date(DAY + 190 * MIN).toISOString()],
    ['bt-1', new Date(DAY + 610 * MIN).toISOString()],
    ['bt-1', new Date(DAY + 1440 * MIN + 1210 * MIN).toISOString()],
  ]);
  // The first two cleared two minutes below 90 °C after the episode ended; the last too.
  expect(overheat!.tickets.map((t) => t.resolvedAt)).toEqual([
    new Date(DAY + 202 * MIN).toISOString(),
    new Date(DAY + 632 * MIN).toISOString(),
    new Date(DAY + 1440 * MIN + 1262 * MIN).toISOString(),
  ]);
  expect(e05).toMatchObject({
    id: 'bt-e05-repeated',
    opensTickets: false,
    incidents: 1,
    perDay: { [day2]: 1 },
  });
  expect(e05!.tickets[0]).toMatchObject({
    device: 'bt-2',
    openedAt: new Date(DAY + 1480 * MIN).toISOString(),
  });
}

describe('rules backtest', () => {
  it('reports the tickets each rule would have opened, and how many per day', async () => {
    const config = loadConfig({ env: { FAULTLINE_INFLUX_URL: influxd.url, FAULTLINE_INFLUX_DB: DB } });
    const rules = loadRuleFiles([rulesFile]);
    expect(rules.errors).toEqual([]);
    const report = await runBacktest({
      rules: rules.rules,
      reader: new InfluxReader({ ...config.influx, url: influxd.url }),
      from: DAY,
      to: DAY + 2 * 1440 * MIN,
    });
    expectReport(report);

    const oneModel = await runBacktest({
      rules: rules.rules,
      reader: new InfluxReader({ ...config.influx, url: influxd.url }),
      from: DAY,
      to: DAY + 2 * 1440 * MIN,
      model: 'AC-12000',
    });
    expect(oneModel.devices).toBe(1);
    expect(oneModel.rules[0]!.tickets.map((t) => t.device)).toEqual(['bt-2']);
  });

  it('runs as `faultline rules backtest` with JSON or text output', async () => {
    const env = { FAULTLINE_INFLUX_URL: influxd.url, FAULTLINE_INFLUX_DB: DB };
    const range = [
      '--from',
      new Date(DAY).toISOString(),
      '--to',
      new Date(DAY + 2 * 1440 * MIN).toISOString(),
    ];
    const json = await runCli(['rules', 'backtest', rulesFile, ...range, '--json'], env);
    expect(json.stderr).not.toMatch(/error/i);
    expect(json.code).toBe(0);
    expectReport(JSON.parse(json.stdout) as BacktestReport);

    const text = await runCli(['rules', 'backtest', rulesFile, ...range, '--device', 'bt-1'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('bt-overheat [major]: 2 tickets');
    expect(text.stdout).toMatch(/bt-1 \(AC-9000\)\s+major\s+Overheating on bt-1/);

    const disabled = await runCli(['rules', 'backtest', rulesFile, ...range]);
    expect(disabled.code).toBe(2);
    expect(disabled.stderr).toContain('InfluxDB is not configured');
  }, 60_000);
});
