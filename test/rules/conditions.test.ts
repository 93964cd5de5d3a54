import { describe, expect, it } from 'vitest';
import { loadRuleText } from '../../src/rules/loader.js';
import { device, Harness, HOUR, MIN, rules, SEC, T0 } from './harness.js';

const ac = device('ac-1');

describe('threshold', () => {
  const overheat = rules(`
  - id: hot
    title: "hot {{device.id}} {{value}}"
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    for: 10m
`);

  it('fires once the value has held for the duration, on the deadline itself', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, 10 * SEC, 70, () => ({ compressor_temp: 96 }));
    expect(h.timeline()).toEqual(['rule.fired hot @10m']);
    const e = h.of('rule.fired')[0];
    expect(e?.pendingSince).toBe(T0);
    expect(e?.firingSince).toBe(T0 + 10 * MIN);
    expect(e?.value).toBe(96);
  });

  it('does not fire when the value drops before the duration', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, 10 * SEC, 200, (i) => ({ compressor_temp: i % 50 === 49 ? 90 : 96 }));
    expect(h.events).toEqual([]);
  });

  it('fires from tick alone when the device goes quiet within maxGap', () => {
    const h = new Harness(overheat);
    // Last sample at 8 min; its value is held for maxGap (5m), so the 10-minute deadline is covered.
    h.series(ac, T0, 10 * SEC, 49, () => ({ compressor_temp: 97 }));
    expect(h.engine.nextDeadline()).toBe(T0 + 10 * MIN);
    h.engine.tick(T0 + 10 * MIN - 1);
    expect(h.events).toEqual([]);
    h.engine.tick(T0 + 10 * MIN);
    expect(h.timeline()).toEqual(['rule.fired hot @10m']);
  });

  it('holds a leaf-level for before the leaf counts', () => {
    const h = new Harness(
      rules(`
  - id: both
    title: t
    severity: major
    when:
      all:
        - threshold: { metric: compressor_temp, op: ">", value: 95, for: 5m }
        - threshold: { metric: current, op: ">", value: 10 }
`),
    );
    // temperature high from 0, current high only from 6m: the leaf held 5m by then, so fire at 6m
    h.series(ac, T0, MIN, 10, (i) => ({ compressor_temp: 96, current: i >= 6 ? 12 : 5 }));
    expect(h.timeline()).toEqual(['rule.fired both @6m']);
  });

  it('compares strings and booleans with == and !=', () => {
    const h = new Harness(
      rules(`
  - id: cool-fan
    title: t
    severity: info
    when:
      all:
        - threshold: { metric: mode, op: "==", value: cool }
        - threshold: { metric: cleaning, op: "!=", value: true }
`),
    );
    h.telemetry(ac, T0, { mode: 'heat', cleaning: false });
    h.telemetry(ac, T0 + SEC, { mode: 'cool', cleaning: true });
    expect(h.events).toEqual([]);
    h.telemetry(ac, T0 + 2 * SEC, { mode: 'cool', cleaning: false });
    expect(h.timeline()).toEqual(['rule.fired cool-fan @0.03333333333333333m']);
  });
});

