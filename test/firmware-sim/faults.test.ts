/** Each injected fault produces the signature of the rule it is matched to, and nothing invalid by accident. */
import { describe, expect, it } from 'vitest';
import { chunkByBytes } from '../../firmware-sim/fleet/device.js';
import { faultPayload, statusPayload, telemetryBatch, telemetryPayload } from '../../src/contract/index.js';
import {
  faultCodes,
  generate,
  HOUR,
  longestRun,
  MIN,
  max,
  maxInWindow,
  mean,
  num,
  publishes,
  START,
  samples,
} from './helpers/generate.js';

const AC = 'dev-ac9000-00001';
const RV = 'dev-rv200-00001';

describe('air conditioner faults', { timeout: 120_000 }, () => {
  it('overheat: compressor_temp above 95 °C for more than 10 minutes', () => {
    for (const seed of ['1', '2', '3']) {
      const list = samples(generate({ seed, hours: 2, faults: ['overheat,at=20m'] }).events, AC);
      expect(longestRun(list, (s) => num(s, 'compressor_temp') > 95)).toBeGreaterThan(10 * MIN);
      expect(list.filter((s) => s.at < START + 20 * MIN).every((s) => num(s, 'compressor_temp') < 95)).toBe(
        true,
      );
    }
  });

  it('overheat: the firmware raises P4 once the discharge passes 105 °C, not before', () => {
    const { events } = generate({ seed: '1', hours: 2, faults: ['overheat,at=20m,peak=70'] });
    const list = samples(events, AC);
    const p4 = faultCodes(events, AC).filter((c) => c.code === 'P4');
    expect(p4).toHaveLength(1);
    const firstAbove = list.find((s) => num(s, 'compressor_temp') > 105.5)!;
    expect(list.filter((s) => s.at < p4[0]!.at).every((s) => num(s, 'compressor_temp') < 105.5)).toBe(true);
    expect(firstAbove.at - p4[0]!.at).toBeLessThanOrEqual(10_500);
  });

  it('refrigerant-leak: 15-minute average discharge pressure drifts well below the same unit without the leak', () => {
    // The counterfactual keeps the same forced operation and the same noise, only without losing charge.
    const healthy = samples(
      generate({ seed: '5', hours: 6, faults: ['refrigerant-leak,at=30m,to=1'] }).events,
      AC,
    );
    const leaking = samples(
      generate({ seed: '5', hours: 6, faults: ['refrigerant-leak,at=30m,over=4h'] }).events,
      AC,
    );
    const window = (list: typeof healthy, from: number) =>
      mean(
        list
          .filter((s) => s.at >= from && s.at < from + 15 * MIN && num(s, 'compressor_freq') > 0)
          .map((s) => num(s, 'discharge_pressure')),
      );
    const begin = START + 35 * MIN;
    const end = START + 5 * HOUR;
    expect(window(leaking, begin)).toBeGreaterThan(0.95 * window(healthy, begin));
    expect(window(leaking, end)).toBeLessThan(0.8 * window(healthy, end));
    // Correlated: with less charge the compressor runs hotter.
    const lastComp = (list: typeof healthy) =>
      mean(list.filter((s) => s.at >= end).map((s) => num(s, 'compressor_temp')));
    expect(lastComp(leaking)).toBeGreaterThan(lastComp(healthy) + 3);
  });

  it('fan-stall: fan_rpm 0 while mode is not off for more than 2 minutes, E07', () => {
    const { events } = generate({ seed: '1', hours: 1, faults: ['fan-stall,at=10m'] });
    const list = samples(events, AC);
    expect(longestRun(list, (s) => num(s, 'fan_rpm') === 0 && s.metrics.mode !== 'off')).toBeGreaterThan(
      2 * MIN,
    );
    expect(faultCodes(events, AC).map((c) => c.code)).toContain('E07');
  });

  it('comm-errors: E05 three times within an hour, outdoor readings missing meanwhile', () => {
    const { events } = generate({ seed: '1', hours: 2, faults: ['comm-errors,at=10m'] });
    const e05 = faultCodes(events, AC).filter((c) => c.code === 'E05');
    expect(e05).toHaveLength(3);
    expect(
      maxInWindow(
        e05.map((c) => c.at),
        HOUR,
      ),
    ).toBe(3);
    expect(samples(events, AC).some((s) => !('compressor_temp' in s.metrics))).toBe(true);
  });

  it('flapping: compressor_temp rises past 95 °C, then crosses it again and again without dropping to clear', () => {
    const list = samples(generate({ seed: '1', hours: 1, faults: ['flapping,at=0m'] }).events, AC);
    expect(longestRun(list, (s) => num(s, 'compressor_temp') > 95)).toBeGreaterThan(10 * MIN);
    const hovering = list.filter((s) => s.at >= START + 13 * MIN);
    let crossings = 0;
    for (let i = 1; i < hovering.length; i++) {
      if (num(hovering[i - 1]!, 'compressor_temp') > 95 !== num(hovering[i]!, 'compressor_temp') > 95)
        crossings++;
    }
    expect(crossings).toBeGreaterThanOrEqual(10);
    // Never below the rule's clear threshold (90 °C): hysteresis must hold it as one incident.
    expect(list.filter((s) => num(s, 'compressor_temp') <= 90 || num(s, 'compressor_temp') >= 101)).toEqual(
      [],
    );
    expect(list.filter((s) => num(s, 'compressor_freq') === 0)).toEqual([]);
  });

  it('sensor-fault: room_temp reads -40, E01 once', () => {
    const { events } = generate({ seed: '1', hours: 1, faults: ['sensor-fault,at=10m'] });
    expect(samples(events, AC).filter((s) => num(s, 'room_temp') === -40).length).toBeGreaterThan(100);
    expect(faultCodes(events, AC).filter((c) => c.code === 'E01')).toHaveLength(1);
  });
});

