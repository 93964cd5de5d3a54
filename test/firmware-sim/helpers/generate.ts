/** Pure-layer helpers: generate a stream without a broker and pick it apart. */
import type { PublishEvent, SimEvent } from '../../../firmware-sim/fleet/events.js';
import {
  type DeviceSpec,
  expandFleet,
  type FleetFile,
  fleetFromFlags,
} from '../../../firmware-sim/fleet/spec.js';
import { FleetStream } from '../../../firmware-sim/fleet/stream.js';

export const START = Date.parse('2026-07-01T00:00:00Z');
export const MIN = 60_000;
export const HOUR = 3_600_000;

export interface GenOptions {
  devices?: number;
  model?: string;
  seed?: string;
  faults?: string[];
  hours?: number;
  startMs?: number;
  qos?: 0 | 1;
  maxBatchBytes?: number;
  fleet?: FleetFile;
}

export function generate(o: GenOptions = {}): { specs: DeviceSpec[]; events: SimEvent[] } {
  const fleet =
    o.fleet ??
    fleetFromFlags({
      devices: o.devices ?? 1,
      model: o.model ?? 'AC-9000',
      seed: o.seed ?? '1',
      faults: o.faults ?? [],
    });
  const durationMs = (o.hours ?? 1) * HOUR;
  const specs = expandFleet(fleet, { durationMs });
  const startMs = o.startMs ?? START;
  const stream = new FleetStream(specs, {
    seed: fleet.seed,
    startMs,
    endMs: startMs + durationMs,
    qos: o.qos ?? 1,
    ...(o.maxBatchBytes !== undefined ? { maxBatchBytes: o.maxBatchBytes } : {}),
  });
  return { specs, events: [...stream] };
}

export function publishes(events: SimEvent[], kind?: 'telemetry' | 'faults' | 'status', deviceId?: string) {
  return events.filter(
    (e): e is PublishEvent =>
      e.type === 'publish' &&
      (kind === undefined || e.topic.endsWith(`/${kind}`)) &&
      (deviceId === undefined || e.deviceId === deviceId),
  );
}

export interface Sample {
  at: number;
  ts: number;
  seq: number;
  metrics: Record<string, number | string | boolean>;
}

/** Single (non-batch, well-formed) telemetry samples of one device, in send order. */
export function samples(events: SimEvent[], deviceId?: string): Sample[] {
  return publishes(events, 'telemetry', deviceId)
    .filter((e) => !e.tags?.some((t) => t.startsWith('malformed') || t === 'batch' || t === 'duplicate'))
    .map((e) => {
      const p = JSON.parse(e.payload) as Omit<Sample, 'at'>;
      return { at: e.at, ...p };
    });
}

export function faultCodes(events: SimEvent[], deviceId?: string): Array<{ at: number; code: string }> {
  return publishes(events, 'faults', deviceId)
    .filter((e) => !e.tags?.some((t) => t.startsWith('malformed') || t === 'duplicate'))
    .flatMap((e) => {
      const p = JSON.parse(e.payload) as { code?: string; batch?: Array<{ code: string; ts: number }> };
      return p.batch ? p.batch.map((b) => ({ at: b.ts, code: b.code })) : [{ at: e.at, code: p.code! }];
    });
}

export function num(s: Sample, metric: string): number {
  const v = s.metrics[metric];
  if (typeof v !== 'number') throw new Error(`${metric} is ${typeof v}, not a number`);
  return v;
}

/** Longest stretch (device ms) over which `holds` is true for consecutive samples. */
export function longestRun(list: Sample[], holds: (s: Sample) => boolean): number {
  let best = 0;
  let since: number | undefined;
  for (const s of list) {
    if (holds(s)) {
      since ??= s.at;
      best = Math.max(best, s.at - since);
    } else {
      since = undefined;
    }
  }
  return best;
}

/** Largest number of events whose times fit in any window of `windowMs`. */
export function maxInWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi]! - sorted[lo]! > windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

export function mean(values: number[]): number {
  if (values.length === 0) throw new Error('mean of nothing');
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Math.max without spreading (large arrays overflow the argument stack). */
export function max(values: number[]): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of values) if (v > m) m = v;
  return m;
}
