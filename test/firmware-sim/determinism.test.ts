import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { toStreamLine } from '../../firmware-sim/fleet/events.js';
import { parseFleet } from '../../firmware-sim/fleet/spec.js';
import { Rng } from '../../firmware-sim/rng.js';
import { generate, HOUR, publishes } from './helpers/generate.js';

const mixed = (seed: string) =>
  parseFleet({
    seed,
    groups: [
      {
        model: 'AC-9000',
        count: 4,
        faults: {
          overheat: { count: 1 },
          duplicates: 0.5,
          'out-of-order': 0.5,
          malformed: { fraction: 1, rate: 0.05 },
        },
      },
      {
        model: 'RV-200',
        count: 3,
        faults: { offline: { count: 1, at: '20m' }, 'wheel-stuck': { count: 1 } },
      },
    ],
  });

function bytes(events: ReturnType<typeof generate>['events']): string {
  return events.map((e) => toStreamLine(e)).join('\n');
}

describe('deterministic generation', { timeout: 120_000 }, () => {
  it('gives a byte-identical stream for the same seed', () => {
    const a = bytes(generate({ fleet: mixed('42'), hours: 2 }).events);
    const b = bytes(generate({ fleet: mixed('42'), hours: 2 }).events);
    expect(a.length).toBeGreaterThan(100_000);
    expect(createHash('sha256').update(a).digest('hex')).toBe(createHash('sha256').update(b).digest('hex'));
    expect(a === b).toBe(true);
  });

  it('gives a different stream for a different seed', () => {
    const a = generate({ fleet: mixed('42'), hours: 1 }).events;
    const b = generate({ fleet: mixed('43'), hours: 1 }).events;
    const payloadsA = publishes(a, 'telemetry').map((e) => e.payload);
    const payloadsB = new Set(publishes(b, 'telemetry').map((e) => e.payload));
    // Not just a shifted copy: almost no sample of one run appears in the other.
    expect(payloadsA.filter((p) => payloadsB.has(p)).length).toBeLessThan(payloadsA.length / 100);
  });

  it("keeps a device's stream independent of the rest of the fleet", () => {
    const alone = generate({ devices: 1, seed: '9', hours: 1 }).events;
    const inFleet = generate({ devices: 6, seed: '9', hours: 1 }).events.filter(
      (e) => e.deviceId === 'dev-ac9000-00001',
    );
    expect(bytes(inFleet)).toBe(bytes(alone));
  });

  it('orders the merged stream by device time, ties by fleet position', () => {
    const { events, specs } = generate({ fleet: mixed('5'), hours: 1 });
    const index = new Map(specs.map((s, i) => [s.id, i]));
    for (let i = 1; i < events.length; i++) {
      const prev = events[i - 1]!;
      const cur = events[i]!;
      expect(cur.at >= prev.at).toBe(true);
      if (cur.at === prev.at && cur.deviceId !== prev.deviceId) {
        expect(index.get(cur.deviceId)! > index.get(prev.deviceId)!).toBe(true);
      }
    }
  });

  it('stops at the end of the run and covers it', () => {
    const { events } = generate({ devices: 2, hours: 1 });
    const first = events[0]!.at;
    const last = events[events.length - 1]!.at;
    expect(last - first).toBeLessThan(HOUR);
    expect(last - first).toBeGreaterThan(HOUR - 20_000);
  });
});

describe('Rng', { timeout: 120_000 }, () => {
  it('repeats for the same key and differs across keys and purposes', () => {
    const draw = (rng: Rng) => Array.from({ length: 8 }, () => rng.nextUint32());
    expect(draw(Rng.for('1', 'dev-a', 'physics'))).toEqual(draw(Rng.for('1', 'dev-a', 'physics')));
    expect(draw(Rng.for('1', 'dev-a', 'physics'))).not.toEqual(draw(Rng.for('1', 'dev-b', 'physics')));
    expect(draw(Rng.for('1', 'dev-a', 'physics'))).not.toEqual(draw(Rng.for('1', 'dev-a', 'wire')));
    expect(draw(Rng.for('1', 'dev-a', 'physics'))).not.toEqual(draw(Rng.for('2', 'dev-a', 'physics')));
  });

  it('is roughly uniform and its normals are roughly standard', () => {
    const rng = Rng.for('stats', 'x', 'y');
    const n = 20_000;
    const u = Array.from({ length: n }, () => rng.next());
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
    expect(Math.abs(u.reduce((a, b) => a + b, 0) / n - 0.5)).toBeLessThan(0.01);
    const z = Array.from({ length: n }, () => rng.normal());
    const m = z.reduce((a, b) => a + b, 0) / n;
    const sd = Math.sqrt(z.reduce((a, b) => a + (b - m) ** 2, 0) / n);
    expect(Math.abs(m)).toBeLessThan(0.03);
    expect(Math.abs(sd - 1)).toBeLessThan(0.03);
  });

  it('picks both wheel sides across devices (first draws are not correlated by id)', () => {
    const firsts = Array.from({ length: 200 }, (_, i) =>
      Rng.for('1', `dev-${i}`, 'fault:wheel-stuck:0').chance(0.5),
    );
    const trues = firsts.filter(Boolean).length;
    expect(trues).toBeGreaterThan(70);
    expect(trues).toBeLessThan(130);
  });
});