describe('robot vacuum faults', { timeout: 120_000 }, () => {
  it('brush-jam: main_brush_current far above its healthy band, B02', () => {
    const { events } = generate({ model: 'RV-200', seed: '1', hours: 2, faults: ['brush-jam,at=10m'] });
    const list = samples(events, RV);
    expect(longestRun(list, (s) => num(s, 'main_brush_current') > 1.0)).toBeGreaterThan(2 * MIN);
    expect(faultCodes(events, RV).map((c) => c.code)).toContain('B02');
  });

  it('battery-overheat: battery_temp past 60 °C, C03 (safety)', () => {
    const { events } = generate({
      model: 'RV-200',
      seed: '1',
      hours: 3,
      faults: ['battery-overheat,at=10m'],
    });
    const list = samples(events, RV);
    expect(longestRun(list, (s) => num(s, 'battery_temp') > 60)).toBeGreaterThan(30 * MIN);
    expect(faultCodes(events, RV).filter((c) => c.code === 'C03')).toHaveLength(1);
  });

  it('wheel-stuck: W01 three times within 30 minutes, with a wheel current spike before each', () => {
    for (const seed of ['1', '2', '3', '4']) {
      const { events } = generate({ model: 'RV-200', seed, hours: 2, faults: ['wheel-stuck,at=15m'] });
      const w01 = faultCodes(events, RV).filter((c) => c.code === 'W01');
      expect(w01).toHaveLength(3);
      expect(
        maxInWindow(
          w01.map((c) => c.at),
          30 * MIN,
        ),
      ).toBe(3);
      const list = samples(events, RV);
      const spikes = list.filter(
        (s) => Math.max(num(s, 'wheel_current_left'), num(s, 'wheel_current_right')) > 1,
      );
      expect(spikes.length).toBeGreaterThanOrEqual(3);
    }
  });
});

