import { describe, expect, it } from 'vitest';
import { Pacer, VirtualClock } from '../../firmware-sim/transport/clock.js';
import { parseDuration, parseInstant, parseRate, parseSignedDuration } from '../../firmware-sim/units.js';

describe('units', () => {
  it('parses durations, rates and instants', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration('250')).toBe(250);
    expect(parseSignedDuration('-2h')).toBe(-7_200_000);
    expect(parseSignedDuration('+10m')).toBe(600_000);
    expect(() => parseDuration('2 hours')).toThrow(/invalid duration/);
    expect(parseRate('200/s')).toBe(200);
    expect(parseRate('120/m')).toBe(2);
    expect(parseRate('50')).toBe(50);
    expect(() => parseRate('0/s')).toThrow(/positive/);
    expect(parseInstant('2026-01-01T00:00:00Z')).toBe(Date.UTC(2026, 0, 1));
    expect(() => parseInstant('2026-01-01T00:00:00')).toThrow(/time zone/);
  });
});

describe('virtual clock', () => {
  it('maps wall time to device time at the given speed from the given start', () => {
    let wall = 1_000;
    const clock = new VirtualClock(Date.UTC(2026, 0, 1), 360, () => wall);
    expect(clock.now()).toBe(Date.UTC(2026, 0, 1));
    clock.start();
    wall += 10_000; // 10 s of wall time at 360x is one device hour
    expect(clock.now()).toBe(Date.UTC(2026, 0, 1, 1));
    expect(clock.wallUntil(Date.UTC(2026, 0, 1, 2))).toBe(10_000);
    expect(clock.wallUntil(Date.UTC(2026, 0, 1))).toBe(0);
    expect(clock.wallElapsed()).toBe(10_000);
  });

  it('runs as fast as possible at speed Infinity', () => {
    const clock = new VirtualClock(0, Number.POSITIVE_INFINITY, () => 5);
    clock.start();
    expect(clock.wallUntil(Number.MAX_SAFE_INTEGER)).toBe(0);
  });

  it('paces connects: each slot one gap after the previous, no bursts', () => {
    let wall = 0;
    const pacer = new Pacer(4, () => wall);
    expect([pacer.reserve(), pacer.reserve(), pacer.reserve()]).toEqual([0, 250, 500]);
    wall = 2_000;
    // After idle time there is no saved-up burst: the next one goes now, the one after waits a gap.
    expect([pacer.reserve(), pacer.reserve()]).toEqual([0, 250]);
  });
});
