/** Time policies: device time, late batches, out-of-order samples, gaps, clock offsets, timers. */
import { describe, expect, it } from 'vitest';
import { device, Harness, HOUR, MIN, rules, SEC, T0 } from './harness.js';

const ac = device('ac-1');
const overheat = rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    for: 10m
    clear: { when: { threshold: { metric: compressor_temp, op: "<", value: 90 } }, for: 2m }
`);

describe('late batches from an offline buffer', () => {
  it('are evaluated in order on device time; a whole episode older than staleAfter is stale', () => {
    const h = new Harness(overheat, { staleAfterMs: 30 * MIN });
    h.telemetry(ac, T0, { compressor_temp: 80 });
    // buffered 1..60 min, uploaded at 2h: hot from 5m to 25m, then cool
    const buffered = Array.from({ length: 60 }, (_, i) => ({
      ts: T0 + (i + 1) * MIN,
      metrics: { compressor_temp: i + 1 >= 5 && i + 1 < 25 ? 99 : 80 },
    }));
    h.batch(ac, buffered, T0 + 2 * HOUR);
    expect(
      h.events.map((e) => [e.type, (e.deviceTime - T0) / MIN, e.serverTime - T0, e.late, e.stale]),
    ).toEqual([
      ['rule.fired', 15, 2 * HOUR, true, true],
      ['rule.resolved', 27, 2 * HOUR, true, true],
    ]);
  });

  it('an episode still going on when the batch lands is late but not stale', () => {
    const h = new Harness(overheat, { staleAfterMs: 30 * MIN });
    h.telemetry(ac, T0, { compressor_temp: 80 });
    const buffered = Array.from({ length: 60 }, (_, i) => ({
      ts: T0 + (i + 1) * MIN,
      metrics: { compressor_temp: 99 },
    }));
    h.batch(ac, buffered, T0 + 61 * MIN);
    expect(h.events.map((e) => [e.type, (e.deviceTime - T0) / MIN, e.late, e.stale])).toEqual([
      ['rule.fired', 11, true, false],
    ]);
  });

  it('a recently ended episode is late but not yet stale', () => {
    const h = new Harness(overheat, { staleAfterMs: 30 * MIN });
    h.telemetry(ac, T0, { compressor_temp: 80 });
    const buffered = Array.from({ length: 30 }, (_, i) => ({
      ts: T0 + (i + 1) * MIN,
      metrics: { compressor_temp: i + 1 < 15 ? 99 : 80 },
    }));
    h.batch(ac, buffered, T0 + 31 * MIN);
    expect(h.events.map((e) => [e.type, e.late, e.stale])).toEqual([
      ['rule.fired', true, false],
      ['rule.resolved', true, false],
    ]);
  });

  it('sorts an unordered batch before evaluating it', () => {
    const h = new Harness(overheat);
    const samples = Array.from({ length: 15 }, (_, i) => ({
      ts: T0 + i * MIN,
      metrics: { compressor_temp: 99 },
    })).reverse();
    h.batch(ac, samples, T0 + 15 * MIN);
    expect(h.timeline()).toEqual(['rule.fired hot @10m']);
  });
});

describe('a first message that is an old buffer', () => {
  it('is judged against a synced clock: late, and stale when the episode is long over', () => {
    const h = new Harness(overheat, { staleAfterMs: 30 * MIN });
    const t0 = T0 - 3 * HOUR;
    const buffered = Array.from({ length: 20 }, (_, i) => ({
      ts: t0 + i * MIN,
      metrics: { compressor_temp: i < 12 ? 99 : 80 },
    }));
    h.batch(ac, buffered, T0);
    expect(h.events.map((e) => [e.type, e.deviceTime - t0, e.late, e.stale])).toEqual([
      ['rule.fired', 10 * MIN, true, true],
      ['rule.resolved', 14 * MIN, true, true],
    ]);
  });

  it('a device whose clock runs two hours behind is late only on its first message, then timers follow its clock', () => {
    const h = new Harness(
      rules(`
  - id: silent
    title: t
    severity: minor
    when: { absent: { for: 30m } }
`),
    );
    const skew = 2 * HOUR;
    h.series(ac, T0, MIN, 10, () => ({ room_temp: 20 }), skew);
    // silence counts from the last message on the device's own clock, not two hours early
    h.advance(T0 + skew + 38 * MIN);
    expect(h.events).toEqual([]);
    h.advance(T0 + skew + 39 * MIN);
    expect(h.events.map((e) => [e.deviceTime - T0, e.late])).toEqual([[39 * MIN, false]]);
  });
});

describe('out-of-order samples', () => {
  it('never rewrite the past: an old sample does not reset a pending timer', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, MIN, 6, () => ({ compressor_temp: 99 }));
    // a cold reading from 2 minutes ago arrives late
    h.telemetry(ac, T0 + 3 * MIN, { compressor_temp: 70 }, T0 + 5 * MIN + SEC);
    h.series(ac, T0 + 6 * MIN, MIN, 5, () => ({ compressor_temp: 99 }));
    expect(h.timeline()).toEqual(['rule.fired hot @10m']);
  });

  it('enter windows when they fall inside them', () => {
    const h = new Harness(
      rules(`
  - id: avg
    title: "{{value}}"
    severity: minor
    when: { aggregate: { metric: current, fn: avg, window: 10m, step: 1m, op: ">", value: 10 } }
