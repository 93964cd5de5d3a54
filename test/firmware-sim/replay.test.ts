import { describe, expect, it } from 'vitest';
import type { PublishEvent } from '../../firmware-sim/fleet/events.js';
import type { StreamEntry } from '../../firmware-sim/record.js';
import { parseRemap, planReplay, remapEvent, remapId } from '../../firmware-sim/replay.js';

const pub = (deviceId: string, at: number, payload: string, tags?: string[]): PublishEvent => ({
  type: 'publish',
  at,
  deviceId,
  topic: `devices/${deviceId}/telemetry`,
  payload,
  qos: 1,
  retain: false,
  ...(tags ? { tags } : {}),
});

describe('remapping ids', () => {
  it('maps whole ids with capture groups; the first matching rule wins', () => {
    const remaps = [parseRemap('dev-(.*)=lab-$1'), parseRemap('.*=other')];
    expect(remapId('dev-ac9000-00001', remaps)).toBe('lab-ac9000-00001');
    expect(remapId('x-1', remaps)).toBe('other');
    expect(remapId('x-1', [parseRemap('dev-(.*)=lab-$1')])).toBe('x-1');
    // The regex must match the whole id, not a part of it.
    expect(remapId('my-dev-1', [parseRemap('dev-(.*)=lab-$1')])).toBe('my-dev-1');
    expect(parseRemap('a(?=b)=c').pattern.source).toContain('(?=b)');
    expect(() => parseRemap('nothing')).toThrow(/REGEX=REPLACEMENT/);
    expect(() => remapId('dev-1', [parseRemap('dev-(.*)=bad id $1')])).toThrow(/not a valid device id/);
  });

  it('rewrites the topic and id references in the payload, leaving longer ids alone', () => {
    const ev = remapEvent(
      pub('dev-1', 5, '{"detail":"dev-1 and dev-10","x":"dev-1"}'),
      'lab-1',
    ) as PublishEvent;
    expect(ev.topic).toBe('devices/lab-1/telemetry');
    expect(ev.deviceId).toBe('lab-1');
    expect(ev.payload).toBe('{"detail":"lab-1 and dev-10","x":"lab-1"}');
    expect(remapEvent({ type: 'drop', at: 1, deviceId: 'dev-1' }, 'lab-1')).toEqual({
      type: 'drop',
      at: 1,
      deviceId: 'lab-1',
    });
  });

  it('plans a replay: remapped, shutdown statuses left out, wall timing on request', () => {
    const entries: StreamEntry[] = [
      { ev: { type: 'connect', at: 100, deviceId: 'dev-1' }, wallOffsetMs: 0, tags: undefined },
      { ev: pub('dev-1', 100, '{}'), wallOffsetMs: 3, tags: undefined },
      { ev: pub('dev-1', 10_100, '{}'), wallOffsetMs: 30, tags: undefined },
      { ev: pub('dev-1', 10_200, '{}', ['shutdown']), wallOffsetMs: 40, tags: ['shutdown'] },
    ];
    const byDevice = planReplay(entries, [parseRemap('dev-(.*)=lab-$1')], 'device');
    expect(byDevice.deviceIds).toEqual(['lab-1']);
    expect(byDevice.events.map((e) => e.at)).toEqual([100, 100, 10_100]);
    expect(byDevice.events.every((e) => e.deviceId === 'lab-1')).toBe(true);
    const byWall = planReplay(entries, [], 'wall');
    expect(byWall.events.map((e) => e.at)).toEqual([100, 103, 130]);
  });
});
