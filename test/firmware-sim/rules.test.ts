/** Each fault trips the shipped rule it is matched to, once; a healthy fleet trips none. */
import { describe, expect, it } from 'vitest';
import { parseFleet } from '../../firmware-sim/fleet/spec.js';
import { generate } from './helpers/generate.js';
import { evaluateRules, type RuleId } from './helpers/rules.js';

const cases: Array<{ fault: string; model: string; rule: RuleId; hours: number }> = [
  { fault: 'overheat,at=20m', model: 'AC-9000', rule: 'ac-compressor-overheat', hours: 2 },
  { fault: 'flapping,at=20m', model: 'AC-12000', rule: 'ac-compressor-overheat', hours: 2 },
  { fault: 'refrigerant-leak,at=20m,over=3h', model: 'AC-9000', rule: 'ac-refrigerant-low', hours: 5 },
  { fault: 'fan-stall,at=20m', model: 'AC-9000', rule: 'ac-fan-stall', hours: 1 },
  { fault: 'comm-errors,at=20m', model: 'AC-9000', rule: 'ac-fault-e05-repeat', hours: 2 },
  { fault: 'repeat-code,at=20m', model: 'AC-12000', rule: 'ac-fault-e05-repeat', hours: 2 },
  { fault: 'brush-jam,at=20m', model: 'RV-200', rule: 'rv-brush-overcurrent', hours: 1 },
  { fault: 'battery-overheat,at=20m', model: 'RV-200', rule: 'rv-battery-overheat', hours: 2 },
  { fault: 'flapping,at=20m', model: 'RV-200', rule: 'rv-battery-overheat', hours: 2 },
  { fault: 'wheel-stuck,at=20m', model: 'RV-200', rule: 'rv-wheel-stuck-repeat', hours: 2 },
  { fault: 'repeat-code,at=20m', model: 'RV-200', rule: 'rv-wheel-stuck-repeat', hours: 2 },
  { fault: 'silent,at=20m', model: 'RV-200', rule: 'device-silent', hours: 2 },
];

describe('faults against the shipped rules', { timeout: 120_000 }, () => {
  for (const c of cases) {
    it(`${c.fault} on ${c.model} trips ${c.rule} once`, () => {
      // Several devices, so a signature that only works for one climate or schedule would show.
      const { events, specs } = generate({
        model: c.model,
        devices: 4,
        seed: '17',
        hours: c.hours,
        faults: [c.fault],
      });
      for (const spec of specs) {
        const fired = evaluateRules(events, spec.id, spec.model);
        if (c.rule === 'ac-refrigerant-low' && !fired[c.rule]) {
          // The rule gates on mode cool: a heat pump in winter shows the drop but cannot trip it.
          const modes = new Set(
            events
              .filter((e) => e.deviceId === spec.id)
              .map((e) => (e.type === 'publish' ? /"mode":"(\w+)"/.exec(e.payload)?.[1] : undefined)),
          );
          expect(modes.has('cool'), spec.id).toBe(false);
          continue;
        }
        expect(fired[c.rule], `${spec.id}: ${JSON.stringify(fired)}`).toHaveLength(1);
        // ...and nothing else: overheat does not also look like a stall, a jam not like an overheat.
        const others = Object.keys(fired).filter((r) => r !== c.rule);
        expect(others, spec.id).toEqual([]);
      }
    });
  }

  it('offline shorter than 30 minutes trips nothing (the batch upload fills the gap)', () => {
    const { events, specs } = generate({
      devices: 3,
      seed: '17',
      hours: 2,
      faults: ['offline,at=20m,for=20m'],
    });
    for (const spec of specs) expect(evaluateRules(events, spec.id, spec.model)).toEqual({});
  });

  // Generous timeout: a day of a fleet is a few seconds alone, much longer on a loaded CI machine.
  it('a healthy mixed fleet trips no rule in a day', { timeout: 180_000 }, () => {
    const fleet = parseFleet({
      seed: 'healthy',
      groups: [
        { model: 'AC-9000', count: 10 },
        { model: 'AC-12000', count: 6 },
        { model: 'RV-200', count: 8 },
      ],
    });
    const { events, specs } = generate({ fleet, hours: 24 });
    const fired = specs
      .map((s) => [s.id, evaluateRules(events, s.id, s.model)] as const)
      .filter(([, f]) => Object.keys(f).length > 0);
    expect(fired).toEqual([]);
  });
});