describe('aggregates over a sliding window', () => {
  const agg = (fn: string, op: string, value: number, extra = '') =>
    rules(`
  - id: agg
    title: "agg {{value}}"
    severity: minor
    when:
      aggregate: { metric: discharge_pressure, fn: ${fn}, window: 10m, step: 1m, op: "${op}", value: ${value}${extra} }
`);

  it('avg: fires when the window average crosses, not on a single low sample', () => {
    const h = new Harness(agg('avg', '<', 15));
    h.telemetry(ac, T0, { discharge_pressure: 20 });
    h.telemetry(ac, T0 + MIN, { discharge_pressure: 5 }); // avg 12.5 < 15 after two samples
    expect(h.of('rule.fired').map((e) => e.value)).toEqual([12.5]);
  });

  it('avg: needs minSamples before it is known', () => {
    const h = new Harness(agg('avg', '<', 15, ', minSamples: 3'));
    h.telemetry(ac, T0, { discharge_pressure: 10 });
    h.telemetry(ac, T0 + MIN, { discharge_pressure: 10 });
    expect(h.events).toEqual([]);
    h.telemetry(ac, T0 + 2 * MIN, { discharge_pressure: 10 });
    expect(h.of('rule.fired')).toHaveLength(1);
  });

  it('min and max see the extremes of the window only while they are in it', () => {
    const h = new Harness(agg('max', '>', 30));
    h.telemetry(ac, T0, { discharge_pressure: 35 });
    expect(h.of('rule.fired')).toHaveLength(1);
    // the 35 leaves the 10-minute window (10 one-minute buckets) at 10m; the rule clears from the timer
    h.series(ac, T0 + MIN, MIN, 11, () => ({ discharge_pressure: 20 }));
    expect(h.timeline()).toEqual(['rule.fired agg @0m', 'rule.resolved agg @10m']);

    const low = new Harness(agg('min', '<', 5));
    low.series(ac, T0, MIN, 5, (i) => ({ discharge_pressure: i === 2 ? 4 : 20 }));
    expect(low.timeline()).toEqual(['rule.fired agg @2m']);
  });

  it('count counts samples in the window', () => {
    const h = new Harness(agg('count', '>=', 4));
    h.series(ac, T0, MIN, 3, () => ({ discharge_pressure: 1 }));
    expect(h.events).toEqual([]);
    h.telemetry(ac, T0 + 3 * MIN, { discharge_pressure: 1 });
    expect(h.timeline()).toEqual(['rule.fired agg @3m']);
  });

  it('rate is change per minute between the first and last sample of the window', () => {
    const h = new Harness(agg('rate', '<', -1));
    // falls 2 bar/min
    h.series(ac, T0, MIN, 3, (i) => ({ discharge_pressure: 30 - 2 * i }));
    const fired = h.of('rule.fired');
    expect(fired).toHaveLength(1);
    expect(fired[0]?.value).toBeCloseTo(-2, 9);
    expect(fired[0]?.deviceTime).toBe(T0 + MIN);
  });

  it('where admits only samples taken while its predicate holds', () => {
    const h = new Harness(agg('avg', '<', 15, ', where: { metric: compressor_freq, op: ">=", value: 50 }'));
    h.series(ac, T0, MIN, 5, () => ({ discharge_pressure: 10, compressor_freq: 30 }));
    expect(h.events).toEqual([]);
    h.telemetry(ac, T0 + 5 * MIN, { discharge_pressure: 10, compressor_freq: 60 });
    expect(h.timeline()).toEqual(['rule.fired agg @5m']);
    expect(h.of('rule.fired')[0]?.evidence.windows).toEqual([
      { metric: 'discharge_pressure', fn: 'avg', windowMs: 10 * MIN, value: 10, samples: 1 },
    ]);
  });
});