`),
    );
    h.telemetry(ac, T0 + 5 * MIN, { current: 8 });
    h.telemetry(ac, T0 + 6 * MIN, { current: 8 });
    // an older sample arrives after them: it is inside the window, so the average moves
    h.telemetry(ac, T0 + 4 * MIN, { current: 20 }, T0 + 6 * MIN + SEC);
    expect(h.of('rule.fired').map((e) => e.value)).toEqual([12]);
    expect(h.of('rule.fired')[0]?.deviceTime).toBe(T0 + 6 * MIN);
  });

  it('do not replace a newer latest value', () => {
    const h = new Harness(
      rules(`
  - id: hot-now
    title: t
    severity: minor
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
`),
    );
    h.telemetry(ac, T0 + MIN, { compressor_temp: 80 });
    h.telemetry(ac, T0, { compressor_temp: 99 }, T0 + MIN + SEC);
    expect(h.events).toEqual([]);
  });
});

describe('gaps', () => {
  it('a gap longer than maxGap resets a pending for-timer', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, MIN, 4, () => ({ compressor_temp: 99 }));
    // nothing from 3m to 9m (6 min > maxGap 5m), then hot again
    h.series(ac, T0 + 9 * MIN, MIN, 15, () => ({ compressor_temp: 99 }));
    expect(h.timeline()).toEqual(['rule.fired hot @19m']);
  });

  it('a gap within maxGap keeps the timer running', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, MIN, 4, () => ({ compressor_temp: 99 }));
    h.series(ac, T0 + 7 * MIN, MIN, 5, () => ({ compressor_temp: 99 }));
    expect(h.timeline()).toEqual(['rule.fired hot @10m']);
  });

  it('maxGap is per rule', () => {
    const h = new Harness(
      rules(`
  - id: sparse
    title: t
    severity: minor
    maxGap: 20m
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    for: 30m
`),
    );
    h.series(ac, T0, 15 * MIN, 3, () => ({ compressor_temp: 99 }));
    expect(h.timeline()).toEqual(['rule.fired sparse @30m']);
  });

  it('a gap interrupts clearing too: resolving needs evidence', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, MIN, 11, () => ({ compressor_temp: 99 }));
    h.telemetry(ac, T0 + 11 * MIN, { compressor_temp: 80 });
    // the device goes quiet; the clear (2m) would complete at 13m, and the value is held until 16m
    h.advance(T0 + 12 * MIN);
    expect(h.of('rule.resolved')).toEqual([]);
    h.advance(T0 + 13 * MIN);
    expect(h.timeline()).toEqual(['rule.fired hot @10m', 'rule.resolved hot @13m']);
  });

  it('a quiet device keeps its incident open: no resolve without evidence', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, MIN, 12, () => ({ compressor_temp: 99 }));
    h.advance(T0 + 5 * HOUR);
    expect(h.timeline()).toEqual(['rule.fired hot @10m']);
    expect(h.engine.ruleStates('ac-1')[0]?.phase).toBe('firing');
  });
});

describe('clock offset and timers', () => {
  it('a device clock 2 hours behind: timers fire on server time, events keep device time', () => {
    const h = new Harness(overheat);
    const skew = 2 * HOUR;
    // device time T0.., server time T0+2h..; the device stops after 9 minutes
    h.series(ac, T0, MIN, 9, () => ({ compressor_temp: 99 }), skew);
    expect(h.engine.nextDeadline()).toBe(T0 + skew + 10 * MIN);
    h.engine.tick(T0 + skew + 10 * MIN - 1);
    expect(h.events).toEqual([]);
    h.engine.tick(T0 + skew + 10 * MIN);
    expect(h.events.map((e) => [e.deviceTime - T0, e.serverTime - T0, e.late])).toEqual([
      [10 * MIN, skew + 10 * MIN, false],
    ]);
  });

  it('network delay jitter does not make events late', () => {
    const h = new Harness(overheat);
    h.series(ac, T0, 10 * SEC, 70, () => ({ compressor_temp: 99 }), 0);
    for (let i = 70; i < 80; i++)
      h.telemetry(ac, T0 + i * 10 * SEC, { compressor_temp: 99 }, T0 + i * 10 * SEC + 3 * SEC);
    expect(h.events.every((e) => !e.late)).toBe(true);
  });

  it('nextDeadline is null when nothing can happen without data, and exact when something can', () => {
    const h = new Harness(overheat);
    expect(h.engine.nextDeadline()).toBeNull();
    h.telemetry(ac, T0, { compressor_temp: 80 });
    expect(h.engine.nextDeadline()).toBeNull();
    // pending from 1m; the 99 is held until 6m, so the 11m deadline needs more data
    h.telemetry(ac, T0 + MIN, { compressor_temp: 99 });
    expect(h.engine.nextDeadline()).toBeNull();
    // a sample at 7m holds until 12m: now the 11m deadline is reachable from the timer
    h.series(ac, T0 + 2 * MIN, MIN, 6, () => ({ compressor_temp: 99 }));
    expect(h.engine.nextDeadline()).toBe(T0 + 11 * MIN);
  });

  it('ticking early or often changes nothing', () => {
    const a = new Harness(overheat);
    const b = new Harness(overheat);
    for (const h of [a, b]) h.series(ac, T0, MIN, 3, () => ({ compressor_temp: 99 }));
    for (let t = T0 + 3 * MIN; t <= T0 + 20 * MIN; t += 1_000) b.engine.tick(t);
    a.advance(T0 + 20 * MIN);
    // the last sample (2m) is held until 7m, short of the 10m deadline: neither fires on timers alone
    expect(a.timeline()).toEqual([]);
    expect(b.timeline()).toEqual([]);
    for (const h of [a, b]) h.series(ac, T0 + 20 * MIN, MIN, 12, () => ({ compressor_temp: 99 }));
    expect(a.timeline()).toEqual(['rule.fired hot @30m']);
    expect(b.timeline()).toEqual(a.timeline());
  });
});
