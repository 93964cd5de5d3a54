import { describe, expect, it } from 'vitest';
import { EVIDENCE_LIMIT } from '../../src/rules/engine.js';
import { countingObserver, device, Harness, HOUR, MIN, rules, SEC, T0 } from './harness.js';

const ac = device('ac-1');
/** A signal hovering around 95: 94, 96, 94, 96 ... one sample every 10 s. */
const hover = (i: number) => ({ compressor_temp: i % 2 === 0 ? 96 : 94 });

describe('hysteresis', () => {
  it('a signal hovering 94-96 around 95 produces one incident with a separate clear threshold', () => {
    const h = new Harness(
      rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    clear:
      when: { threshold: { metric: compressor_temp, op: "<", value: 90 } }
      for: 2m
    flapping: false
`),
    );
    h.series(ac, T0, 10 * SEC, 360, hover);
    expect(h.timeline()).toEqual(['rule.fired hot @0m']);
    h.series(ac, T0 + HOUR, 10 * SEC, 13, () => ({ compressor_temp: 85 }));
    expect(h.timeline()).toEqual(['rule.fired hot @0m', 'rule.resolved hot @62m']);
  });

  it('without hysteresis (and without flap control) the same signal opens an incident every 20 s', () => {
    const h = new Harness(
      rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    flapping: false
`),
    );
    h.series(ac, T0, 10 * SEC, 360, hover);
    expect(h.of('rule.fired')).toHaveLength(180);
  });

  it('the clear timer restarts when the clear condition is interrupted', () => {
    const h = new Harness(
      rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    clear: { when: { threshold: { metric: compressor_temp, op: "<", value: 90 } }, for: 2m }
`),
    );
    h.telemetry(ac, T0, { compressor_temp: 99 });
    h.series(ac, T0 + MIN, 10 * SEC, 24, (i) => ({ compressor_temp: i === 8 ? 91 : 85 }));
    // cold from 1m, interrupted at 2m20s, cold again from 2m30s: resolves at 4m30s
    expect(h.timeline()).toEqual(['rule.fired hot @0m', 'rule.resolved hot @4.5m']);
  });
});

describe('flap control', () => {
  const flappy = rules(`
  - id: flap
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    flapping: { transitions: 4, within: 1h, holdOpen: 10m }
`);

  it('keeps one incident open once transitions pile up, then resolves after holdOpen of calm', () => {
    const h = new Harness(flappy);
    // on/off every minute for 10 minutes, then calm
    h.series(ac, T0, MIN, 10, (i) => ({ compressor_temp: i % 2 === 0 ? 99 : 80 }));
    h.series(ac, T0 + 10 * MIN, MIN, 30, () => ({ compressor_temp: 80 }));
    const lines = h.events.map(
      (e) => `${e.type}${'reason' in e ? `:${e.reason}` : ''} @${(e.deviceTime - T0) / MIN}`,
    );
    expect(lines).toEqual([
      'rule.fired @0',
      'rule.resolved:cleared @1',
      'rule.fired @2',
      'rule.updated:flapping @3',
      'rule.updated:retriggered @4',
      'rule.updated:retriggered @6',
      'rule.updated:retriggered @8',
      'rule.resolved:cleared @19',
    ]);
    const last = h.events[h.events.length - 1];
    expect(last?.flapCount).toBe(3);
    // every event after the second fire belongs to the same incident
    expect(new Set(h.events.slice(2).map((e) => e.incidentId)).size).toBe(1);
  });

  it('transitions spread wider than the window are not flapping', () => {
    const h = new Harness(flappy);
    for (let k = 0; k < 4; k++) {
      h.telemetry(ac, T0 + k * HOUR, { compressor_temp: 99 });
      h.telemetry(ac, T0 + k * HOUR + MIN, { compressor_temp: 80 });
    }
    expect(h.of('rule.fired')).toHaveLength(4);
    expect(h.of('rule.resolved')).toHaveLength(4);
    expect(h.of('rule.updated')).toHaveLength(0);
  });
});

describe('escalation and cooldown', () => {
  it('raises severity while an incident stays open, from timers', () => {
    const h = new Harness(
      rules(`
  - id: hot
    title: "{{severity}}"
    severity: minor
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    escalate:
      - { after: 30m, severity: major }
      - { after: 2h, severity: critical }
`),
    );
    h.series(ac, T0, MIN, 150, () => ({ compressor_temp: 99 }));
    const updates = h.of('rule.updated');
    expect(
      updates.map((e) => [
        e.severity,
        'previousSeverity' in e ? e.previousSeverity : null,
        (e.deviceTime - T0) / MIN,
      ]),
    ).toEqual([
      ['major', 'minor', 30],
      ['critical', 'major', 120],
    ]);
    expect(updates[1]?.title).toBe('critical');
  });

  it('escalates a silent device on server time even though no data arrives', () => {
    const h = new Harness(
      rules(`
  - id: silent
    title: t
    severity: minor
    when: { absent: { for: 30m } }
    escalate: [{ after: 1h, severity: major }]
`),
    );
    h.engine.registerDevice({ ...ac, registeredAt: T0 });
    h.advance(T0 + 2 * HOUR);
    expect(h.timeline()).toEqual(['rule.fired silent @30m', 'rule.updated silent @90m']);
  });

  it('cooldown delays a new incident until it has passed', () => {
    const h = new Harness(
      rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    cooldown: 10m
    flapping: false
`),
    );
    h.telemetry(ac, T0, { compressor_temp: 99 });
    h.telemetry(ac, T0 + MIN, { compressor_temp: 80 });
    h.series(ac, T0 + 2 * MIN, MIN, 12, () => ({ compressor_temp: 99 }));
    expect(h.timeline()).toEqual(['rule.fired hot @0m', 'rule.resolved hot @1m', 'rule.fired hot @11m']);
    expect(h.engine.ruleStates('ac-1')[0]?.phase).toBe('firing');
  });

  it('reports the resolved phase during the cooldown', () => {
    const h = new Harness(
      rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    cooldown: 10m
`),
    );
    h.telemetry(ac, T0, { compressor_temp: 99 });
    h.telemetry(ac, T0 + MIN, { compressor_temp: 80 });
    expect(h.engine.ruleStates('ac-1').map((s) => [s.phase, s.cooldownUntil])).toEqual([
      ['resolved', T0 + 11 * MIN],
    ]);
  });
});

describe('events', () => {
  const overheat = rules(
    `
  - id: ac-compressor-overheat
    title: "Overheat on {{device.id}} ({{device.model}}): {{value}} °C for {{duration}}, limit {{params.threshold}}"
    description: "{{metric}} {{threshold}} {{severity}} {{category}} {{rule.id}}"
    severity: major
    category: performance
    safety: true
    labels: { team: hvac }
    actions: { ticket: true, guide: overheat-guide, autoClose: true }
    params: { threshold: 95 }
    when: { threshold: { metric: compressor_temp, op: ">", value: $threshold } }
    gate: { threshold: { metric: compressor_freq, op: ">", value: 0 } }
    for: 10m
`,
    'rules/ac.yaml',
  );

  it('carry what a ticket needs', () => {
    const h = new Harness(overheat);
    const dev = device('ac-7', 'AC-12000', { batch: 'B-2024-07', ownerId: 'own-1', ownerLocale: 'zh-CN' });
    h.series(dev, T0, 10 * SEC, 61, (i) => ({
      compressor_temp: 96 + (i % 2),
      compressor_freq: 60,
      room_temp: 24,
    }));
    const e = h.of('rule.fired')[0];
    expect(e).toMatchObject({
      type: 'rule.fired',
      ruleId: 'ac-compressor-overheat',
      ruleVersion: overheat[0]?.version,
      ruleFile: 'rules/ac.yaml',
      fingerprint: 'ac-compressor-overheat:ac-7',
      incidentId: `ac-compressor-overheat:ac-7@${T0 + 10 * MIN}`,
      // decided on the 10m deadline, from the last sample before it (9m50s: 97)
      title: 'Overheat on ac-7 (AC-12000): 97 °C for 10m, limit 95',
      description: 'compressor_temp 95 major performance ac-compressor-overheat',
      severity: 'major',
      category: 'performance',
      safety: true,
      actions: { ticket: true, guide: 'overheat-guide', autoClose: true },
      labels: { team: 'hvac' },
      device: {
        id: 'ac-7',
        model: 'AC-12000',
        firmware: '3.2.1',
        region: 'eu',
        batch: 'B-2024-07',
        ownerId: 'own-1',
        ownerLocale: 'zh-CN',
      },
      deviceTime: T0 + 10 * MIN,
      serverTime: T0 + 10 * MIN,
      pendingSince: T0,
      firingSince: T0 + 10 * MIN,
      metric: 'compressor_temp',
      value: 97,
      threshold: 95,
      params: { threshold: 95 },
      occurrences: null,
      code: null,
      flapCount: 0,
      late: false,
      stale: false,
    });
    // evidence: the samples since pending started, only the metrics the rule reads, bounded
    expect(e?.evidence.samples).toHaveLength(EVIDENCE_LIMIT);
    expect(e?.evidence.truncated).toBe(true);
    // 60 samples since pending started (0..9m50s), the last 50 kept: the first kept is sample 10
    expect(e?.evidence.samples[0]).toEqual({
      ts: T0 + 100 * SEC,
      metrics: { compressor_temp: 96, compressor_freq: 60 },
    });
    expect(e?.evidence.samples.at(-1)?.ts).toBe(T0 + 10 * MIN - 10 * SEC);
  });

  it('resolved events carry the incident duration and the same incident id', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, MIN, 12, () => ({ compressor_temp: 99, compressor_freq: 60 }));
    h.telemetry(ac, T0 + 12 * MIN, { compressor_temp: 70, compressor_freq: 60 });
    const [fired, resolved] = h.events;
    expect(resolved).toMatchObject({
      type: 'rule.resolved',
      reason: 'cleared',
      durationMs: 2 * MIN,
      resolvedAt: T0 + 12 * MIN,
    });
    expect(resolved?.incidentId).toBe(fired?.incidentId);
    expect(resolved?.evidence.samples.map((s) => s.metrics.compressor_temp).at(-1)).toBe(70);
  });

  it('fault occurrences while open become one update per message with the new count', () => {
    const h = new Harness(
      rules(`
  - id: e05
    title: t
    severity: minor
    when: { faults: { code: E05, count: 2, within: 1h } }
`),
    );
    h.fault(ac, T0, 'E05');
    h.fault(ac, T0 + MIN, 'E05');
    h.advance(T0 + 2 * MIN);
    h.engine.ingestFaults(
      ac,
      [
        { ts: T0 + 2 * MIN, seq: 100, code: 'E05' },
        { ts: T0 + 2 * MIN + SEC, seq: 101, code: 'E05' },
        { ts: T0 + 2 * MIN + 2 * SEC, seq: 102, code: 'E05' },
      ],
      T0 + 2 * MIN + 2 * SEC,
    );
    expect(h.events.map((e) => [e.type, e.occurrences])).toEqual([
      ['rule.fired', 2],
      ['rule.updated', 5],
    ]);
  });

  it('observer sees evaluations and fires; describeRules counts them', () => {
    const obs = countingObserver();
    const h = new Harness(overheat, { observer: obs });
    h.series(ac, T0, MIN, 11, () => ({ compressor_temp: 99, compressor_freq: 60 }));
    expect(obs.fires).toEqual(['ac-compressor-overheat']);
    expect(obs.evaluations.get('ac-compressor-overheat')).toBeGreaterThanOrEqual(11);
    const [d] = h.engine.describeRules();
    expect(d).toMatchObject({
      id: 'ac-compressor-overheat',
      file: 'rules/ac.yaml',
      line: 4,
      firing: 1,
      firedTotal: 1,
      errors: 0,
      lastError: null,
    });
    expect(d?.evaluations).toBe(obs.evaluations.get('ac-compressor-overheat'));
  });

  it('removing a device resolves its open incidents', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, MIN, 11, () => ({ compressor_temp: 99, compressor_freq: 60 }));
    h.engine.removeDevice('ac-1');
    expect(h.events.map((e) => [e.type, 'reason' in e ? e.reason : null])).toEqual([
      ['rule.fired', null],
      ['rule.resolved', 'device_removed'],
    ]);
    expect(h.engine.deviceCount()).toBe(0);
    expect(h.engine.describeRules()[0]?.firing).toBe(0);
  });

  it('an emit callback that throws is reported and does not break the engine', () => {
    const obs = countingObserver();
    let calls = 0;
    const { RuleEngine } = require_engine();
    const engine = new RuleEngine({
      rules: overheat,
      now: () => T0,
      observer: obs,
      emit: () => {
        calls++;
        throw new Error('bus down');
      },
    });
    for (let i = 0; i <= 11; i++)
      engine.ingestTelemetry(
        ac,
        [{ ts: T0 + i * MIN, seq: i, metrics: { compressor_temp: 99, compressor_freq: 60 } }],
        T0 + i * MIN,
      );
    expect(calls).toBe(1);
    expect(obs.errors.map(([id, err]) => [id, (err as Error).message])).toEqual([
      ['ac-compressor-overheat', 'bus down'],
    ]);
    expect(engine.ruleStates('ac-1')[0]?.phase).toBe('firing');
  });
});

import * as engineModule from '../../src/rules/engine.js';

function require_engine() {
  return engineModule;
}
