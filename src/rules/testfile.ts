/**
 * Rule unit tests in YAML (`*.test.yaml` beside the rules), in the spirit of
 * `promtool test rules`: input series in a compact notation, faults at times,
 * optional offline periods (delivered late as one batch), and the events
 * expected by given times. Runs on replayHistory, so timers fire as in production.
 */
import { dirname, isAbsolute, join } from 'node:path';
import { z } from 'zod';
import type { MetricValue } from '../contract/index.js';
import { DURATION_HINT, DURATION_PATTERN, formatDuration, parseDuration } from './duration.js';
import type { ReplayItem } from './replay.js';
import type { EngineDevice, RuleEvent } from './types.js';

const duration = z
  .string()
  .regex(DURATION_PATTERN, { error: (iss) => `bad duration "${String(iss.input)}": ${DURATION_HINT}` });

const expectedEvent = z.union([
  z.string().min(1),
  z.strictObject({
    rule: z.string().min(1),
    severity: z.string().optional(),
    stale: z.boolean().optional(),
    late: z.boolean().optional(),
    value: z.union([z.number(), z.string(), z.boolean()]).optional(),
    occurrences: z.number().int().optional(),
    reason: z.string().optional(),
    code: z.string().optional(),
    title: z.string().optional(),
    safety: z.boolean().optional(),
    flapCount: z.number().int().optional(),
  }),
]);
export type ExpectedEvent = z.infer<typeof expectedEvent>;

const expectation = z.strictObject({
  at: duration.describe('Checks events with device time after the previous expectation and up to this'),
  fired: z.array(expectedEvent).optional(),
  updated: z.array(expectedEvent).optional(),
  resolved: z.array(expectedEvent).optional(),
  firing: z.array(z.string()).optional().describe('Rules with an open incident at this time (exact set)'),
});

const testCase = z.strictObject({
  name: z.string().min(1),
  device: z.strictObject({
    id: z.string().min(1).optional(),
    model: z.string().min(1),
    firmware: z.string().nullable().optional(),
    region: z.string().nullable().optional(),
    batch: z.string().nullable().optional(),
    ownerId: z.string().nullable().optional(),
    registeredAt: duration.optional().describe('Registration time, relative to start'),
  }),
  interval: duration.optional().describe('Time between series samples (default 10s)'),
  series: z
    .record(z.string(), z.string())
    .optional()
    .describe(
      'metric: "80 85 90 96x60 _x3 85" (promtool notation: axN is N+1 values, a+bxN ramps, _ missing)',
    ),
  faults: z
    .array(
      z.strictObject({
        at: duration,
        code: z.string().min(1),
        times: z.number().int().min(1).max(10_000).optional(),
        every: duration.optional(),
      }),
    )
    .optional(),
  offline: z
    .array(z.strictObject({ from: duration, to: duration }))
    .optional()
    .describe('Messages with device time in [from, to) are held and arrive as one batch at `to`'),
  until: duration.optional().describe('Run timers up to here (default: the last expectation)'),
  rules: z.array(z.string()).optional().describe('Only these rules count (default: every rule loaded)'),
  staleAfter: duration.optional(),
  expect: z.array(expectation).min(1),
});
export type TestCase = z.infer<typeof testCase>;

export const ruleTestFileSchema = z.strictObject({
  apiVersion: z.literal('faultline/v1'),
  rules: z
    .array(z.string().min(1))
    .optional()
    .describe('Rule files, relative to this file (default: <name>.yaml)'),
  start: z.string().datetime().optional().describe('Time 0 of every test (default 2025-01-01T00:00:00Z)'),
  tests: z.array(testCase).min(1),
});
export type RuleTestFile = z.infer<typeof ruleTestFileSchema>;

export const DEFAULT_TEST_START = Date.UTC(2025, 0, 1);