describe('fault codes in a window', () => {
  const repeat = rules(`
  - id: e05
    title: "{{occurrences}} x E05"
    severity: minor
    when: { faults: { codes: [E05, E06], count: 3, within: 1h } }
`);

  it('fires on the Nth occurrence within the window and counts any code of the set', () => {
    const h = new Harness(repeat);
    h.fault(ac, T0, 'E05');
    h.fault(ac, T0 + 10 * MIN, 'E06');
    h.fault(ac, T0 + 20 * MIN, 'E01');
    expect(h.events).toEqual([]);
    h.fault(ac, T0 + 30 * MIN, 'E05');
    const e = h.of('rule.fired')[0];
    expect(e?.occurrences).toBe(3);
    expect(e?.title).toBe('3 x E05');
    expect(e?.evidence.faults.map((f) => f.code)).toEqual(['E05', 'E06', 'E05']);
  });

  it('does not count occurrences that left the window', () => {
    const h = new Harness(repeat);
    h.fault(ac, T0, 'E05');
    h.fault(ac, T0 + 40 * MIN, 'E05');
    h.fault(ac, T0 + HOUR + SEC, 'E05');
    expect(h.events).toEqual([]);
  });

  it('a single-code rule with device+code fingerprint keeps one incident per code', () => {
    const h = new Harness(
      rules(`
  - id: any-e
    title: "{{code}} x{{occurrences}}"
    severity: minor
    fingerprint: device+code
    when: { faults: { codes: [E05, E07], count: 2, within: 1h } }
`),
    );
    h.fault(ac, T0, 'E05');
    h.fault(ac, T0 + MIN, 'E07');
    h.fault(ac, T0 + 2 * MIN, 'E05');
    h.fault(ac, T0 + 3 * MIN, 'E07');
    const fired = h.of('rule.fired');
    expect(fired.map((e) => [e.fingerprint, e.code, e.title])).toEqual([
      ['ac-1:fault:E05', 'E05', 'E05 x2'],
      ['ac-1:fault:E07', 'E07', 'E07 x2'],
    ]);
  });
});

describe('absence', () => {
  const silent = rules(`
  - id: silent
    title: "{{device.id}} silent {{value}}"
    severity: minor
    when: { absent: { for: 30m } }
`);

  it('fires for a registered device that never reported, from tick alone', () => {
    const h = new Harness(silent);
    h.engine.registerDevice({ ...device('never'), registeredAt: T0 });
    expect(h.engine.nextDeadline()).toBe(T0 + 30 * MIN);
    h.engine.tick(T0 + 30 * MIN - 1);
    expect(h.events).toEqual([]);
    h.engine.tick(T0 + 30 * MIN);
    expect(h.timeline()).toEqual(['rule.fired silent @30m']);
    expect(h.events[0]?.title).toBe('never silent 30m');
  });

  it('registering again is idempotent and does not restart the absence clock', () => {
    const h = new Harness(silent);
    h.engine.registerDevice({ ...device('d'), registeredAt: T0 });
    h.now = T0 + 20 * MIN;
    h.engine.registerDevice({ ...device('d'), registeredAt: T0 });
    h.advance(T0 + 30 * MIN);
    expect(h.timeline()).toEqual(['rule.fired silent @30m']);
    expect(h.engine.deviceCount()).toBe(1);
  });

  it('counts from the last message and resolves on the next one', () => {
    const h = new Harness(silent);
    h.telemetry(ac, T0, { room_temp: 20 });
    h.advance(T0 + 29 * MIN);
    expect(h.events).toEqual([]);
    h.advance(T0 + 45 * MIN);
    h.fault(ac, T0 + 45 * MIN, 'E01');
    expect(h.timeline()).toEqual(['rule.fired silent @30m', 'rule.resolved silent @45m']);
  });

  it('takes its window from a parameter, overridden per region; others keep the default', () => {
    const h = new Harness(
      rules(`
  - id: silent
    title: "{{device.id}} silent {{value}}"
    severity: minor
    params: { silentFor: 30m }
    overrides:
      - regions: [lab]
        params: { silentFor: 30s }
    when: { absent: { for: $silentFor } }
`),
    );
    const bench = device('bench', 'AC-9000', { region: 'lab' });
    h.telemetry(bench, T0, { room_temp: 20 });
    h.telemetry(ac, T0, { room_temp: 20 });
    h.advance(T0 + 29 * SEC);
    expect(h.events).toEqual([]);
    h.advance(T0 + 30 * SEC);
    expect(h.events.map((e) => [e.type, e.device.id, e.value, e.threshold, e.title])).toEqual([
      ['rule.fired', 'bench', 30_000, 30_000, 'bench silent 30s'],
    ]);
    h.advance(T0 + 30 * MIN);
    expect(h.events.map((e) => [e.type, e.device.id, e.threshold])).toEqual([
      ['rule.fired', 'bench', 30_000],
      ['rule.fired', 'ac-1', 30 * MIN],
    ]);
  });

  it('refuses an absence parameter that is not a duration, or is 0', () => {
    const load = (params: string, override: string) =>
      loadRuleText(
        `apiVersion: faultline/v1\nrules:\n  - id: s\n    title: t\n    severity: minor\n    params: ${params}\n    overrides: [{ regions: [lab], params: ${override} }]\n    when: { absent: { for: $quiet } }\n`,
        'r.yaml',
        { catalogueChecks: false },
      ).errors.map((e) => `${e.line}:${e.col} ${e.message}`);
    expect(load('{ quiet: 30m }', '{ quiet: 30s }')).toEqual([]);
    expect(load('{ quiet: 30m }', '{ quiet: "0" }')).toEqual([
      '7:52 parameter "quiet" must be an absence duration longer than 0',
    ]);
    expect(load('{ quiet: soon }', '{ quiet: 30s }')).toEqual([
      '6:22 parameter "quiet" is used as a duration (e.g. "10m") at when.absent.for',
    ]);
  });

  it('no value of one metric, while others keep arriving', () => {
    const h = new Harness(
      rules(`
  - id: no-fan
    title: t
    severity: minor
    when: { absent: { metric: fan_rpm, for: 10m } }
`),
    );
    h.engine.registerDevice({ ...ac, registeredAt: T0 });
    // fan_rpm only in the first 3 minutes, room_temp throughout
    h.series(
      ac,
      T0,
      MIN,
      20,
      (i): Record<string, number> => (i < 3 ? { fan_rpm: 800, room_temp: 20 } : { room_temp: 20 }),
    );
    expect(h.timeline()).toEqual(['rule.fired no-fan @12m']);
  });

  it('a metric that never reported counts from registration', () => {
    const h = new Harness(
      rules(`
  - id: no-fan
    title: t
    severity: minor
    when: { absent: { metric: fan_rpm, for: 10m } }
`),
    );
    h.engine.registerDevice({ ...ac, registeredAt: T0 });
    h.series(ac, T0 + 5 * MIN, MIN, 10, () => ({ room_temp: 20 }));
    expect(h.timeline()).toEqual(['rule.fired no-fan @10m']);
  });
});

