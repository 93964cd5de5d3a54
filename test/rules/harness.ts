/** Drives a RuleEngine on a virtual clock for tests: no wall clock, no sleeping. */
import type { MetricValue } from '../../src/contract/index.js';
import type { LoadedRule } from '../../src/rules/compile.js';
import { RuleEngine, type RuleEngineOptions } from '../../src/rules/engine.js';
import { loadRuleText } from '../../src/rules/loader.js';
import type { EngineDevice, RuleEvent, RuleObserver } from '../../src/rules/types.js';

export const T0 = Date.UTC(2025, 0, 1, 9, 0, 0);
export const SEC = 1_000;
export const MIN = 60_000;
export const HOUR = 3_600_000;

/** Loads a rules list (YAML under `rules:`); fails the test on any load error. */
export function rules(body: string, file = 'test.yaml'): LoadedRule[] {
  const text = `apiVersion: faultline/v1\nrules:\n${body}`;
  const r = loadRuleText(text, file, { catalogueChecks: false });
  if (r.errors.length > 0)
    throw new Error(r.errors.map((e) => `${e.line}:${e.col}: ${e.message}`).join('\n'));
  return r.rules;
}

export function device(id: string, model = 'AC-9000', extra: Partial<EngineDevice> = {}): EngineDevice {
  return {
    id,
    model,
    firmware: '3.2.1',
    region: 'eu',
    batch: null,
    ownerId: `owner-${id}`,
    ownerLocale: 'en',
    ...extra,
  };
}

export interface HarnessOptions extends Partial<Omit<RuleEngineOptions, 'rules' | 'now' | 'emit'>> {
  start?: number;
}

export class Harness {
  now: number;
  readonly events: RuleEvent[] = [];
  readonly engine: RuleEngine;
  private seq = 0;

  constructor(ruleList: LoadedRule[], opts: HarnessOptions = {}) {
    this.now = opts.start ?? T0;
    this.engine = new RuleEngine({
      ...opts,
      rules: ruleList,
      now: () => this.now,
      emit: (e) => this.events.push(e),
    });
  }

  /** Moves the server clock to t, ticking at every deadline on the way (as a precise integrator would). */
  advance(t: number): void {
    for (let d = this.engine.nextDeadline(); d !== null && d <= t; d = this.engine.nextDeadline()) {
      this.now = Math.max(this.now, d);
      this.engine.tick(this.now);
    }
    this.now = Math.max(this.now, t);
    this.engine.tick(this.now);
  }

  telemetry(dev: EngineDevice, ts: number, metrics: Record<string, MetricValue>, receivedAt = ts): void {
    this.advance(receivedAt);
    this.engine.ingestTelemetry(dev, [{ ts, seq: this.seq++, metrics }], receivedAt);
  }

  batch(
    dev: EngineDevice,
    samples: Array<{ ts: number; metrics: Record<string, MetricValue> }>,
    receivedAt: number,
  ): void {
    this.advance(receivedAt);
    this.engine.ingestTelemetry(
      dev,
      samples.map((s) => ({ ...s, seq: this.seq++ })),
      receivedAt,
    );
  }

  fault(dev: EngineDevice, ts: number, code: string, receivedAt = ts): void {
    this.advance(receivedAt);
    this.engine.ingestFaults(dev, [{ ts, seq: this.seq++, code }], receivedAt);
  }

  /** One sample every `step` from `from` for `count` samples, metrics from fn(i, ts). */
  series(
    dev: EngineDevice,
    from: number,
    step: number,
    count: number,
    fn: (i: number, ts: number) => Record<string, MetricValue>,
    offset = 0,
  ): void {
    for (let i = 0; i < count; i++) {
      const ts = from + i * step;
      this.telemetry(dev, ts, fn(i, ts), ts + offset);
    }
  }

  of(type: RuleEvent['type'], ruleId?: string): RuleEvent[] {
    return this.events.filter((e) => e.type === type && (ruleId === undefined || e.ruleId === ruleId));
  }

  /** Compact "type rule @ minutes-from-T0" lines, for order-sensitive assertions. */
  timeline(start = T0): string[] {
    return this.events.map((e) => `${e.type} ${e.ruleId} @${(e.deviceTime - start) / MIN}m`);
  }
}

export function countingObserver(): RuleObserver & {
  evaluations: Map<string, number>;
  errors: Array<[string, unknown]>;
  fires: string[];
} {
  const evaluations = new Map<string, number>();
  const errors: Array<[string, unknown]> = [];
  const fires: string[] = [];
  return {
    evaluations,
    errors,
    fires,
    evaluated: (id) => evaluations.set(id, (evaluations.get(id) ?? 0) + 1),
    fired: (id) => fires.push(id),
    error: (id, err) => errors.push([id, err]),
  };
}
