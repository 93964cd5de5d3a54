/**
 * The fault-injection library. Each fault names the shipped rule it is meant to
 * trip, so a scenario can assert that rule and nothing else. Physics faults bend
 * the model's causes (Effects); message faults change what reaches the wire.
 */
import { z } from 'zod';
import { FAULT_CODE_PATTERN, METRIC_NAME_PATTERN } from '../../src/contract/index.js';
import type { Effects, Family, RaisedCode } from '../models/types.js';
import type { Rng } from '../rng.js';
import { clamp, parseDuration, parseSignedDuration } from '../units.js';

export type FaultKind = 'physics' | 'message';

export interface FaultBehaviour {
  effects?(elapsedMs: number): Effects;
  /** Codes the fault raises itself (outside the model's firmware) between two instants, once each. */
  codes?(fromElapsedMs: number, toElapsedMs: number): RaisedCode[];
  /** Replaces one metric with a value hovering around a threshold. */
  hover?(elapsedMs: number, rng: Rng): { metric: string; value: number };
}

export interface FaultBuildContext {
  family: Family;
  rng: Rng;
}

export interface FaultDefinition {
  name: string;
  kind: FaultKind;
  families: readonly Family[];
  summary: string;
  /** What the telemetry shows, in rule terms. */
  signature: string;
  /** Shipped rules this fault is meant to trip. */
  rules: readonly string[];
  params: z.ZodObject;
  /** Message faults apply from the start by default; physics faults start early in the run. */
  defaultAt: 'start' | 'early';
  /** Episodic faults end by themselves; others last to the end of the run unless `for` is given. */
  defaultForMs?: number;
  build(params: Record<string, unknown>, ctx: FaultBuildContext): FaultBehaviour;
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});
const signedDuration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseSignedDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});
const rate = z.number().min(0).max(1);

/** Linear ramp from 0 to 1 over rampMs. */
function ramp(elapsedMs: number, rampMs: number): number {
  return rampMs <= 0 ? 1 : clamp(elapsedMs / rampMs, 0, 1);
}

/**
 * Spreads `count` episodes over `within`, jittered but in order, so "N times in a
 * window" rules see exactly N inside the window.
 */
function episodeStarts(count: number, withinMs: number, rng: Rng): number[] {
  const slot = withinMs / count;
  return Array.from({ length: count }, (_, i) => Math.round(slot * (i + 0.5 + rng.uniform(-0.3, 0.3))));
}

function inEpisode(elapsedMs: number, starts: number[], lengthMs: number): boolean {
  return starts.some((s) => elapsedMs >= s && elapsedMs < s + lengthMs);
}