/** Expands promtool-style series notation into values; undefined marks a missing sample. */
export function expandSeries(text: string): Array<MetricValue | undefined> {
  const out: Array<MetricValue | undefined> = [];
  for (const token of text.trim().split(/\s+/)) {
    if (token === '') continue;
    const rep = /^(.*?)x(\d+)$/.exec(token);
    const base = rep ? (rep[1] as string) : token;
    const n = rep ? Number(rep[2]) : 0;
    if (base === '_') {
      // promtool: "_x3" is three missing samples, while "1x3" is four values.
      const count = rep ? n : 1;
      for (let i = 0; i < count; i++) out.push(undefined);
      continue;
    }
    const numeric = /^([+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?)([+-]\d+(?:\.\d+)?)?$/i.exec(base);
    if (numeric) {
      const a = Number(numeric[1]);
      const b = numeric[2] === undefined ? 0 : Number(numeric[2]);
      if (numeric[2] !== undefined && !rep)
        throw new Error(`"${token}": an increment needs a count, e.g. ${base}x10`);
      for (let i = 0; i <= n; i++) out.push(Math.round((a + i * b) * 1e9) / 1e9);
      continue;
    }
    let value: MetricValue;
    if (base === 'true' || base === 'false') value = base === 'true';
    else if (/^'.*'$|^".*"$/.test(base)) value = base.slice(1, -1);
    else if (/^[A-Za-z][A-Za-z0-9_.-]*$/.test(base)) value = base;
    else throw new Error(`cannot read "${token}" in series "${text}"`);
    for (let i = 0; i <= n; i++) out.push(value);
  }
  return out;
}

export interface BuiltCase {
  device: EngineDevice;
  items: ReplayItem[];
  until: number;
  start: number;
}

/** Turns a test case into the replay input: one telemetry sample per interval, faults, offline batches. */
export function buildCase(tc: TestCase, start: number): BuiltCase {
  const rel = (d: string) => start + parseDuration(d);
  const device: EngineDevice = {
    id: tc.device.id ?? 'dev-1',
    model: tc.device.model,
    firmware: tc.device.firmware ?? null,
    region: tc.device.region ?? null,
    batch: tc.device.batch ?? null,
    ownerId: tc.device.ownerId ?? null,
    ownerLocale: null,
    registeredAt: rel(tc.device.registeredAt ?? '0'),
  };
  const interval = parseDuration(tc.interval ?? '10s');
  if (interval <= 0) throw new Error('interval must be longer than 0');
  const series = Object.entries(tc.series ?? {}).map(([m, text]) => {
    try {
      return [m, expandSeries(text)] as const;
    } catch (err) {
      throw new Error(`series ${m}: ${(err as Error).message}`);
    }
  });
  const length = Math.max(0, ...series.map(([, v]) => v.length));
  const offline = (tc.offline ?? []).map((o) => ({ from: rel(o.from), to: rel(o.to) }));
  const arrival = (ts: number) => {
    for (const o of offline) if (ts >= o.from && ts < o.to) return o.to;
    return ts;
  };
  const items: ReplayItem[] = [];
  for (let i = 0; i < length; i++) {
    const metrics: Record<string, MetricValue> = {};
    for (const [m, values] of series) {
      const v = values[i];
      if (v !== undefined) metrics[m] = v;
    }
    if (Object.keys(metrics).length === 0) continue;
    const ts = start + i * interval;
    items.push({ deviceId: device.id, ts, metrics, receivedAt: arrival(ts) });
  }
  for (const f of tc.faults ?? []) {
    const times = f.times ?? 1;
    const every = f.every ? parseDuration(f.every) : interval;
    for (let k = 0; k < times; k++) {
      const ts = rel(f.at) + k * every;
      items.push({ deviceId: device.id, ts, code: f.code, receivedAt: arrival(ts) });
    }
  }
  // In arrival order. A held-back period arrives first as one telemetry batch, then one
  // fault batch (as a reconnecting device uploads its buffers), then live traffic resumes.
  const key = (it: ReplayItem) => {
    const arrived = it.receivedAt ?? it.ts;
    return [arrived, arrived === it.ts ? 1 : 0, 'code' in it ? 1 : 0, it.ts] as const;
  };
  items.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return (ka[i] as number) - (kb[i] as number);
    return 0;
  });
  // Live items keep receivedAt = ts, which replay reads as "no explicit arrival".
  for (const it of items) if (it.receivedAt === it.ts) delete it.receivedAt;
  const lastAt = Math.max(...tc.expect.map((e) => rel(e.at)));
  return { device, items, until: tc.until ? rel(tc.until) : lastAt, start };
}

