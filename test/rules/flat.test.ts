/**
 * Rules of the form "metric op number" with nothing else are decided on a fast
 * path while idle (engine Group.flat). Each is run here beside a twin wrapped in
 * `all: [...]`, which takes the general path, on a seeded random stream with
 * late samples, gaps, strings where numbers belong, flapping and clears: both
 * must emit the same events at the same device times, and count the same
 * evaluations.
 */
import { describe, expect, it } from 'vitest';
import type { MetricValue } from '../../src/contract/index.js';
import type { RuleEvent } from '../../src/rules/types.js';
import { device, Harness, MIN, rules, SEC, T0 } from './harness.js';

const OPS = ['>', '>=', '<', '<='] as const;

function pair(n: number, op: (typeof OPS)[number], value: number, extra: string): string {
  const cond = `{ metric: temp, op: "${op}", value: ${value} }`;
  return (
    `  - id: flat-${n}\n    title: t\n    severity: minor\n    scope: { models: "AC-*" }\n` +
    `    when: { threshold: ${cond} }\n${extra}` +
    `  - id: twin-${n}\n    title: t\n    severity: minor\n    scope: { models: "AC-*" }\n` +
    `    when: { all: [ { threshold: ${cond} } ] }\n${extra}`
  );
}

/** mulberry32: a small seeded generator, so a failure replays. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const strip = (e: RuleEvent) => {
  // The twins differ in rule text, so in version and in what is derived from id or version.
  const { ruleId, ruleVersion, incidentId, fingerprint, ...rest } = e as RuleEvent & {
    incidentId?: string;
    fingerprint?: string;
  };
  return { rule: ruleId.replace(/^(flat|twin)-/, ''), ...rest };
};

describe('flat threshold rules beside their general-path twins', () => {
  it.each([1, 2, 3, 4, 5])('seed %i: same events, same times, same evaluation counts', (seed) => {
    const extras = [
      '',
      '    for: 2m\n',
      '    for: 1m\n    clear: { when: { threshold: { metric: temp, op: "<", value: 40 } }, for: 30s }\n',
      '    for: 30s\n    flapping: { transitions: 3, within: 10m }\n',
    ];
    let body = '';
    let n = 0;
    for (const op of OPS) for (const extra of extras) body += pair(n++, op, 50 + (n % 3) * 5, extra);
    const list = rules(body);
    const h = new Harness(list);
    const random = rng(seed);
    const devices = [device('ac-1'), device('ac-2'), device('ac-3')];
    let ts = T0;
    for (let k = 0; k < 1_500; k++) {
      const dev = devices[Math.floor(random() * devices.length)]!;
      ts += Math.floor(random() * 20 * SEC);
      if (random() < 0.01) ts += 30 * MIN; // a gap longer than maxGap
      const r = random();
      const temp: MetricValue = r < 0.01 ? 'hot' : Math.round(30 + 40 * random() + (k % 200 > 120 ? 20 : 0));
      const late = random() < 0.05 ? 3 * MIN : 0;
      const metrics: Record<string, MetricValue> = random() < 0.1 ? { temp, other: 1 } : { temp };
      h.telemetry(dev, ts - late, metrics, ts);
    }
    h.advance(ts + 2 * 3_600_000);
    const flat = h.events.filter((e) => e.ruleId.startsWith('flat-')).map(strip);
    const twin = h.events.filter((e) => e.ruleId.startsWith('twin-')).map(strip);
    expect(flat.length).toBeGreaterThan(20);
    expect(flat).toEqual(twin);
    const stats = new Map(h.engine.describeRules().map((d) => [d.id, d]));
    for (let i = 0; i < n; i++) {
      expect(stats.get(`flat-${i}`)?.evaluations).toBe(stats.get(`twin-${i}`)?.evaluations);
      expect(stats.get(`flat-${i}`)?.errors).toBe(stats.get(`twin-${i}`)?.errors);
    }
  });
});