const definitions: FaultDefinition[] = [
  {
    name: 'overheat',
    kind: 'physics',
    families: ['ac'],
    summary: 'compressor overheating: extra discharge heat ramps in while the unit is kept running',
    signature:
      'compressor_temp climbs past 95 °C and stays there (derated compressor_freq 50); P4 above 105 °C',
    rules: ['ac-compressor-overheat'],
    params: z.strictObject({
      peak: z.number().positive().default(45).describe('extra discharge heat at the end of the ramp, °C'),
      ramp: duration.default(20 * 60_000).describe('time to reach the peak'),
    }),
    defaultAt: 'early',
    build(p) {
      const { peak, ramp: rampMs } = p as { peak: number; ramp: number };
      return {
        effects: (t) => ({ forceRunning: true, highDemand: true, compressorHeat: peak * ramp(t, rampMs) }),
      };
    },
  },
  {
    name: 'refrigerant-leak',
    kind: 'physics',
    families: ['ac'],
    summary: 'slow refrigerant leak: charge drifts down over hours',
    signature:
      'at high load (owner turns it up, compressor >= 60 Hz) the 15-min average discharge_pressure drifts from ~25 bar to below 19 (about 40 % lower at the default end charge); compressor_temp creeps up; EC once charge < 50 %. ac-refrigerant-low gates on mode cool, so heat-mode units show the drop but do not trip it',
    rules: ['ac-refrigerant-low'],
    params: z.strictObject({
      to: z
        .number()
        .min(0)
        .max(1)
        .default(0.45)
        .describe('fraction of the charge left at the end of the drift'),
      over: duration.default(4 * 3_600_000).describe('time the drift takes'),
    }),
    defaultAt: 'early',
    build(p) {
      const { to, over } = p as { to: number; over: number };
      // The room stops getting cool, so the owner turns the unit up: high load is where the leak shows.
      return {
        effects: (t) => ({
          forceRunning: true,
          highDemand: true,
          refrigerantCharge: 1 - (1 - to) * ramp(t, over),
        }),
      };
    },
  },
  {
    name: 'fan-stall',
    kind: 'physics',
    families: ['ac'],
    summary: 'indoor fan motor stops while the unit is on',
    signature: 'fan_rpm 0 with mode cool/heat; E07 after 90 s, then compressor_freq 0 (protective stop)',
    rules: ['ac-fan-stall'],
    params: z.strictObject({}),
    defaultAt: 'early',
    build: () => ({ effects: () => ({ forceRunning: true, fanStall: true }) }),
  },
  {
    name: 'sensor-fault',
    kind: 'physics',
    families: ['ac'],
    summary: 'room temperature sensor open circuit',
    signature: 'room_temp reads -40; E01 once',
    rules: [],
    params: z.strictObject({}),
    defaultAt: 'early',
    build: () => ({ effects: () => ({ sensorFault: true }) }),
  },
  {
    name: 'comm-errors',
    kind: 'physics',
    families: ['ac'],
    summary: 'repeated indoor/outdoor communication drop-outs',
    signature:
      'E05 `times` times within `within`; outdoor metrics (outdoor_temp, compressor_*, discharge_pressure) missing during each 40-90 s episode',
    rules: ['ac-fault-e05-repeat'],
    params: z.strictObject({
      times: z.number().int().min(1).max(1000).default(3).describe('how many episodes'),
      within: duration.default(40 * 60_000),
    }),
    defaultAt: 'early',
    build(p, { rng }) {
      const { times, within } = p as { times: number; within: number };
      const starts = episodeStarts(times, within, rng);
      const length = rng.uniform(40_000, 90_000);
      return { effects: (t) => (inEpisode(t, starts, length) ? { commError: true } : {}) };
    },
  },
  {
    name: 'brush-jam',
    kind: 'physics',
    families: ['rv'],
    summary: 'hair winds round the main brush; the owner keeps restarting the robot',
    signature:
      'main_brush_current ramps from ~0.35 A to ~1.75 A; B02 after 60 s above 1.6 A, robot returns; repeats each restart',
    rules: ['rv-brush-overcurrent'],
    params: z.strictObject({ ramp: duration.default(15 * 60_000).describe('time to wind tight') }),
    defaultAt: 'early',
    build(p) {
      const { ramp: rampMs } = p as { ramp: number };
      return { effects: (t) => ({ forceRunning: true, brushJam: ramp(t, rampMs) }) };
    },
  },
  {
    name: 'battery-overheat',
    kind: 'physics',
    families: ['rv'],
    summary: 'battery cell defect heating the pack whatever the robot does',
    signature: 'battery_temp climbs past 60 °C (C03, safety), charging and cleaning stop; heat persists',
    rules: ['rv-battery-overheat'],
    params: z.strictObject({
      peak: z.number().positive().default(45).describe('extra battery heat at the end of the ramp, °C'),
      ramp: duration.default(30 * 60_000),
    }),
    defaultAt: 'early',
    build(p) {
      const { peak, ramp: rampMs } = p as { peak: number; ramp: number };
      return { effects: (t) => ({ batteryHeat: peak * ramp(t, rampMs) }) };
    },
  },
  {
    name: 'wheel-stuck',
    kind: 'physics',
    families: ['rv'],
    summary: 'a drive wheel gets stuck repeatedly (cable, rug fringe)',
    signature: 'wheel current spikes to ~1.2 A for 15 s, then W01; `times` episodes within `within`',
    rules: ['rv-wheel-stuck-repeat'],
    params: z.strictObject({
      times: z.number().int().min(1).max(1000).default(3).describe('how many episodes'),
      within: duration.default(25 * 60_000),
      side: z.enum(['left', 'right']).optional(),
    }),
    defaultAt: 'early',
    build(p, { rng }) {
      const { times, within } = p as { times: number; within: number; side?: 'left' | 'right' };
      const side = (p.side as 'left' | 'right' | undefined) ?? (rng.chance(0.5) ? 'left' : 'right');
      const starts = episodeStarts(times, within, rng);
      const length = 90_000;
      return {
        effects: (t) => {
          // Keep cleaning through the whole window so every episode happens off the dock.
          if (t > within + length) return {};
          return inEpisode(t, starts, length)
            ? { forceRunning: true, wheelStuck: side }
            : { forceRunning: true };
        },
      };
    },
  },
  {
    name: 'repeat-code',
    kind: 'physics',
    families: ['ac', 'rv'],
    summary: 'the firmware raises one fault code repeatedly without a physical cause',
    signature: '`code` on the faults topic `times` times within `within`',
    rules: ['ac-fault-e05-repeat', 'rv-wheel-stuck-repeat'],
    params: z.strictObject({
      code: z.string().regex(FAULT_CODE_PATTERN).optional().describe('default E05 (AC) or W01 (RV)'),
      times: z.number().int().min(1).max(1000).default(3).describe('how many episodes'),
      within: duration.default(30 * 60_000),
    }),
    defaultAt: 'early',
    build(p, { family, rng }) {
      const code = (p.code as string | undefined) ?? (family === 'ac' ? 'E05' : 'W01');
      const starts = episodeStarts(p.times as number, p.within as number, rng);
      return {
        codes: (from, to) =>
          starts.filter((s) => s >= from && s < to).map(() => ({ code, detail: 'injected repeat' })),
      };
    },
  },
  {
    name: 'flapping',
    kind: 'physics',
    families: ['ac', 'rv'],
    summary: 'a reading rises past a rule threshold, then hovers around it, crossing again and again',
    signature:
      '`metric` held at center + 1.5 × amplitude for `lead` (long enough for the rule to fire), then center ± amplitude with the given period: one incident, not a stream of them',
    rules: ['ac-compressor-overheat', 'rv-battery-overheat'],
    params: z.strictObject({
      metric: z
        .string()
        .regex(METRIC_NAME_PATTERN)
        .optional()
        .describe('default compressor_temp (AC) or battery_temp (RV)'),
      center: z
        .number()
        .optional()
        .describe('default 95 (AC compressor) or 55 (RV battery), the rule thresholds'),
      amplitude: z.number().nonnegative().default(3),
      period: duration.default(6 * 60_000),
      lead: duration.default(12 * 60_000).describe('time held above the band first; 0 hovers from the start'),
    }),
    defaultAt: 'early',
    build(p, { family }) {
      const metric =
        (p.metric as string | undefined) ?? (family === 'ac' ? 'compressor_temp' : 'battery_temp');
      const center = (p.center as number | undefined) ?? (family === 'ac' ? 95 : 55);
      const amplitude = p.amplitude as number;
      const period = Math.max(1, p.period as number);
      const lead = p.lead as number;
      return {
        effects: () => ({ forceRunning: true }),
        hover: (t, rng) => ({
          metric,
          value:
            (t < lead
              ? center + 1.5 * amplitude
              : center + amplitude * Math.sin((2 * Math.PI * (t - lead)) / period)) +
            rng.normal(0, amplitude / 10),
        }),
      };
    },
  },
  {
    name: 'silent',
    kind: 'message',
    families: ['ac', 'rv'],
    summary: 'firmware reporting task hangs: connected (keepalives flow) but no messages',
    signature: 'no telemetry or faults for `for`; seq resumes where it stopped',
    rules: ['device-silent'],
    params: z.strictObject({}),
    defaultAt: 'early',
    defaultForMs: 45 * 60_000,
    build: () => ({}),
  },
  {
    name: 'offline',
    kind: 'message',
    families: ['ac', 'rv'],
    summary: 'connection lost (no DISCONNECT, so the broker publishes the last will); samples buffered',
    signature:
      'status offline (will) then, on reconnect, status online and one {batch:[...]} per topic with the buffered items',
    rules: [],
    params: z.strictObject({}),
    defaultAt: 'early',
    defaultForMs: 20 * 60_000,
    build: () => ({}),
  },
  {
    name: 'duplicates',
    kind: 'message',
    families: ['ac', 'rv'],
    summary: 'redelivered messages: the same payload (same seq) sent twice',
    signature: 'a fraction `rate` of messages repeated 0.2-2 s later, byte-identical',
    rules: [],
    params: z.strictObject({ rate: rate.default(0.02) }),
    defaultAt: 'start',
    build: () => ({}),
  },
  {
    name: 'out-of-order',
    kind: 'message',
    families: ['ac', 'rv'],
    summary: 'a message overtaken by its successor',
    signature: 'a fraction `rate` of telemetry arrives after the next sample (seq and ts go backwards)',
    rules: [],
    params: z.strictObject({ rate: rate.default(0.02) }),
    defaultAt: 'start',
    build: () => ({}),
  },
  {
    name: 'clock-skew',
    kind: 'message',
    families: ['ac', 'rv'],
    summary: 'device clock off by a fixed offset, optionally drifting',
    signature: 'ts = true time + offset (+ driftPpm per million of elapsed time)',
    rules: [],
    params: z.strictObject({
      offset: signedDuration
        .default(10 * 60_000)
        .describe('e.g. +10m (beyond the bridge future-skew limit) or -2h'),
      driftPpm: z.number().default(0),
    }),
    defaultAt: 'start',
    build: () => ({}),
  },
  {
    name: 'malformed',
    kind: 'message',
    families: ['ac', 'rv'],
    summary: 'corrupt payloads: invalid JSON or schema violations',
    signature:
      'a fraction `rate` of messages replaced by one of: truncated JSON, trailing garbage, NaN literal, ts in seconds, bad metric name, negative seq, unknown field',
    rules: [],
    params: z.strictObject({ rate: rate.default(0.01) }),
    defaultAt: 'start',
    build: () => ({}),
  },
];

export const FAULTS: ReadonlyMap<string, FaultDefinition> = new Map(definitions.map((d) => [d.name, d]));

export function getFault(name: string): FaultDefinition {
  const def = FAULTS.get(name);
  if (!def) throw new Error(`unknown fault "${name}"; known faults: ${[...FAULTS.keys()].join(', ')}`);
  return def;
}

/** Parameters every fault takes: when it starts (offset from the run start) and how long it lasts. */
export const timingParams = z.strictObject({
  at: duration.optional(),
  for: duration.optional(),
});
