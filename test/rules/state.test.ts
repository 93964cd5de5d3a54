/** Durable state, reload, runtime errors, cost per message and memory per device. */
import { describe, expect, it } from 'vitest';
import { loadRuleFiles, loadRuleText } from '../../src/rules/loader.js';
import type { RuleStateSnapshot } from '../../src/rules/types.js';
import { countingObserver, device, Harness, HOUR, MIN, rules, SEC, T0 } from './harness.js';

const ac = device('ac-1');
const overheat = rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    for: 10m
`);

/** JSON round trip, as the integrator persists it. */
const persist = (s: RuleStateSnapshot): RuleStateSnapshot =>
  JSON.parse(JSON.stringify(s)) as RuleStateSnapshot;

describe('snapshot and restore', () => {
  it('a restart during a pending window: snapshot at 5m into a 10m for, restore 3m later, fires at 10m', () => {
    const before = new Harness(overheat);
    before.series(ac, T0, 10 * SEC, 31, () => ({ compressor_temp: 97 })); // 0..5m
    const snap = persist(before.engine.snapshot());
    expect(before.events).toEqual([]);

    const after = new Harness(overheat, { start: T0 + 8 * MIN });
    after.engine.restore(snap, T0 + 8 * MIN);
    expect(after.events).toEqual([]);
    // data resumes after the restart (the 3-minute hole is within maxGap), up to 10m
    after.series(ac, T0 + 8 * MIN, 10 * SEC, 12, () => ({ compressor_temp: 97 }));
    expect(after.events).toEqual([]);
    after.telemetry(ac, T0 + 10 * MIN, { compressor_temp: 97 });
    expect(after.events.map((e) => [e.type, e.deviceTime - T0, e.pendingSince])).toEqual([
      ['rule.fired', 10 * MIN, T0],
    ]);
  });

  it('the same restart with no data after it fires from the timer at 10m (the last value is held)', () => {
    const before = new Harness(overheat);
    before.series(ac, T0, 10 * SEC, 31, () => ({ compressor_temp: 97 }));
    const after = new Harness(overheat, { start: T0 + 8 * MIN });
    after.engine.restore(persist(before.engine.snapshot()), T0 + 8 * MIN);
    expect(after.engine.nextDeadline()).toBe(T0 + 10 * MIN);
    after.engine.tick(T0 + 10 * MIN);
    expect(after.timeline()).toEqual(['rule.fired hot @10m']);
  });

  it('a for pending since 09:00 restored at 09:12 fires at once when the timer is already due', () => {
    const before = new Harness(overheat);
    before.series(ac, T0, 10 * SEC, 55, () => ({ compressor_temp: 97 })); // 09:00 .. 09:09
    const after = new Harness(overheat, { start: T0 + 12 * MIN });
    after.engine.restore(persist(before.engine.snapshot()), T0 + 12 * MIN);
    // restore itself emits nothing; the timer is due now and fires on the first tick
    expect(after.events).toEqual([]);
    expect(after.engine.nextDeadline()).toBeLessThanOrEqual(T0 + 12 * MIN);
    after.engine.tick(T0 + 12 * MIN);
    expect(after.events.map((e) => [e.deviceTime - T0, e.serverTime - T0])).toEqual([[10 * MIN, 12 * MIN]]);
  });

  it('downtime beyond maxGap resets the pending timer instead of firing on stale data', () => {
    const before = new Harness(overheat);
    // last sample at 3m: its value is held until 8m, short of the 10m deadline
    before.series(ac, T0, 10 * SEC, 19, () => ({ compressor_temp: 97 }));
    const after = new Harness(overheat, { start: T0 + 20 * MIN });
    after.engine.restore(persist(before.engine.snapshot()), T0 + 20 * MIN);
    after.engine.tick(T0 + 20 * MIN);
    expect(after.events).toEqual([]);
    after.series(ac, T0 + 20 * MIN, MIN, 11, () => ({ compressor_temp: 97 }));
    expect(after.timeline()).toEqual(['rule.fired hot @30m']);
  });

  it('keeps windows, open incidents, escalation progress and fault occurrences', () => {
    const set = rules(`
  - id: avg
    title: t
    severity: minor
    when: { aggregate: { metric: current, fn: avg, window: 10m, step: 1m, op: ">", value: 10 } }
    escalate: [{ after: 20m, severity: critical }]
  - id: e05
    title: t
    severity: minor
    when: { faults: { code: E05, count: 3, within: 1h } }