export function resolveRuleFiles(testFile: string, file: RuleTestFile): string[] {
  const dir = dirname(testFile);
  if (file.rules && file.rules.length > 0) return file.rules.map((r) => (isAbsolute(r) ? r : join(dir, r)));
  return [testFile.replace(/\.test\.ya?ml$/, '.yaml')];
}

export interface CaseMismatch {
  /** Index of the expectation in the case. */
  expectation: number;
  lines: string[];
}

function describeEvent(e: RuleEvent, start: number): string {
  const extra = [
    `severity=${e.severity}`,
    e.value === null
      ? null
      : `value=${typeof e.value === 'number' ? Math.round(e.value * 100) / 100 : String(e.value)}`,
    e.occurrences === null ? null : `occurrences=${e.occurrences}`,
    e.code ? `code=${e.code}` : null,
    'reason' in e ? `reason=${e.reason}` : null,
    e.late ? 'late' : null,
    e.stale ? 'stale' : null,
  ].filter(Boolean);
  return `${formatDuration(e.deviceTime - start)} ${e.type} ${e.ruleId} (${extra.join(', ')})`;
}

function matches(e: RuleEvent, want: ExpectedEvent): boolean {
  if (typeof want === 'string') return e.ruleId === want;
  if (e.ruleId !== want.rule) return false;
  for (const [k, v] of Object.entries(want)) {
    if (k === 'rule' || v === undefined) continue;
    const got = (e as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number' && typeof got === 'number') {
      if (Math.abs(v - got) > 1e-6 * Math.max(1, Math.abs(v))) return false;
    } else if (got !== v) return false;
  }
  return true;
}

function show(want: ExpectedEvent): string {
  if (typeof want === 'string') return want;
  return `{${Object.entries(want)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(', ')}}`;
}

/** Compares events with the expectations; every kind an expectation does not list must not occur. */
export function compareExpectations(tc: TestCase, events: RuleEvent[], start: number): CaseMismatch[] {
  const only = tc.rules ? new Set(tc.rules) : null;
  const relevant = events.filter((e) => only === null || only.has(e.ruleId));
  const out: CaseMismatch[] = [];
  let prev = Number.NEGATIVE_INFINITY;
  tc.expect.forEach((exp, idx) => {
    const at = start + parseDuration(exp.at);
    const windowEvents = relevant.filter((e) => e.deviceTime > prev && e.deviceTime <= at);
    const lines: string[] = [];
    for (const kind of ['fired', 'updated', 'resolved'] as const) {
      const wanted = exp[kind] ?? [];
      const got = windowEvents.filter((e) => e.type === `rule.${kind}`);
      const unmatched = [...got];
      const missing: ExpectedEvent[] = [];
      for (const w of wanted) {
        const k = unmatched.findIndex((e) => matches(e, w));
        if (k >= 0) unmatched.splice(k, 1);
        else missing.push(w);
      }
      if (missing.length > 0 || unmatched.length > 0) {
        lines.push(`${kind}: expected [${wanted.map(show).join(', ')}]`);
        lines.push(
          `${' '.repeat(kind.length)}  got      [${got.map((e) => describeEvent(e, start)).join('; ')}]`,
        );
      }
    }
    if (exp.firing) {
      const open = new Map<string, string>();
      for (const e of relevant) {
        if (e.deviceTime > at) continue;
        if (e.type === 'rule.fired') open.set(e.incidentId, e.ruleId);
        else if (e.type === 'rule.resolved') open.delete(e.incidentId);
      }
      const got = [...open.values()].sort();
      const want = [...exp.firing].sort();
      if (got.join(',') !== want.join(',')) {
        lines.push(`firing: expected [${want.join(', ')}]`);
        lines.push(`        got      [${got.join(', ')}]`);
      }
    }
    if (lines.length > 0) {
      const window = Number.isFinite(prev) ? `after ${formatDuration(prev - start)}, ` : '';
      out.push({
        expectation: idx,
        lines: [`at ${exp.at} (${window}up to ${exp.at}):`, ...lines.map((l) => `  ${l}`)],
      });
    }
    prev = at;
  });
  return out;
}

export function describeEvents(events: RuleEvent[], start: number): string[] {
  return events.map((e) => describeEvent(e, start));
}