describe('all / any / not and unknown data', () => {
  it('combines conditions', () => {
    const h = new Harness(
      rules(`
  - id: combo
    title: t
    severity: minor
    when:
      all:
        - any:
            - threshold: { metric: compressor_temp, op: ">", value: 95 }
            - threshold: { metric: current, op: ">", value: 20 }
        - not: { threshold: { metric: mode, op: "==", value: "off" } }
`),
    );
    h.telemetry(ac, T0, { compressor_temp: 90, current: 25, mode: 'off' });
    h.telemetry(ac, T0 + SEC, { compressor_temp: 90, current: 5, mode: 'cool' });
    expect(h.events).toEqual([]);
    h.telemetry(ac, T0 + 2 * SEC, { compressor_temp: 90, current: 25, mode: 'cool' });
    expect(h.of('rule.fired')).toHaveLength(1);
  });

  it('an unknown metric never makes a not() true', () => {
    const h = new Harness(
      rules(`
  - id: not-hot
    title: t
    severity: minor
    when: { not: { threshold: { metric: compressor_temp, op: ">", value: 95 } } }
`),
    );
    h.telemetry(ac, T0, { room_temp: 20 });
    expect(h.events).toEqual([]);
    h.telemetry(ac, T0 + SEC, { compressor_temp: 20 });
    expect(h.of('rule.fired')).toHaveLength(1);
  });
});