`);
    const before = new Harness(set);
    before.series(ac, T0, MIN, 5, () => ({ current: 12 }));
    before.fault(ac, T0 + MIN, 'E05');
    before.fault(ac, T0 + 2 * MIN, 'E05');
    const snap = persist(before.engine.snapshot());
    const after = new Harness(set, { start: T0 + 5 * MIN });
    after.engine.restore(snap, T0 + 5 * MIN);
    expect(after.engine.ruleStates('ac-1').map((s) => [s.ruleId, s.phase])).toEqual([
      ['avg', 'firing'],
      ['e05', 'inactive'],
    ]);
    // the window still holds the 12s: a 9 does not bring the average below 10
    after.telemetry(ac, T0 + 5 * MIN, { current: 9 });
    expect(after.events).toEqual([]);
    after.fault(ac, T0 + 6 * MIN, 'E05');
    expect(after.of('rule.fired').map((e) => [e.ruleId, e.occurrences])).toEqual([['e05', 3]]);
    after.series(ac, T0 + 6 * MIN, MIN, 15, () => ({ current: 12 }));
    expect(after.of('rule.updated', 'avg').map((e) => [e.severity, e.deviceTime - T0])).toEqual([
      ['critical', 20 * MIN],
    ]);
  });

  it("the engine's own downtime does not count as device silence", () => {
    const silent = rules(`
  - id: silent
    title: t
    severity: minor
    when: { absent: { for: 30m } }
`);
    const before = new Harness(silent);
    before.telemetry(ac, T0, { room_temp: 20 });
    before.now = T0 + 10 * MIN;
    const snap = persist(before.engine.snapshot());
    // down for 50 minutes: counting the downtime would fire at once
    const after = new Harness(silent, { start: T0 + HOUR });
    after.engine.restore(snap, T0 + HOUR);
    expect(after.events).toEqual([]);
    // 10 minutes of silence before the snapshot count, so it fires 20 minutes after restore
    after.advance(T0 + HOUR + 20 * MIN - 1);
    expect(after.events).toEqual([]);
    after.advance(T0 + HOUR + 20 * MIN);
    expect(after.of('rule.fired')).toHaveLength(1);
  });

  it('never-reported devices survive a restart with their registration', () => {
    const silent = rules(`
  - id: silent
    title: t
    severity: minor
    when: { absent: { for: 30m } }
`);
    const before = new Harness(silent);
    before.engine.registerDevice({ ...device('new'), registeredAt: T0 });
    const after = new Harness(silent, { start: T0 + 10 * MIN });
    after.engine.restore(persist(before.engine.snapshot()), T0 + 10 * MIN);
    after.advance(T0 + 40 * MIN);
    expect(after.of('rule.fired').map((e) => [e.device.id, e.deviceTime - T0])).toEqual([['new', 40 * MIN]]);
  });

  it('drops state of rules whose version changed while it was saved', () => {
    const before = new Harness(overheat);
    before.series(ac, T0, MIN, 5, () => ({ compressor_temp: 99 }));
    const changed = rules(
      overheat[0]
        ? `
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 96 } }
    for: 10m
`
        : '',
    );
    const after = new Harness(changed, { start: T0 + 5 * MIN });
    after.engine.restore(persist(before.engine.snapshot()), T0 + 5 * MIN);
    expect(after.engine.ruleStates('ac-1')).toEqual([]);
  });

  it('is compact: a fleet of quiet devices costs little JSON', () => {
    const shipped = loadRuleFiles(['rules']).rules;
    const h = new Harness(shipped);
    for (let d = 0; d < 100; d++) {
      const dev = device(`ac-${d}`, 'AC-9000');
      h.series(dev, T0, 10 * SEC, 30, () => ({
        compressor_temp: 70,
        compressor_freq: 60,
        discharge_pressure: 24,
        fan_rpm: 900,
        mode: 'cool',
        room_temp: 24,
      }));
    }
    const bytes = JSON.stringify(h.engine.snapshot()).length;
    expect(bytes / 100).toBeLessThan(1024);
  });
});

describe('replaceRules', () => {
  const pair = (hotLimit: number, title = 't') =>
    rules(`
  - id: hot
    title: ${title}
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: ${hotLimit} } }
    for: 10m
  - id: fan
    title: t
    severity: major
    when: { threshold: { metric: fan_rpm, op: "==", value: 0 } }
    for: 10m