describe('generic faults', { timeout: 120_000 }, () => {
  it('repeat-code: the given code, count times, within the window', () => {
    const { events } = generate({
      seed: '1',
      hours: 2,
      faults: ['repeat-code,at=5m,code=P1,times=4,within=20m'],
    });
    const p1 = faultCodes(events, AC).filter((c) => c.code === 'P1');
    expect(p1).toHaveLength(4);
    expect(
      maxInWindow(
        p1.map((c) => c.at),
        20 * MIN,
      ),
    ).toBe(4);
  });

  it('silent: no message for longer than 30 minutes, still connected, seq resumes', () => {
    const { events } = generate({ seed: '1', hours: 2, faults: ['silent,at=20m,for=45m'] });
    const mine = publishes(events, undefined, AC);
    let gap = 0;
    for (let i = 1; i < mine.length; i++) gap = Math.max(gap, mine[i]!.at - mine[i - 1]!.at);
    expect(gap).toBeGreaterThan(30 * MIN);
    expect(events.filter((e) => e.deviceId === AC && e.type === 'drop')).toHaveLength(0);
    const seqs = samples(events, AC).map((s) => s.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i));
  });

  it('offline: drop (will), reconnect, online status, then the buffered samples as one batch', () => {
    const { events } = generate({ seed: '1', hours: 1, faults: ['offline,at=10m,for=20m'] });
    const mine = events.filter((e) => e.deviceId === AC);
    const types = mine.filter(
      (e) => e.type !== 'publish' || e.topic.endsWith('/status') || e.tags?.includes('batch'),
    );
    expect(
      types.map((e) => (e.type === 'publish' ? (e.tags?.includes('batch') ? 'batch' : 'status') : e.type)),
    ).toEqual(['connect', 'status', 'drop', 'connect', 'status', 'batch']);
    const drop = mine.find((e) => e.type === 'drop')!;
    const batchEvent = publishes(mine, 'telemetry').find((e) => e.tags?.includes('batch'))!;
    const batch = telemetryBatch.parse(JSON.parse(batchEvent.payload));
    expect(batch.batch.length).toBeGreaterThanOrEqual(115);
    expect(batch.batch.every((s) => s.ts >= drop.at && s.ts < batchEvent.at)).toBe(true);
    // Nothing is published between the drop and the reconnect.
    const during = mine.filter((e) => e.at > drop.at && e.at < batchEvent.at);
    expect(during).toHaveLength(0);
    // Every sample exists exactly once, live or in the batch.
    const seqs = [...samples(events, AC).map((s) => s.seq), ...batch.batch.map((s) => s.seq)].sort(
      (a, b) => a - b,
    );
    expect(seqs).toEqual(seqs.map((_, i) => i));
  });

  it('splits a long outage into batches under the byte budget and the item cap', () => {
    const { events } = generate({
      seed: '1',
      hours: 3,
      faults: ['offline,at=5m,for=2h'],
      maxBatchBytes: 20_000,
    });
    const batches = publishes(events, 'telemetry', AC).filter((e) => e.tags?.includes('batch'));
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches) {
      expect(Buffer.byteLength(b.payload)).toBeLessThanOrEqual(20_000);
      telemetryBatch.parse(JSON.parse(b.payload));
    }
    expect(
      chunkByBytes(
        Array.from({ length: 25_000 }, (_, i) => i),
        10_000_000,
      ).map((c) => c.length),
    ).toEqual([10_000, 10_000, 5_000]);
  });

  it('duplicates: the same payload, same seq, sent twice', () => {
    const { events } = generate({ seed: '1', hours: 1, faults: ['duplicates,rate=0.05'] });
    const dups = publishes(events, undefined, AC).filter((e) => e.tags?.includes('duplicate'));
    expect(dups.length).toBeGreaterThan(5);
    const all = publishes(events, undefined, AC);
    for (const d of dups) expect(all.filter((e) => e.payload === d.payload)).toHaveLength(2);
  });

  it('out-of-order: a sample arrives after its successor', () => {
    const list = samples(generate({ seed: '1', hours: 1, faults: ['out-of-order,rate=0.05'] }).events, AC);
    const backwards = list.filter((s, i) => i > 0 && s.seq < list[i - 1]!.seq && s.ts < list[i - 1]!.ts);
    expect(backwards.length).toBeGreaterThan(5);
  });

  it('clock-skew: every timestamp is off by the offset', () => {
    const { events } = generate({ seed: '1', hours: 1, faults: ['clock-skew,offset=+10m'] });
    for (const s of samples(events, AC)) expect(s.ts - s.at).toBe(10 * MIN);
    const behind = generate({ seed: '1', hours: 1, faults: ['clock-skew,offset=-2h,at=30m'] }).events;
    const list = samples(behind, AC);
    expect(list.filter((s) => s.at < START + 30 * MIN).every((s) => s.ts === s.at)).toBe(true);
    expect(list.filter((s) => s.at >= START + 30 * MIN).every((s) => s.ts === s.at - 2 * HOUR)).toBe(true);
  });

  it('malformed: a small fraction is refused by the contract, everything else passes it', () => {
    const { events } = generate({
      seed: '1',
      devices: 3,
      hours: 2,
      faults: ['malformed,rate=0.05', 'overheat=1', 'duplicates', 'out-of-order', 'offline=1,for=10m'],
    });
    const all = publishes(events);
    const schemaFor = (topic: string) =>
      topic.endsWith('/telemetry')
        ? telemetryPayload
        : topic.endsWith('/faults')
          ? faultPayload
          : statusPayload;
    const valid = (payload: string, topic: string) => {
      try {
        return schemaFor(topic).safeParse(JSON.parse(payload)).success;
      } catch {
        return false;
      }
    };
    const malformed = all.filter((e) => e.tags?.some((t) => t.startsWith('malformed')));
    expect(malformed.length).toBeGreaterThan(0.02 * all.length);
    expect(malformed.length).toBeLessThan(0.08 * all.length);
    expect(new Set(malformed.flatMap((e) => e.tags!)).size).toBeGreaterThanOrEqual(7);
    for (const e of malformed) expect(valid(e.payload, e.topic), e.payload).toBe(false);
    for (const e of all.filter((x) => !malformed.includes(x)))
      expect(valid(e.payload, e.topic), e.payload).toBe(true);
  });

  it('keeps the fault-free part of a fleet fault-free', () => {
    const { events, specs } = generate({ devices: 20, seed: '1', hours: 1, faults: ['overheat=2'] });
    const faulty = specs.filter((s) => s.faults.length > 0).map((s) => s.id);
    expect(faulty).toHaveLength(2);
    for (const id of specs.map((s) => s.id).filter((i) => !faulty.includes(i))) {
      expect(max(samples(events, id).map((s) => num(s, 'compressor_temp')))).toBeLessThan(95);
      expect(faultCodes(events, id)).toHaveLength(0);
    }
  });
});