describe('gates', () => {
  const gated = rules(`
  - id: fan-stall
    title: t
    severity: major
    when: { threshold: { metric: fan_rpm, op: "==", value: 0 } }
    gate: { threshold: { metric: mode, op: "!=", value: "off" } }
    for: 2m
`);

  it('applies only while the gate holds', () => {
    const h = new Harness(gated);
    h.series(ac, T0, 10 * SEC, 30, () => ({ fan_rpm: 0, mode: 'off' }));
    expect(h.events).toEqual([]);
    h.series(ac, T0 + 5 * MIN, 10 * SEC, 13, () => ({ fan_rpm: 0, mode: 'cool' }));
    expect(h.timeline()).toEqual(['rule.fired fan-stall @7m']);
  });

  it('a gate going false resets pending but never resolves an open incident', () => {
    const h = new Harness(gated);
    h.series(ac, T0, 10 * SEC, 13, () => ({ fan_rpm: 0, mode: 'cool' }));
    expect(h.of('rule.fired')).toHaveLength(1);
    h.series(ac, T0 + 3 * MIN, 10 * SEC, 60, () => ({ fan_rpm: 0, mode: 'off' }));
    expect(h.of('rule.resolved')).toEqual([]);
    expect(h.engine.ruleStates('ac-1').map((s) => s.phase)).toEqual(['firing']);
  });
});

describe('parameters and overrides', () => {
  const tuned = rules(`
  - id: hot
    title: "limit {{params.limit}}"
    severity: major
    params: { limit: 95, hold: 5m }
    overrides:
      - models: "AC-12*"
        params: { limit: 100 }
      - regions: [cn]
        params: { hold: 1m }
      - devices: [ac-special]
        params: { limit: 80 }
    when: { threshold: { metric: compressor_temp, op: ">", value: $limit } }
    for: $hold
`);

  it('resolves defaults, model, region and device overrides', () => {
    const h = new Harness(tuned);
    const small = device('ac-small', 'AC-9000');
    const big = device('ac-big', 'AC-12000');
    const special = device('ac-special', 'AC-12000');
    const china = device('ac-cn', 'AC-9000', { region: 'cn' });
    for (const d of [small, big, special, china]) h.series(d, T0, MIN, 7, () => ({ compressor_temp: 97 }));
    const byDevice = Object.fromEntries(
      h.of('rule.fired').map((e) => [e.device.id, [e.threshold, e.deviceTime - T0]]),
    );
    expect(byDevice).toEqual({
      'ac-small': [95, 5 * MIN],
      'ac-special': [80, 5 * MIN],
      'ac-cn': [95, 1 * MIN],
    });
    expect(h.of('rule.fired').find((e) => e.device.id === 'ac-special')?.title).toBe('limit 80');
  });
});

describe('scope', () => {
  const scoped = rules(`
  - id: ac-only
    title: t
    severity: minor
    scope: { models: ["AC-9*"], firmware: ">=3.0.0 <4", regions: [eu] }
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
`);

  it('applies by model glob, firmware range and region', () => {
    const h = new Harness(scoped);
    const cases = [
      device('in', 'AC-9000'),
      device('other-model', 'AC-12000'),
      device('old-fw', 'AC-9000', { firmware: '2.9.9' }),
      device('no-fw', 'AC-9000', { firmware: null }),
      device('us', 'AC-9000', { region: 'us' }),
    ];
    for (const d of cases) h.telemetry(d, T0, { compressor_temp: 99 });
    expect(h.of('rule.fired').map((e) => e.device.id)).toEqual(['in']);
  });

  it('a firmware update moves the device into scope', () => {
    const h = new Harness(scoped);
    h.telemetry(device('d', 'AC-9000', { firmware: '2.0.0' }), T0, { compressor_temp: 99 });
    h.telemetry(device('d', 'AC-9000', { firmware: '3.1.0' }), T0 + SEC, { compressor_temp: 99 });
    expect(h.timeline()).toEqual(['rule.fired ac-only @0.016666666666666666m']);
  });
});