`);

  it('keeps the state of rules whose hash did not change (a title edit included)', () => {
    const h = new Harness(pair(95));
    h.series(ac, T0, MIN, 6, () => ({ compressor_temp: 99, fan_rpm: 0 }));
    const result = h.engine.replaceRules(pair(95, '"new title {{value}}"'));
    expect(result).toEqual({ kept: ['hot', 'fan'], reset: [], removed: [], added: [] });
    h.series(ac, T0 + 6 * MIN, MIN, 5, () => ({ compressor_temp: 99, fan_rpm: 0 }));
    expect(h.of('rule.fired').map((e) => [e.ruleId, e.deviceTime - T0, e.title])).toEqual([
      ['hot', 10 * MIN, 'new title 99'],
      ['fan', 10 * MIN, 't'],
    ]);
  });

  it('resets pending state of a changed rule, keeps the others', () => {
    const h = new Harness(pair(95));
    h.series(ac, T0, MIN, 6, () => ({ compressor_temp: 99, fan_rpm: 0 }));
    const result = h.engine.replaceRules(pair(96));
    expect(result).toEqual({ kept: ['fan'], reset: ['hot'], removed: [], added: [] });
    h.series(ac, T0 + 6 * MIN, MIN, 11, () => ({ compressor_temp: 99, fan_rpm: 0 }));
    expect(h.of('rule.fired').map((e) => [e.ruleId, e.deviceTime - T0])).toEqual([
      ['fan', 10 * MIN],
      ['hot', 16 * MIN],
    ]);
  });

  it('a changed rule keeps an open incident open (no resolve-and-refire churn) until its new clear holds', () => {
    const h = new Harness(pair(95));
    h.series(ac, T0, MIN, 11, () => ({ compressor_temp: 99, fan_rpm: 800 }));
    expect(h.of('rule.fired', 'hot')).toHaveLength(1);
    h.engine.replaceRules(pair(100));
    h.telemetry(ac, T0 + 11 * MIN, { compressor_temp: 99, fan_rpm: 800 });
    expect(h.events.map((e) => e.type)).toEqual(['rule.fired', 'rule.resolved']);
    expect(h.events[1]?.incidentId).toBe(h.events[0]?.incidentId);
    expect(h.events[1]?.ruleVersion).not.toBe(h.events[0]?.ruleVersion);
  });

  it('resolves open incidents of removed rules and starts added ones', () => {
    const h = new Harness(pair(95));
    h.series(ac, T0, MIN, 11, () => ({ compressor_temp: 99, fan_rpm: 800 }));
    const next = rules(`
  - id: fan
    title: t
    severity: major
    when: { threshold: { metric: fan_rpm, op: "==", value: 0 } }
    for: 10m
  - id: cold
    title: t
    severity: minor
    when: { threshold: { metric: compressor_temp, op: ">", value: 90 } }
`);
    const result = h.engine.replaceRules(next);
    expect(result).toEqual({ kept: ['fan'], reset: [], removed: ['hot'], added: ['cold'] });
    expect(h.events.map((e) => [e.type, e.ruleId, 'reason' in e ? e.reason : null])).toEqual([
      ['rule.fired', 'hot', null],
      ['rule.resolved', 'hot', 'rule_removed'],
    ]);
    h.telemetry(ac, T0 + 11 * MIN, { compressor_temp: 99, fan_rpm: 800 });
    expect(h.of('rule.fired', 'cold')).toHaveLength(1);
    expect(h.engine.describeRules().map((d) => d.id)).toEqual(['fan', 'cold']);
  });
});

describe('runtime errors', () => {
  it('a rule that throws is counted with lastError, never reads as false, and the others still run', () => {
    const obs = countingObserver();
    const h = new Harness(
      rules(`
  - id: broken
    title: t
    severity: minor
    when: { threshold: { metric: mode, op: ">", value: 3 } }
  - id: fine
    title: t
    severity: minor
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
  - id: not-broken
    title: t
    severity: minor
    when: { not: { threshold: { metric: mode, op: ">", value: 3 } } }
