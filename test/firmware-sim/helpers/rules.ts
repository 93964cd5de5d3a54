/**
 * Minimal evaluators of the shipped rules (rules/*.yaml), written from their
 * YAML, so the simulator's fault signatures can be checked against the rule
 * semantics without importing the bridge. They count incidents: a fire, then a
 * clear by the rule's clear condition, then possibly a fire again.
 */
import type { SimEvent } from '../../../firmware-sim/fleet/events.js';
import { faultCodes, num, publishes, type Sample, samples } from './generate.js';

const MIN = 60_000;

interface Sustained<T extends Sample> {
  when: (s: T) => boolean;
  gate?: (s: T) => boolean;
  forMs: number;
  clear: (s: T) => boolean;
  clearForMs: number;
}

/** Fires when `when` (and the gate) held for forMs; resolves when `clear` held for clearForMs. */
function incidents<T extends Sample>(list: T[], r: Sustained<T>): number[] {
  const fired: number[] = [];
  let firing = false;
  let since: number | undefined;
  for (const s of list) {
    if (!firing) {
      const holds = r.when(s) && (r.gate ? r.gate(s) : true);
      if (holds) {
        since ??= s.at;
        if (s.at - since >= r.forMs) {
          firing = true;
          fired.push(s.at);
          since = undefined;
        }
      } else {
        since = undefined;
      }
    } else if (r.clear(s)) {
      since ??= s.at;
      if (s.at - since >= r.clearForMs) {
        firing = false;
        since = undefined;
      }
    } else {
      since = undefined;
    }
  }
  return fired;
}

const has = (s: Sample, m: string) => typeof s.metrics[m] === 'number';

/** ac-refrigerant-low's window: mean discharge pressure of the last 15 min of samples at >= 50 Hz, if 45 or more. */
function pressureAverages(list: Sample[]): Array<number | undefined> {
  const window: Array<{ at: number; p: number }> = [];
  let sum = 0;
  let head = 0;
  return list.map((s) => {
    if (has(s, 'compressor_freq') && num(s, 'compressor_freq') >= 50 && has(s, 'discharge_pressure')) {
      window.push({ at: s.at, p: num(s, 'discharge_pressure') });
      sum += num(s, 'discharge_pressure');
    }
    while (head < window.length && window[head]!.at <= s.at - 15 * MIN) sum -= window[head++]!.p;
    const n = window.length - head;
    return n >= 45 ? sum / n : undefined;
  });
}

function faultRepeats(times: number[], count: number, withinMs: number): number[] {
  const sorted = [...times].sort((a, b) => a - b);
  const fired: number[] = [];
  for (let i = count - 1; i < sorted.length; i++) {
    if (
      sorted[i]! - sorted[i - count + 1]! <= withinMs &&
      (fired.length === 0 || sorted[i]! - fired.at(-1)! > withinMs)
    ) {
      fired.push(sorted[i]!);
    }
  }
  return fired;
}

export type RuleId =
  | 'ac-compressor-overheat'
  | 'ac-refrigerant-low'
  | 'ac-fan-stall'
  | 'ac-fault-e05-repeat'
  | 'rv-brush-overcurrent'
  | 'rv-battery-overheat'
  | 'rv-wheel-stuck-repeat'
  | 'device-silent';

/** Incident start times per rule for one device. */
export function evaluateRules(
  events: SimEvent[],
  deviceId: string,
  model: string,
): Partial<Record<RuleId, number[]>> {
  const list = samples(events, deviceId);
  const codes = faultCodes(events, deviceId);
  const out: Partial<Record<RuleId, number[]>> = {};
  const add = (id: RuleId, fired: number[]) => {
    if (fired.length > 0) out[id] = fired;
  };
  if (model.startsWith('AC-')) {
    add(
      'ac-compressor-overheat',
      incidents(list, {
        when: (s) => has(s, 'compressor_temp') && num(s, 'compressor_temp') > 95,
        gate: (s) => has(s, 'compressor_freq') && num(s, 'compressor_freq') > 0,
        forMs: 10 * MIN,
        clear: (s) => has(s, 'compressor_temp') && num(s, 'compressor_temp') < 90,
        clearForMs: 2 * MIN,
      }),
    );
    const avgs = pressureAverages(list);
    const withAvg = list.map((s, i) => ({ ...s, avg: avgs[i] }));
    add(
      'ac-refrigerant-low',
      incidents(withAvg, {
        when: (s) => s.avg !== undefined && s.avg < 19,
        gate: (s) => s.metrics.mode === 'cool',
        forMs: 10 * MIN,
        clear: (s) => s.avg !== undefined && s.avg >= 20.5,
        clearForMs: 30 * MIN,
      }),
    );
    add(
      'ac-fan-stall',
      incidents(list, {
        when: (s) => num(s, 'fan_rpm') === 0,
        gate: (s) => s.metrics.mode !== 'off',
        forMs: 2 * MIN,
        clear: (s) => num(s, 'fan_rpm') > 0,
        clearForMs: MIN,
      }),
    );
    add(
      'ac-fault-e05-repeat',
      faultRepeats(
        codes.filter((c) => c.code === 'E05').map((c) => c.at),
        3,
        60 * MIN,
      ),
    );
  } else {
    add(
      'rv-brush-overcurrent',
      incidents(list, {
        when: (s) => num(s, 'main_brush_current') > 1.2,
        gate: (s) => s.metrics.cleaning === true,
        forMs: MIN,
        clear: (s) => num(s, 'main_brush_current') < 0.8,
        clearForMs: 2 * MIN,
      }),
    );
    add(
      'rv-battery-overheat',
      incidents(list, {
        when: (s) => num(s, 'battery_temp') > 55,
        forMs: MIN,
        clear: (s) => num(s, 'battery_temp') < 50,
        clearForMs: 5 * MIN,
      }),
    );
    add(
      'rv-wheel-stuck-repeat',
      faultRepeats(
        codes.filter((c) => c.code === 'W01').map((c) => c.at),
        3,
        30 * MIN,
      ),
    );
  }
  // device-silent at its default, 30 min: these fleets are in the field (region lab has 30 s).
  const sent = publishes(events, undefined, deviceId)
    .filter((e) => !e.topic.endsWith('/status'))
    .map((e) => e.at);
  const silent: number[] = [];
  for (let i = 1; i < sent.length; i++)
    if (sent[i]! - sent[i - 1]! >= 30 * MIN) silent.push(sent[i - 1]! + 30 * MIN);
  add('device-silent', silent);
  return out;
}
