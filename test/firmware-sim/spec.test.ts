import { describe, expect, it } from 'vitest';
import {
  expandFleet,
  fleetFromFlags,
  loadFleetFile,
  parseFaultFlag,
  parseFleet,
} from '../../firmware-sim/fleet/spec.js';
import { DEVICE_ID_PATTERN, OWNER_ID_PATTERN } from '../../src/contract/index.js';
import { HOUR, MIN } from './helpers/generate.js';

describe('fleet files', () => {
  it('loads the demo fleet: ids, owners, regions, batches and faults as written', () => {
    const fleet = loadFleetFile('firmware-sim/fleets/demo.yaml');
    const devices = expandFleet(fleet, { durationMs: 6 * HOUR });
    expect(devices).toHaveLength(120);
    expect(devices[0]!.id).toBe('demo-ac9000-00001');
    expect(devices.at(-1)!.id).toBe('demo-rv200-00040');
    expect(devices.every((d) => DEVICE_ID_PATTERN.test(d.id) && OWNER_ID_PATTERN.test(d.ownerId))).toBe(true);
    expect(new Set(devices.map((d) => d.ownerId)).size).toBeLessThanOrEqual(90);
    expect(new Set(devices.filter((d) => d.model === 'AC-9000').map((d) => d.region))).toEqual(
      new Set(['cn-east', 'cn-south']),
    );
    expect(devices.filter((d) => d.model === 'AC-12000').every((d) => d.batch === 'AC12-2025-10')).toBe(true);
    const withFault = (name: string) => devices.filter((d) => d.faults.some((f) => f.name === name));
    expect(withFault('overheat')).toHaveLength(5);
    expect(withFault('offline')).toHaveLength(2);
    const offline = withFault('offline')[0]!.faults.find((f) => f.name === 'offline')!;
    expect(offline).toMatchObject({ atMs: 2 * HOUR, forMs: 20 * MIN });
    // Devices of one household share its locale.
    const byOwner = new Map<string, Set<string>>();
    for (const d of devices) byOwner.set(d.ownerId, (byOwner.get(d.ownerId) ?? new Set()).add(d.ownerLocale));
    expect([...byOwner.values()].every((locales) => locales.size === 1)).toBe(true);
  });

  it('picks the same devices for "count" faults on every expansion, within the batch asked for', () => {
    const fleet = parseFleet({
      seed: 's',
      groups: [
        {
          model: 'AC-9000',
          count: 50,
          batch: { A: 0.5, B: 0.5 },
          faults: { overheat: { count: 3, batch: 'B' }, 'fan-stall': 0.2 },
        },
      ],
    });
    const a = expandFleet(fleet);
    const b = expandFleet(fleet);
    const hot = a.filter((d) => d.faults.some((f) => f.name === 'overheat'));
    expect(hot).toHaveLength(3);
    expect(hot.every((d) => d.batch === 'B')).toBe(true);
    expect(b.filter((d) => d.faults.some((f) => f.name === 'overheat')).map((d) => d.id)).toEqual(
      hot.map((d) => d.id),
    );
    const stalled = a.filter((d) => d.faults.some((f) => f.name === 'fan-stall')).length;
    expect(stalled).toBeGreaterThan(3);
    expect(stalled).toBeLessThan(20);
  });

  it('places default fault start times early in the run, deterministically', () => {
    const fleet = fleetFromFlags({ devices: 20, model: 'AC-9000', faults: ['overheat'] });
    const starts = expandFleet(fleet, { durationMs: 10 * HOUR }).map((d) => d.faults[0]!.atMs);
    expect(starts.every((t) => t >= 0.05 * 10 * HOUR && t <= 0.3 * 10 * HOUR)).toBe(true);
    expect(new Set(starts).size).toBeGreaterThan(10);
    expect(expandFleet(fleet, { durationMs: 10 * HOUR }).map((d) => d.faults[0]!.atMs)).toEqual(starts);
  });

  it('refuses what it cannot run, naming the place', () => {
    expect(() => parseFleet({ groups: [{ model: 'XX-1', count: 1 }] })).toThrow(
      /groups\.0\.model: unknown model/,
    );
    expect(() =>
      parseFleet({ groups: [{ model: 'AC-9000', count: 1, faults: { 'brush-jam': 1 } }] }),
    ).toThrow(/brush-jam does not apply to AC-9000/);
    expect(() => parseFleet({ groups: [{ model: 'AC-9000', count: 1, faults: { nope: 1 } }] })).toThrow(
      /unknown fault/,
    );
    expect(() =>
      parseFleet({ groups: [{ model: 'AC-9000', count: 1, faults: { overheat: { peak: 'hot' } } }] }),
    ).toThrow(/faults\.overheat: peak/);
    expect(() =>
      parseFleet({ groups: [{ model: 'AC-9000', count: 1, faults: { overheat: { at: 'soon' } } }] }),
    ).toThrow(/invalid duration/);
    expect(() => parseFleet({ groups: [{ model: 'AC-9000', count: 1 }], bogus: 1 })).toThrow(/bogus/);
    // Groups sharing a prefix continue its numbering instead of colliding.
    const shared = parseFleet({
      groups: [
        { model: 'AC-9000', count: 1, idPrefix: 'x-' },
        { model: 'RV-200', count: 1, idPrefix: 'x-' },
      ],
    });
    expect(expandFleet(shared).map((d) => d.id)).toEqual(['x-00001', 'x-00002']);
    expect(() =>
      expandFleet(parseFleet({ groups: [{ model: 'AC-9000', count: 1, idPrefix: 'bad id ' }] })),
    ).toThrow(/not valid/);
  });

  it('parses --fault flags: fraction, count, parameters', () => {
    expect(parseFaultFlag('overheat')).toEqual(['overheat', { fraction: 1 }]);
    expect(parseFaultFlag('overheat=0.25')).toEqual(['overheat', { fraction: 0.25 }]);
    expect(parseFaultFlag('overheat=3,at=30m,peak=60')).toEqual([
      'overheat',
      { count: 3, at: '30m', peak: 60 },
    ]);
    expect(parseFaultFlag('clock-skew=1,offset=-2h')).toEqual(['clock-skew', { count: 1, offset: '-2h' }]);
    expect(() => parseFaultFlag('overheat=lots')).toThrow(/not a fraction or count/);
    expect(() => parseFaultFlag('overheat,peak')).toThrow(/key=value/);
  });
});