`),
      { observer: obs },
    );
    h.telemetry(ac, T0, { mode: 'cool', compressor_temp: 99 });
    h.telemetry(ac, T0 + SEC, { mode: 'cool', compressor_temp: 99 });
    expect(h.of('rule.fired').map((e) => e.ruleId)).toEqual(['fine']);
    const d = Object.fromEntries(h.engine.describeRules().map((r) => [r.id, r]));
    expect(d.broken?.errors).toBe(2);
    expect(d.broken?.lastError).toEqual({
      message: 'mode > 3: ">" needs numbers, got string "cool"',
      deviceId: 'ac-1',
      at: T0 + SEC,
    });
    // the negation of an error is an error too, not "true"
    expect(d['not-broken']?.errors).toBe(2);
    expect(d.fine?.errors).toBe(0);
    expect(obs.errors.map(([id]) => id)).toEqual(['broken', 'not-broken', 'broken', 'not-broken']);
  });
});

describe('cost per message', () => {
  it('rules for other models or other metrics are never evaluated', () => {
    const many = [
      '  - id: mine\n    title: t\n    severity: minor\n    scope: { models: "AC-*" }\n    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }',
      ...Array.from(
        { length: 200 },
        (_, i) =>
          `  - id: rv-${i}\n    title: t\n    severity: minor\n    scope: { models: "RV-*" }\n    when: { threshold: { metric: compressor_temp, op: ">", value: ${i} } }`,
      ),
      ...Array.from(
        { length: 200 },
        (_, i) =>
          `  - id: other-metric-${i}\n    title: t\n    severity: minor\n    scope: { models: "AC-*" }\n    when: { threshold: { metric: fan_rpm, op: ">", value: ${i} } }`,
      ),
    ].join('\n');
    const obs = countingObserver();
    const h = new Harness(rules(`\n${many}\n`), { observer: obs });
    h.series(ac, T0, SEC, 100, () => ({ compressor_temp: 50 }));
    expect([...obs.evaluations.keys()]).toEqual(['mine']);
    expect(obs.evaluations.get('mine')).toBe(100);
  });
});

describe('memory', () => {
  it('per-device state for the shipped rules stays under 1 KB', () => {
    const shipped = loadRuleFiles(['rules']).rules;
    const h = new Harness(shipped);
    const n = 200;
    for (let d = 0; d < n; d++) {
      const acDev = device(`ac-${d}`, d % 2 === 0 ? 'AC-9000' : 'AC-12000');
      const rvDev = device(`rv-${d}`, 'RV-200');
      for (let i = 0; i < 120; i++) {
        const ts = T0 + i * 10 * SEC;
        h.telemetry(acDev, ts, {
          room_temp: 24,
          outdoor_temp: 30,
          compressor_temp: 75,
          compressor_freq: 60,
          discharge_pressure: 24,
          current: 5,
          fan_rpm: 900,
          mode: 'cool',
        });
        h.telemetry(rvDev, ts, {
          battery_temp: 30,
          battery_level: 80,
          main_brush_current: 0.4,
          wheel_current_left: 0.3,
          wheel_current_right: 0.3,
          suction: 2200,
          dock_state: 'cleaning',
          cleaning: true,
        });
      }
    }
    expect(h.engine.deviceCount()).toBe(2 * n);
    expect(h.engine.stateBytesEstimate() / (2 * n)).toBeLessThan(1024);
  });
});

describe('version hash', () => {
  const text = (body: string) => `apiVersion: faultline/v1\nrules:\n${body}`;
  const a = text(`
  - id: r
    title: first title
    severity: major
    params: { limit: 95, clear: 90 }
    when:
      all:
        - threshold: { metric: compressor_temp, op: ">", value: $limit }
        - faults: { codes: [E05, E07], count: 2, within: 1h }
    for: 10m
`);
  const reordered = text(`
  - severity: major
    for: 600s
    when:
      all:
        - threshold: { value: $limit, op: ">", metric: compressor_temp }
        - faults: { within: 60m, count: 2, codes: [E07, E05] }
    params: { clear: 90, limit: 95 }
    title: another title, in another file position
    id: r
`);
  const version = (t: string, file = 'x.yaml') => {
    const r = loadRuleText(t, file, { catalogueChecks: false });
    expect(r.errors).toEqual([]);
    return r.rules[0]?.version;
  };

  it('is stable under key order, duration spelling, code order, title and file', () => {
    expect(version(a)).toMatch(/^[0-9a-f]{16}$/);
    expect(version(reordered, 'other.yaml')).toBe(version(a));
    expect(version(`\n\n# moved down\n${a}`)).toBe(version(a));
  });

  it('changes when the logic changes', () => {
    expect(version(a.replace('limit: 95', 'limit: 96'))).not.toBe(version(a));
    expect(version(a.replace('for: 10m', 'for: 11m'))).not.toBe(version(a));
    expect(version(a.replace('count: 2', 'count: 3'))).not.toBe(version(a));
  });
});
