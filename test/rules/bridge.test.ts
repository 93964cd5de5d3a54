/**
 * The rule engine inside a running bridge, fed by real MQTT messages. Durations
 * are seconds here so timers fire within a test; the logic is the one the
 * shipped rules use with minutes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuleFired, RuleResolved } from '../../src/rules/types.js';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';

const RULES = `apiVersion: faultline/v1
rules:
  - id: t-overheat
    title: "Overheat on {{device.id}} ({{value}})"
    description: "above {{params.threshold}} for {{duration}}"
    scope: { models: "AC-*" }
    severity: major
    actions: { ticket: true, guide: false, autoClose: false }
    params: { threshold: 95, clearBelow: 90 }
    when:
      threshold: { metric: compressor_temp, op: ">", value: $threshold }
    gate:
      threshold: { metric: compressor_freq, op: ">", value: 0 }
    for: 2s
    clear:
      when:
        threshold: { metric: compressor_temp, op: "<", value: $clearBelow }
      for: 1s
  - id: t-e05
    title: "E05 x{{occurrences}} on {{device.id}}"
    description: "repeated"
    scope: { models: "AC-*" }
    severity: minor
    actions: { ticket: true, guide: false, autoClose: false }
    fingerprint: device+code
    when:
      faults: { code: E05, count: 3, within: 1h }
  - id: t-pressure
    title: "Low pressure on {{device.id}}"
    description: "avg {{value}}"
    scope: { models: "AC-*" }
    severity: major
    actions: { ticket: true, guide: false, autoClose: false }
    when:
      aggregate: { metric: discharge_pressure, fn: avg, window: 1m, minSamples: 3, op: "<", value: 19 }
  - id: t-restart
    title: "Hot for long on {{device.id}}"
    description: "above 95 for {{duration}}"
    scope: { models: "AC-R*" }
    severity: major
    actions: { ticket: true, guide: false, autoClose: false }
    when:
      threshold: { metric: compressor_temp, op: ">", value: 95 }
    for: 8s
  - id: t-silent
    title: "{{device.id}} silent"
    description: "silent for {{value}}"
    scope: { models: "RV-*" }
    severity: minor
    actions: { ticket: true, guide: false, autoClose: true }
    when:
      absent: { for: 2s }
`;

let bridge: TestBridge;
let rulesDir: { path: string; remove(): void };
const fired: RuleFired[] = [];
const resolved: RuleResolved[] = [];

function listen(b: TestBridge): void {
  b.app.bus.on('rule.fired', 'test', (e) => {
    fired.push(e);
  });
  b.app.bus.on('rule.resolved', 'test', (e) => {
    resolved.push(e);
  });
}

async function startWith(existing?: string): Promise<TestBridge> {
  const b = await startBridge({ rules: { paths: [rulesDir.path], watch: true } }, existing);
  listen(b);
  return b;
}

beforeAll(async () => {
  rulesDir = tempDir('rules');
  mkdirSync(rulesDir.path, { recursive: true });
  writeFileSync(join(rulesDir.path, 'test.yaml'), RULES);
  bridge = await startWith();
});
afterAll(async () => {
  await bridge?.stop();
  rulesDir?.remove();
});

async function device(id: string, model = 'AC-9000'): Promise<MqttClient> {
  const secret = await bridge.addDevice(id, { model });
  return bridge.connect(id, secret);
}

function telemetry(
  client: MqttClient,
  id: string,
  samples: Array<{ ts: number; seq: number; metrics: Record<string, unknown> }>,
) {
  const body = samples.length === 1 ? samples[0] : { batch: samples };
  return client.publishAsync(`devices/${id}/telemetry`, JSON.stringify(body), { qos: 1 });
}

const firedFor = (id: string, rule: string) => fired.filter((e) => e.device.id === id && e.ruleId === rule);

describe('rules in the running bridge', () => {
  it('fires a sustained threshold from its timer, without waiting for another message, with evidence', async () => {
    const c = await device('r-ac-1');
    const t0 = Date.now();
    await telemetry(c, 'r-ac-1', [{ ts: t0, seq: 1, metrics: { compressor_temp: 97, compressor_freq: 60 } }]);
    const [e] = await until('overheat fired', () =>
      firedFor('r-ac-1', 't-overheat').length ? firedFor('r-ac-1', 't-overheat') : null,
    );
    expect(e!.pendingSince).toBe(t0);
    expect(e!.fingerprint).toBe('t-overheat:r-ac-1');
    expect(e!.title).toBe('Overheat on r-ac-1 (97)');
    expect(e!.evidence.samples[0]).toMatchObject({ ts: t0, metrics: { compressor_temp: 97 } });
    expect(e!.ruleVersion).toMatch(/\w{6,}/);
  });

  it('does not fire while the gate is closed (compressor off)', async () => {
    const c = await device('r-ac-gate');
    const t0 = Date.now();
    await telemetry(c, 'r-ac-gate', [
      { ts: t0, seq: 1, metrics: { compressor_temp: 99, compressor_freq: 0 } },
    ]);
    // The overheat rule of r-ac-1 (same timer length) firing proves enough time has passed.
    const c2 = await device('r-ac-witness');
    await telemetry(c2, 'r-ac-witness', [
      { ts: Date.now(), seq: 1, metrics: { compressor_temp: 99, compressor_freq: 50 } },
    ]);
    await until('witness fired', () => firedFor('r-ac-witness', 't-overheat').length > 0);
    expect(firedFor('r-ac-gate', 't-overheat')).toEqual([]);
  });

  it('keeps one incident for a signal hovering around the threshold (hysteresis)', async () => {
    const c = await device('r-ac-hover');
    const t0 = Date.now() - 60_000;
    // Hot for 5 s (fires), then hovering 94..96 around the threshold of 95 with the clear at < 90:
    // one incident, never cleared, never reopened.
    const samples = Array.from({ length: 60 }, (_, i) => ({
      ts: t0 + i * 1000,
      seq: i + 1,
      metrics: { compressor_temp: i < 5 ? 97 : i % 2 === 0 ? 96 : 94, compressor_freq: 60 },
    }));
    await telemetry(c, 'r-ac-hover', samples);
    await until('hover fired', () => firedFor('r-ac-hover', 't-overheat').length > 0);
    await telemetry(c, 'r-ac-hover', [
      { ts: Date.now(), seq: 100, metrics: { compressor_temp: 95.5, compressor_freq: 60 } },
    ]);
    await bridge.app.bus.idle();
    expect(firedFor('r-ac-hover', 't-overheat')).toHaveLength(1);
    expect(resolved.filter((e) => e.device.id === 'r-ac-hover')).toEqual([]);
  });

  it('evaluates a late offline buffer in device-time order and marks its stale episode, even out of order', async () => {
    const c = await device('r-ac-late');
    const t0 = Date.now() - 3 * 3600_000;
    // A device back from three hours offline uploads its buffer, shuffled, ending with a live
    // sample: an episode three hours ago (hot for 10 s, then cool) must be evaluated in device-time
    // order and recorded as stale rather than paged as new.
    const samples = Array.from({ length: 20 }, (_, i) => ({
      ts: t0 + i * 1000,
      seq: i + 1,
      metrics: { compressor_temp: i < 10 ? 98 : 80, compressor_freq: 60 },
    }));
    samples.push({ ts: Date.now(), seq: 21, metrics: { compressor_temp: 80, compressor_freq: 60 } });
    samples.reverse();
    await telemetry(c, 'r-ac-late', samples);
    const [e] = await until('late episode fired', () =>
      firedFor('r-ac-late', 't-overheat').length ? firedFor('r-ac-late', 't-overheat') : null,
    );
    expect(e!.pendingSince).toBe(t0);
    expect(e!.late).toBe(true);
    expect(e!.stale).toBe(true);
    await until('late episode resolved', () => resolved.some((r) => r.device.id === 'r-ac-late'));
  });

  it('counts fault codes in a window (three E05 within an hour)', async () => {
    const c = await device('r-ac-e05');
    const t = Date.now();
    for (let i = 0; i < 2; i++) {
      await c.publishAsync(
        'devices/r-ac-e05/faults',
        JSON.stringify({ ts: t + i, seq: i + 1, code: 'E05' }),
        { qos: 1 },
      );
    }
    await bridge.app.bus.idle();
    expect(firedFor('r-ac-e05', 't-e05')).toEqual([]);
    await c.publishAsync(
      'devices/r-ac-e05/faults',
      JSON.stringify({ ts: t + 2, seq: 3, code: 'E05', detail: 'comm lost' }),
      { qos: 1 },
    );
    const [e] = await until('E05 fired', () =>
      firedFor('r-ac-e05', 't-e05').length ? firedFor('r-ac-e05', 't-e05') : null,
    );
    expect(e!.occurrences).toBe(3);
    expect(e!.fingerprint).toBe('r-ac-e05:fault:E05');
  });

  it('fires an aggregate over a sliding window', async () => {
    const c = await device('r-ac-agg');
    const t0 = Date.now() - 30_000;
    await telemetry(
      c,
      'r-ac-agg',
      [18, 18.5, 18.2].map((p, i) => ({
        ts: t0 + i * 10_000,
        seq: i + 1,
        metrics: { discharge_pressure: p },
      })),
    );
    const [e] = await until('aggregate fired', () =>
      firedFor('r-ac-agg', 't-pressure').length ? firedFor('r-ac-agg', 't-pressure') : null,
    );
    expect(e!.value).toBeCloseTo((18 + 18.5 + 18.2) / 3, 5);
  });

  it('fires absence for a registered device that never reported', async () => {
    // Registered while the bridge runs, never connected: the registry tells the engine.
    await bridge.addDevice('r-rv-never', { model: 'RV-200' });
    const [e] = await until(
      'silence fired',
      () => (firedFor('r-rv-never', 't-silent').length ? firedFor('r-rv-never', 't-silent') : null),
      10_000,
    );
    expect(e!.ruleId).toBe('t-silent');
  });

  it('refuses a broken rule file on hot reload with file:line:col and keeps the old rules running', async () => {
    const file = join(rulesDir.path, 'test.yaml');
    writeFileSync(
      file,
      `${RULES}  - id: broken\n    title: x\n    when: { threshold: { metric: a, op: "~", value: 1 } }\n`,
    );
    const status = await until('reload refused', async () => {
      const res = await bridge.api('/api/v1/rules');
      const body = (await res.json()) as {
        loadErrors: Array<{ file: string; line: number; col: number; message: string }>;
      };
      return body.loadErrors.length > 0 ? body : null;
    });
    expect(status.loadErrors[0]!.file).toBe(file);
    const start = RULES.split('\n').length; // line of the appended "- id: broken"
    expect(status.loadErrors).toContainEqual(expect.objectContaining({ file, line: start + 2, col: 41 }));
    expect(status.loadErrors.find((e) => e.line === start + 2)!.message).toMatch(/^op: /);
    const c = await device('r-ac-after-broken');
    await telemetry(c, 'r-ac-after-broken', [
      { ts: Date.now(), seq: 1, metrics: { compressor_temp: 99, compressor_freq: 60 } },
    ]);
    await until('old rule still fires', () => firedFor('r-ac-after-broken', 't-overheat').length > 0);
    writeFileSync(file, RULES);
  });

  it('exports per-rule counters in /metrics', async () => {
    const text = await (await fetch(`${bridge.addresses.http}/metrics`)).text();
    expect(text).toMatch(/faultline_rule_firings_total\{rule="t-overheat"\} [1-9]/);
    expect(text).toMatch(/faultline_rule_evaluations_total\{rule="t-overheat"\} [1-9]/);
  });
});

describe('rule state across a restart', { timeout: 90_000 }, () => {
  it('fires on time after a restart in the middle of a pending window', async () => {
    // A longer pending window than the other rules', so a slow stop cannot outlast it.
    const secret = await bridge.addDevice('r-ac-restart', { model: 'AC-R1' });
    const c = await bridge.connect('r-ac-restart', secret);
    const t0 = Date.now();
    await telemetry(c, 'r-ac-restart', [
      { ts: t0, seq: 1, metrics: { compressor_temp: 99, compressor_freq: 60 } },
    ]);
    await bridge.app.bus.idle();
    const states = bridge.app.parts.rules.engine.ruleStates('r-ac-restart');
    expect(states.find((s) => s.ruleId === 't-restart')?.phase).toBe('pending');
    const dataDir = bridge.dataDir;
    await bridge.stopKeepData();
    expect(firedFor('r-ac-restart', 't-restart')).toEqual([]);
    bridge = await startWith(dataDir);
    // No new message: the restored pending timer (downtime counted) fires by itself.
    const [e] = await until(
      'fired after restart',
      () => (firedFor('r-ac-restart', 't-restart').length ? firedFor('r-ac-restart', 't-restart') : null),
      30_000,
    );
    expect(e!.pendingSince).toBe(t0);
  });
});
