/** Scenario files without a bridge: what they parse to, when their runs lie, and that each shipped rule has one. */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expandFleet } from '../../firmware-sim/fleet/spec.js';
import { FleetStream } from '../../firmware-sim/fleet/stream.js';
import { loadScenario, parseScenario, scenarioTiming } from '../../firmware-sim/scenario.js';
import { loadRuleFiles } from '../../src/rules/loader.js';
import { HOUR, MIN } from './helpers/generate.js';

const fleet = { seed: 's', groups: [{ model: 'AC-9000', count: 1 }] };
const expect1 = [{ tickets: { rule: 'ac-fan-stall', count: 0 } }];
const NOW = Date.parse('2026-11-22T10:00:00.250Z');
const SCENARIOS = 'firmware-sim/scenarios';

describe('scenario files', () => {
  it('without a start, a run ends now (on a whole second)', () => {
    const sc = parseScenario({ fleet, duration: '1h', speed: 400, expect: expect1 });
    expect(sc.startMs).toBeUndefined();
    expect(scenarioTiming(sc, NOW)).toEqual({
      startMs: Date.parse('2026-11-22T09:00:00Z'),
      endMs: Date.parse('2026-11-22T10:00:00Z'),
    });
  });

  it('a start with a zone fixes the device time, whenever the scenario runs', () => {
    const sc = parseScenario({
      fleet,
      start: '2026-07-16T00:00:00+08:00',
      duration: '90m',
      speed: 400,
      expect: expect1,
    });
    expect(sc.startMs).toBe(Date.parse('2026-07-15T16:00:00Z'));
    for (const now of [NOW, NOW + 24 * HOUR]) {
      expect(scenarioTiming(sc, now)).toEqual({
        startMs: Date.parse('2026-07-15T16:00:00Z'),
        endMs: Date.parse('2026-07-15T17:30:00Z'),
      });
    }
    // The fleet file's own start counts too, as for `run`.
    const inFleet = parseScenario({
      fleet: { ...fleet, start: '2026-07-16T00:00:00+08:00' },
      duration: '90m',
      expect: expect1,
    });
    expect(inFleet.startMs).toBe(sc.startMs);
  });

  it('refuses a start without a zone, and one that would run into the bridge future', () => {
    expect(() =>
      parseScenario({ fleet, start: '2026-07-16T00:00:00', duration: '1h', expect: expect1 }, 'x.yaml'),
    ).toThrow(/^x\.yaml: start: start time "2026-07-16T00:00:00" needs a time zone/);
    const late = parseScenario(
      { name: 'late', fleet, start: '2026-11-22T09:30:00Z', duration: '1h', speed: 400, expect: expect1 },
      'late.yaml',
    );
    // 09:30 + 1h of device time in 9 s of wall time: 10:30, half an hour ahead of the bridge.
    expect(() => scenarioTiming(late, NOW)).toThrow(
      /^late: the run would reach device time 2026-11-22T10:30:00\.000Z/,
    );
    // Ending four minutes ahead is within the bridge's five.
    const close = parseScenario({
      fleet,
      start: '2026-11-22T09:04:00Z',
      duration: '1h',
      speed: 400,
      expect: expect1,
    });
    expect(scenarioTiming(close, NOW).endMs).toBe(Date.parse('2026-11-22T10:04:00Z'));
  });

  it('ac-refrigerant-low streams the same bytes whenever it runs', () => {
    const sc = loadScenario(join(SCENARIOS, 'ac-refrigerant-low.yaml'));
    const bytes = (now: number) => {
      const { startMs, endMs } = scenarioTiming(sc, now);
      const specs = expandFleet(sc.fleet, { durationMs: sc.durationMs });
      const stream = new FleetStream(specs, { seed: sc.fleet.seed, startMs, endMs, qos: 1 });
      let out = '';
      let n = 0;
      for (const e of stream) {
        if (n++ < 2000) out += JSON.stringify(e);
      }
      return out;
    };
    expect(bytes(NOW)).toBe(bytes(NOW + 7 * 24 * HOUR + 13 * MIN));
  });

  it('every shipped rule has a scenario that expects a ticket of it', () => {
    const files = readdirSync(SCENARIOS).filter((f) => f.endsWith('.yaml'));
    const expected = new Set(
      files.flatMap((f) =>
        loadScenario(join(SCENARIOS, f)).expect.flatMap((e) =>
          'tickets' in e && e.tickets.count > 0 ? [e.tickets.rule] : [],
        ),
      ),
    );
    const { rules, errors } = loadRuleFiles(['rules']);
    expect(errors).toEqual([]);
    expect(rules.map((r) => r.id).filter((id) => !expected.has(id))).toEqual([]);
  });
});
