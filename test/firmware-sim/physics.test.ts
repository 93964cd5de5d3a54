import { describe, expect, it } from 'vitest';
import {
  AC_9000,
  type AcProfile,
  type AcState,
  compressorTarget,
  dischargePressure,
  outdoorTemperature,
} from '../../firmware-sim/models/ac.js';
import { RV_200 } from '../../firmware-sim/models/rv.js';
import type { Effects } from '../../firmware-sim/models/types.js';
import { Rng } from '../../firmware-sim/rng.js';
import { generate, HOUR, MIN, max, mean, num, START, samples } from './helpers/generate.js';

/** Steps one AC for `hours` from a shared initial state, with the climate and effects given. */
function runAc(opts: { climateMean?: number; effects?: Effects; hours?: number }) {
  const rng = Rng.for('phys', 'ac-1', 'physics');
  const state = AC_9000.init(rng, START) as AcState;
  state.profile.primaryMode = 'cool';
  state.profile.awayHours = 0;
  state.profile.climateAmplitude = 0;
  if (opts.climateMean !== undefined) state.profile.climateMean = opts.climateMean;
  const out: Array<Record<string, number | string | boolean>> = [];
  const dt = AC_9000.reportIntervalMs;
  for (let t = START; t < START + (opts.hours ?? 3) * HOUR; t += dt) {
    out.push(AC_9000.step(state, t, dt, opts.effects ?? {}, rng).metrics);
  }
  return out;
}

const lastHour = (rows: Array<Record<string, number | string | boolean>>, metric: string) =>
  mean(rows.slice(-360).map((r) => r[metric] as number));

describe('air conditioner physics', { timeout: 120_000 }, () => {
  it('settles the compressor hotter with hotter outdoor air and with higher frequency', () => {
    expect(compressorTarget(35, 60, 1, 'cool')).toBeGreaterThan(compressorTarget(25, 60, 1, 'cool'));
    expect(compressorTarget(30, 90, 1, 'cool')).toBeGreaterThan(compressorTarget(30, 40, 1, 'cool'));
    expect(compressorTarget(30, 60, 0.6, 'cool')).toBeGreaterThan(compressorTarget(30, 60, 1, 'cool'));

    const mild = runAc({ climateMean: 26, effects: { forceRunning: true } });
    const hot = runAc({ climateMean: 34, effects: { forceRunning: true } });
    expect(lastHour(hot, 'compressor_temp')).toBeGreaterThan(lastHour(mild, 'compressor_temp') + 5);
    // The hotter day also needs more frequency and so more current: the signals move together.
    expect(lastHour(hot, 'compressor_freq')).toBeGreaterThan(lastHour(mild, 'compressor_freq'));
    expect(lastHour(hot, 'current')).toBeGreaterThan(lastHour(mild, 'current'));

    const hard = runAc({ climateMean: 28, effects: { forceRunning: true, highDemand: true } });
    const easy = runAc({ climateMean: 28, effects: { forceRunning: true } });
    expect(lastHour(hard, 'compressor_freq')).toBeGreaterThan(lastHour(easy, 'compressor_freq') + 10);
    expect(lastHour(hard, 'compressor_temp')).toBeGreaterThan(lastHour(easy, 'compressor_temp') + 5);
  });

  it('lags the compressor temperature behind a change in load (first order, minutes)', () => {
    const rows = runAc({ climateMean: 30, effects: { forceRunning: true }, hours: 0.5 });
    const temps = rows.map((r) => r.compressor_temp as number);
    // From ambient at switch-on, it climbs over minutes rather than jumping, and never overshoots the end value.
    expect(temps[6]! - temps[0]!).toBeLessThan(0.5 * (temps[temps.length - 1]! - temps[0]!));
    for (let i = 1; i < temps.length; i++) expect(temps[i]! - temps[i - 1]!).toBeLessThan(8);
  });

  it('lowers discharge pressure with lost charge and raises it with outdoor temperature', () => {
    expect(dischargePressure(30, 24, 60, 0.5, 'cool')).toBeLessThan(
      0.8 * dischargePressure(30, 24, 60, 1, 'cool'),
    );
    expect(dischargePressure(38, 24, 60, 1, 'cool')).toBeGreaterThan(
      dischargePressure(28, 24, 60, 1, 'cool'),
    );
  });

  it('follows a daily outdoor cycle, warmest in the afternoon local time', () => {
    for (const utcOffsetHours of [8, 0, -5]) {
      const profile = { climateMean: 28, climateAmplitude: 5, utcOffsetHours } as AcProfile;
      const at = (localHour: number) => START + ((localHour - utcOffsetHours + 24) % 24) * HOUR;
      const day = Array.from({ length: 24 }, (_, h) => outdoorTemperature(profile, at(h), 0));
      expect(day.indexOf(Math.max(...day))).toBe(15);
      expect(day.indexOf(Math.min(...day))).toBe(3);
    }
    // In generated data too: within a day, outdoor_temp spans the cycle amplitude, not just noise.
    const list = samples(generate({ devices: 1, hours: 24, seed: '3' }).events);
    const outdoor = list.map((s) => num(s, 'outdoor_temp'));
    expect(max(outdoor) + max(outdoor.map((v) => -v))).toBeGreaterThan(5);
  });

  it('draws current in step with compressor frequency', () => {
    const list = samples(generate({ devices: 3, hours: 12, seed: '4' }).events).filter(
      (s) => s.metrics.mode === 'cool',
    );
    const f = list.map((s) => num(s, 'compressor_freq'));
    const c = list.map((s) => num(s, 'current'));
    const mf = mean(f);
    const mc = mean(c);
    const cov = f.reduce((acc, x, i) => acc + (x - mf) * (c[i]! - mc), 0);
    const corr =
      cov / Math.sqrt(f.reduce((a, x) => a + (x - mf) ** 2, 0) * c.reduce((a, x) => a + (x - mc) ** 2, 0));
    expect(corr).toBeGreaterThan(0.95);
  });

  it('keeps a healthy fleet inside the bands the rules treat as normal', { timeout: 120_000 }, () => {
    const list = samples(generate({ devices: 25, hours: 24, seed: '8' }).events);
    expect(max(list.map((s) => num(s, 'compressor_temp')))).toBeLessThan(95);
    expect(list.every((s) => s.metrics.mode === 'off' || num(s, 'fan_rpm') > 0)).toBe(true);
    expect(new Set(list.map((s) => s.metrics.mode))).toEqual(new Set(['cool', 'heat', 'fan', 'dry', 'off']));
  });
});

describe('robot vacuum physics', { timeout: 120_000 }, () => {
  it('drains the battery while cleaning and charges it on the dock, on a daily schedule', {
    timeout: 120_000,
  }, () => {
    const { events } = generate({ model: 'RV-200', devices: 4, hours: 24, seed: '2' });
    for (const id of ['dev-rv200-00001', 'dev-rv200-00002', 'dev-rv200-00003', 'dev-rv200-00004']) {
      const list = samples(events, id);
      const cleaning = list.filter((s) => s.metrics.cleaning === true);
      expect(cleaning.length * 5_000).toBeGreaterThan(30 * MIN);
      let drained = 0;
      let charged = 0;
      for (let i = 1; i < list.length; i++) {
        const a = list[i - 1]!;
        const b = list[i]!;
        const delta = num(b, 'battery_level') - num(a, 'battery_level');
        if (a.metrics.dock_state === 'cleaning' && b.metrics.dock_state === 'cleaning') {
          expect(delta).toBeLessThanOrEqual(0);
          drained -= delta;
        }
        if (a.metrics.dock_state === 'docked' && b.metrics.dock_state === 'docked') {
          expect(delta).toBeGreaterThanOrEqual(0);
          charged += delta;
        }
        // Suction and brush only run while cleaning.
        if (b.metrics.dock_state !== 'cleaning') expect(num(b, 'suction')).toBe(0);
      }
      expect(drained).toBeGreaterThan(20);
      expect(charged).toBeGreaterThan(20);
    }
  });

  it('warms the battery while charging and cleaning, and stays inside the healthy bands', {
    timeout: 120_000,
  }, () => {
    const list = samples(generate({ model: 'RV-200', devices: 20, hours: 24, seed: '6' }).events);
    expect(max(list.map((s) => num(s, 'battery_temp')))).toBeLessThan(45);
    expect(max(list.map((s) => num(s, 'main_brush_current')))).toBeLessThan(0.8);
    expect(max(list.map((s) => num(s, 'wheel_current_left')))).toBeLessThan(0.6);
    const rng = Rng.for('phys', 'rv', 'physics');
    const state = RV_200.init(rng, START);
    (state as { battery: number }).battery = 40;
    const before = (state as { batteryTemp: number }).batteryTemp;
    for (let t = START; t < START + 30 * MIN; t += 5_000) RV_200.step(state, t, 5_000, {}, rng);
    expect((state as { batteryTemp: number }).batteryTemp).toBeGreaterThan(before + 3);
  });
});
