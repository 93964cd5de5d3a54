/**
 * Turns a validated rule (schema.ts) into the evaluable form the engine runs:
 * condition trees of nodes that answer true / false / unknown at a device time and
 * say when their answer could next change without new data (the engine's timers),
 * resolved parameters, compiled templates and the version hash.
 */
import { createHash } from 'node:crypto';
import picomatch from 'picomatch';
import semver from 'semver';
import type { MetricValue } from '../contract/index.js';
import { DURATION_PATTERN, parseDuration } from './duration.js';
import {
  type AggregateFn,
  type Category,
  type Comparison,
  type ConditionInput,
  PARAM_REF_PATTERN,
  type RuleInput,
  type Severity,
} from './schema.js';
import { type CompiledTemplate, compileTemplate } from './template.js';
import type { RuleActions } from './types.js';

export class RuleRuntimeError extends Error {
  override name = 'RuleRuntimeError';
}

/** true / false / unknown (null): unknown data never counts as false or true. */
export type Truth = boolean | null;

export interface ParamSet {
  values: Record<string, MetricValue>;
  /** Parameters whose value is a duration string, parsed. */
  durMs: Record<string, number>;
}

/** Bucketed window of one (metric, fn, window, step, where) per device. */
export interface WindowData {
  /** Newest bucket index (floor(ts / step)). */
  k: number;
  /** B buckets of F fields, ring-indexed by k mod B. */
  a: number[];
  /** rate: last sample in the window (ts, value) */
  lt: number;
  lv: number;
}

export interface WindowSpec {
  sig: string;
  metric: string;
  fn: AggregateFn;
  windowMs: number;
  stepMs: number;
  buckets: number;
  fields: number;
  where: { metric: string; op: Comparison; value: MetricValue } | null;
}

/** What a leaf needs from the engine to evaluate one (rule, device) at time t. */
export interface EvalCtx {
  t: number;
  vals: Array<MetricValue | undefined>;
  /** Sparse: a slot never written is undefined. */
  vts: Array<number | undefined>;
  /** leafIndex -> device metric slot (-1: the device's group has no such metric) */
  slots: readonly number[];
  /** leafIndex -> device window slot */
  wslots: readonly number[];
  wins: Array<WindowData | undefined>;
  params: ParamSet;
  maxGap: number;
  /** Device time from which "no message" silence counts. */
  absRef: number;
  /**
   * A value going stale matters only while a timer it can interrupt runs (pending,
   * clearing); otherwise unknown changes nothing, and scheduling it would wake every
   * quiet device for nothing.
   */
  wantExpiry: boolean;
  /** Device time from which a metric that never reported counts as silent. */
  since: number;
  /** Leaf states of the rule state (held-since, fault occurrences, metric-absence refs). */
  ls: Array<number | number[] | null> | null;
  ensureLs(): Array<number | number[] | null>;
}

export type ValueRef = { param: string } | { value: MetricValue };
export type DurRef = number | { param: string };

export function resolveValue(ref: ValueRef, p: ParamSet): MetricValue {
  return 'param' in ref ? (p.values[ref.param] as MetricValue) : ref.value;
}

export function resolveDuration(ref: DurRef, p: ParamSet): number {
  return typeof ref === 'number' ? ref : (p.durMs[ref.param] ?? 0);
}

function typeName(v: unknown): string {
  return v === null || v === undefined ? 'missing' : typeof v;
}

export function compare(metric: string, a: MetricValue, op: Comparison, b: MetricValue): boolean {
  switch (op) {
    case '==':
      return a === b;
    case '!=':
      return a !== b;
  }
  if (typeof a !== 'number' || typeof b !== 'number') {
    throw new RuleRuntimeError(
      `${metric} ${op} ${JSON.stringify(b)}: "${op}" needs numbers, got ${typeName(a)} ${JSON.stringify(a)}`,
    );
  }
  switch (op) {
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    case '<':
      return a < b;
    default:
      return a <= b;
  }
}

export abstract class CNode {
  abstract eval(c: EvalCtx): Truth;
  /** Earliest device time after c.t at which eval could change with no new data; Infinity if never. */
  abstract next(c: EvalCtx): number;
}

export class AllNode extends CNode {
  constructor(readonly kids: CNode[]) {
    super();
  }
  eval(c: EvalCtx): Truth {
    let unknown = false;
    // Every child is evaluated (no short circuit) so stateful leaves track time consistently.
    let out: Truth = true;
    for (const k of this.kids) {
      const v = k.eval(c);
      if (v === false) out = false;
      else if (v === null) unknown = true;
    }
    return out === false ? false : unknown ? null : true;
  }
  next(c: EvalCtx): number {
    let d = Number.POSITIVE_INFINITY;
    for (const k of this.kids) d = Math.min(d, k.next(c));
    return d;
  }
}

export class AnyNode extends CNode {
  constructor(readonly kids: CNode[]) {
    super();
  }
  eval(c: EvalCtx): Truth {
    let unknown = false;
    let out: Truth = false;
    for (const k of this.kids) {
      const v = k.eval(c);
      if (v === true) out = true;
      else if (v === null) unknown = true;
    }
    return out === true ? true : unknown ? null : false;
  }
  next(c: EvalCtx): number {
    let d = Number.POSITIVE_INFINITY;
    for (const k of this.kids) d = Math.min(d, k.next(c));
    return d;
  }
}

export class NotNode extends CNode {
  constructor(readonly kid: CNode) {
    super();
  }
  eval(c: EvalCtx): Truth {
    const v = this.kid.eval(c);
    return v === null ? null : !v;
  }
  next(c: EvalCtx): number {
    return this.kid.next(c);
  }
}

export abstract class Leaf extends CNode {
  /** Index among the rule's leaves; keys the per-group metric and window slot tables. */
  leafIndex = -1;
  /** Index into the rule state's leaf states, or -1 for stateless leaves. */
  stateSlot = -1;
  /** Path of the condition in the rule, for check messages. */
  path: Array<string | number> = [];
  abstract readonly kind: 'threshold' | 'aggregate' | 'faults' | 'absent';
  abstract readonly metric: string | null;
  /** The leaf's current value, for events and templates. */
  abstract value(c: EvalCtx): MetricValue | null;
  /** What it compares with, for events. */
  abstract threshold(p: ParamSet): MetricValue | null;
}

export class ThresholdLeaf extends Leaf {
  readonly kind = 'threshold';
  constructor(
    readonly metric: string,
    readonly op: Comparison,
    readonly ref: ValueRef,
    readonly holdFor: DurRef | null,
  ) {
    super();
  }
  private raw(c: EvalCtx): Truth {
    const slot = c.slots[this.leafIndex] ?? -1;
    if (slot < 0) return null;
    const ts = c.vts[slot] ?? Number.NaN;
    // NaN (never reported) fails the comparison too, which is what we want.
    if (!(c.t - ts <= c.maxGap)) return null;
    return compare(this.metric, c.vals[slot] as MetricValue, this.op, resolveValue(this.ref, c.params));
  }
  eval(c: EvalCtx): Truth {
    const raw = this.raw(c);
    if (this.holdFor === null) return raw;
    const ls = c.ls;
    if (raw !== true) {
      if (ls && typeof ls[this.stateSlot] === 'number') ls[this.stateSlot] = null;
      return raw;
    }
    let held = ls?.[this.stateSlot];
    if (typeof held !== 'number') {
      held = c.t;
      c.ensureLs()[this.stateSlot] = held;
    }
    return c.t - held >= resolveDuration(this.holdFor, c.params);
  }
  next(c: EvalCtx): number {
    let d = Number.POSITIVE_INFINITY;
    const slot = c.slots[this.leafIndex] ?? -1;
    // A leaf holding its own for-timer needs the gap noticed even while the rule is idle.
    const holding = this.holdFor !== null && typeof c.ls?.[this.stateSlot] === 'number';
    if (slot >= 0 && (c.wantExpiry || holding)) {
      const expiry = (c.vts[slot] ?? Number.NaN) + c.maxGap + 1;
      if (expiry > c.t) d = expiry;
    }
    if (this.holdFor !== null) {
      const held = c.ls?.[this.stateSlot];
      if (typeof held === 'number') {
        const due = held + resolveDuration(this.holdFor, c.params);
        if (due > c.t) d = Math.min(d, due);
      }
    }
    return d;
  }
  value(c: EvalCtx): MetricValue | null {
    const slot = c.slots[this.leafIndex] ?? -1;
    return slot >= 0 ? (c.vals[slot] ?? null) : null;
  }
  threshold(p: ParamSet): MetricValue | null {
    return resolveValue(this.ref, p);
  }
}

const FIELDS: Record<AggregateFn, number> = { avg: 2, count: 1, min: 2, max: 2, rate: 3 };

export function windowInsert(spec: WindowSpec, w: WindowData, ts: number, v: number): void {
  const B = spec.buckets;
  const F = spec.fields;
  const k = Math.floor(ts / spec.stepMs);
  if (k > w.k) {
    const from = Math.max(w.k + 1, k - B + 1);
    for (let j = from; j <= k; j++) {
      const i = (j % B) * F;
      for (let f = 0; f < F; f++) w.a[i + f] = 0;
    }
    w.k = k;
  } else if (k <= w.k - B) {
    return; // older than anything the window still covers
  }
  const i = (k % B) * F;
  const n = (w.a[i] as number) + 1;
  w.a[i] = n;
  switch (spec.fn) {
    case 'avg':
      w.a[i + 1] = (w.a[i + 1] as number) + v;
      break;
    case 'min':
      w.a[i + 1] = n === 1 ? v : Math.min(w.a[i + 1] as number, v);
      break;
    case 'max':
      w.a[i + 1] = n === 1 ? v : Math.max(w.a[i + 1] as number, v);
      break;
    case 'rate':
      if (n === 1 || ts < (w.a[i + 1] as number)) {
        w.a[i + 1] = ts;
        w.a[i + 2] = v;
      }
      if (!(ts < w.lt)) {
        w.lt = ts;
        w.lv = v;
      }
      break;
    case 'count':
      break;
  }
}

export function newWindow(spec: WindowSpec): WindowData {
  return {
    k: Number.NEGATIVE_INFINITY,
    a: new Array<number>(spec.buckets * spec.fields).fill(0),
    lt: Number.NaN,
    lv: 0,
  };
}

/** Aggregate over the buckets that overlap (t - window, t]; null when unknown. */
export function windowAggregate(
  spec: WindowSpec,
  w: WindowData | undefined,
  t: number,
  minSamples: number,
): { value: number | null; samples: number } {
  if (!w || w.k === Number.NEGATIVE_INFINITY) return { value: spec.fn === 'count' ? 0 : null, samples: 0 };
  const B = spec.buckets;
  const F = spec.fields;
  const kc = Math.floor(t / spec.stepMs);
  const lo = Math.max(kc - B + 1, w.k - B + 1);
  const hi = Math.min(kc, w.k);
  let n = 0;
  let acc = spec.fn === 'min' ? Number.POSITIVE_INFINITY : spec.fn === 'max' ? Number.NEGATIVE_INFINITY : 0;
  let firstTs = Number.NaN;
  let firstV = 0;
  for (let k = lo; k <= hi; k++) {
    const i = (k % B) * F;
    const c = w.a[i] as number;
    if (c === 0) continue;
    n += c;
    if (spec.fn === 'avg') acc += w.a[i + 1] as number;
    else if (spec.fn === 'min') acc = Math.min(acc, w.a[i + 1] as number);
    else if (spec.fn === 'max') acc = Math.max(acc, w.a[i + 1] as number);
    else if (spec.fn === 'rate' && Number.isNaN(firstTs)) {
      firstTs = w.a[i + 1] as number;
      firstV = w.a[i + 2] as number;
    }
  }
  if (spec.fn === 'count') return { value: n, samples: n };
  if (n < minSamples || n === 0) return { value: null, samples: n };
  if (spec.fn === 'avg') return { value: acc / n, samples: n };
  if (spec.fn === 'rate') {
    const dt = w.lt - firstTs;
    if (!(dt > 0)) return { value: null, samples: n };
    return { value: ((w.lv - firstV) / dt) * 60_000, samples: n };
  }
  return { value: acc, samples: n };
}

function windowNext(spec: WindowSpec, w: WindowData | undefined, t: number): number {
  if (!w || w.k === Number.NEGATIVE_INFINITY) return Number.POSITIVE_INFINITY;
  const B = spec.buckets;
  const kc = Math.floor(t / spec.stepMs);
  const lo = Math.max(kc - B + 1, w.k - B + 1);
  const hi = Math.min(kc, w.k);
  for (let k = lo; k <= hi; k++) {
    if ((w.a[(k % B) * spec.fields] as number) > 0) return (k + B) * spec.stepMs;
  }
  return Number.POSITIVE_INFINITY;
}

export class AggregateLeaf extends Leaf {
  readonly kind = 'aggregate';
  constructor(
    readonly metric: string,
    readonly spec: WindowSpec,
    readonly minSamples: number,
    readonly op: Comparison,
    readonly ref: ValueRef,
  ) {
    super();
  }
  private agg(c: EvalCtx): { value: number | null; samples: number } {
    const slot = c.wslots[this.leafIndex] ?? -1;
    return windowAggregate(this.spec, slot >= 0 ? c.wins[slot] : undefined, c.t, this.minSamples);
  }
  eval(c: EvalCtx): Truth {
    const { value } = this.agg(c);
    if (value === null) return null;
    return compare(`${this.spec.fn}(${this.metric})`, value, this.op, resolveValue(this.ref, c.params));
  }
  next(c: EvalCtx): number {
    const slot = c.wslots[this.leafIndex] ?? -1;
    return windowNext(this.spec, slot >= 0 ? c.wins[slot] : undefined, c.t);
  }
  value(c: EvalCtx): MetricValue | null {
    return this.agg(c).value;
  }
  summary(c: EvalCtx): { value: number | null; samples: number } {
    return this.agg(c);
  }
  threshold(p: ParamSet): MetricValue | null {
    return resolveValue(this.ref, p);
  }
}

export class FaultsLeaf extends Leaf {
  readonly kind = 'faults';
  readonly metric = null;
  /** Where each code is written, for check messages. */
  codePaths: Array<[string, Array<string | number>]> = [];
  constructor(
    readonly codes: ReadonlySet<string>,
    readonly countRef: number | { param: string },
    readonly withinMs: number,
  ) {
    super();
  }
  need(p: ParamSet): number {
    return typeof this.countRef === 'number' ? this.countRef : (p.values[this.countRef.param] as number);
  }
  /** Occurrence timestamps (newest last), at most `need` of them. */
  occurrences(c: EvalCtx): number[] {
    const v = c.ls?.[this.stateSlot];
    return Array.isArray(v) ? v : [];
  }
  count(c: EvalCtx): number {
    const occ = this.occurrences(c);
    let n = 0;
    for (let i = occ.length - 1; i >= 0; i--) {
      const o = occ[i] as number;
      if (o > c.t - this.withinMs && o <= c.t) n++;
      else if (o <= c.t - this.withinMs) break;
    }
    return n;
  }
  record(ls: Array<number | number[] | null>, ts: number, p: ParamSet): void {
    let occ = ls[this.stateSlot];
    if (!Array.isArray(occ)) {
      occ = [];
      ls[this.stateSlot] = occ;
    }
    // Kept sorted so late faults still count in the right place of the window.
    let i = occ.length;
    while (i > 0 && (occ[i - 1] as number) > ts) i--;
    occ.splice(i, 0, ts);
    const keep = Math.max(1, this.need(p));
    if (occ.length > keep) occ.splice(0, occ.length - keep);
  }
  eval(c: EvalCtx): Truth {
    return this.count(c) >= this.need(c.params);
  }
  next(c: EvalCtx): number {
    // Every expiry changes the count; waking for each also lets the engine drop old occurrences.
    for (const o of this.occurrences(c)) {
      const due = o + this.withinMs;
      if (due > c.t) return due;
    }
    return Number.POSITIVE_INFINITY;
  }
  value(c: EvalCtx): MetricValue | null {
    return this.count(c);
  }
  threshold(p: ParamSet): MetricValue | null {
    return this.need(p);
  }
}

export class AbsentLeaf extends Leaf {
  readonly kind = 'absent';
  constructor(
    readonly metric: string | null,
    readonly forRef: DurRef,
  ) {
    super();
  }
  ref(c: EvalCtx): number {
    if (this.metric === null) return c.absRef;
    const own = c.ls?.[this.stateSlot];
    if (typeof own === 'number') return own;
    const slot = c.slots[this.leafIndex] ?? -1;
    const ts = slot >= 0 ? (c.vts[slot] ?? Number.NaN) : Number.NaN;
    return Number.isNaN(ts) ? c.since : Math.max(ts, c.since);
  }
  eval(c: EvalCtx): Truth {
    return c.t - this.ref(c) >= resolveDuration(this.forRef, c.params);
  }
  next(c: EvalCtx): number {
    const due = this.ref(c) + resolveDuration(this.forRef, c.params);
    return due > c.t ? due : Number.POSITIVE_INFINITY;
  }
  value(c: EvalCtx): MetricValue | null {
    return Math.max(0, c.t - this.ref(c));
  }
  threshold(p: ParamSet): MetricValue | null {
    return resolveDuration(this.forRef, p);
  }
}

export interface CompiledOverride {
  models: ((m: string) => boolean) | null;
  regions: ReadonlySet<string> | null;
  devices: ReadonlySet<string> | null;
  params: Record<string, MetricValue>;
}

export interface EscalationStep {
  afterMs: number;
  severity: Severity;
}

export interface FlapPolicy {
  transitions: number;
  withinMs: number;
  holdOpenMs: number;
}

/** A rule ready for the engine. Built by the loader (loadRuleFiles / loadRuleText). */
export interface LoadedRule {
  id: string;
  version: string;
  file: string | null;
  line: number | null;
  col: number | null;
  enabled: boolean;
  titleTemplate: CompiledTemplate;
  descriptionTemplate: CompiledTemplate;
  title: string;
  severity: Severity;
  category: Category;
  safety: boolean;
  actions: RuleActions;
  labels: Record<string, string>;
  modelGlobs: string[];
  matchesModel: (model: string) => boolean;
  firmwareRange: string | null;
  regions: ReadonlySet<string> | null;
  params: Record<string, MetricValue>;
  overrides: CompiledOverride[];
  when: CNode;
  gate: CNode | null;
  clear: CNode;
  clearExplicit: boolean;
  forRef: DurRef;
  clearForRef: DurRef;
  maxGapMs: number;
  cooldownMs: number;
  escalate: EscalationStep[];
  flapping: FlapPolicy | null;
  perCode: boolean;
  leaves: Leaf[];
  /** Number of leaf state slots a rule state carries. */
  stateSlots: number;
  primary: Leaf | null;
  /** Metrics any leaf reads (values or windows), sorted. */
  metrics: string[];
  windowSpecs: WindowSpec[];
  faultLeaves: FaultsLeaf[];
  messageAbsence: boolean;
  /** Has an absence leaf: evaluated up to the device's estimated now, not only up to its data. */
  uncapped: boolean;
  /** The normalised logic the version hash is taken over (also shown by `rules check --verbose`). */
  normalized: unknown;
  /** Resolved parameters per (model, region, device) key. */
  paramCache: Map<string, ParamSet>;
}

export interface CompileIssue {
  /** Path inside the rule object. */
  path: Array<string | number>;
  message: string;
  /** Offset inside the string at path, for template placeholders. */
  index?: number;
}

const DEFAULT_FLAPPING: FlapPolicy = { transitions: 4, withinMs: 3_600_000, holdOpenMs: 1_800_000 };
export const DEFAULT_MAX_GAP_MS = 300_000;

function asGlobs(g: string | string[] | undefined): string[] {
  if (g === undefined) return ['*'];
  return Array.isArray(g) ? g : [g];
}

function globMatcher(globs: string[]): (m: string) => boolean {
  const fns = globs.map((g) => picomatch(g));
  return (m) => fns.some((f) => f(m));
}

/** JSON with sorted keys: the version hash must not depend on key order in the file. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v as object)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export function hashLogic(normalized: unknown): string {
  return createHash('sha256').update(canonicalJson(normalized)).digest('hex').slice(0, 16);
}

function isDurationText(v: unknown): v is string {
  return typeof v === 'string' && DURATION_PATTERN.test(v);
}

export function buildParamSet(values: Record<string, MetricValue>): ParamSet {
  const durMs: Record<string, number> = {};
  for (const [k, v] of Object.entries(values)) if (isDurationText(v)) durMs[k] = parseDuration(v);
  return { values, durMs };
}

export function paramsFor(
  rule: LoadedRule,
  model: string,
  region: string | null,
  deviceId: string,
): ParamSet {
  const hasDevice = rule.overrides.some((o) => o.devices?.has(deviceId));
  const key = hasDevice ? `${model}\u0000${region ?? ''}\u0000${deviceId}` : `${model}\u0000${region ?? ''}`;
  let set = rule.paramCache.get(key);
  if (set) return set;
  const values: Record<string, MetricValue> = { ...rule.params };
  for (const o of rule.overrides) {
    if (o.devices) continue;
    if (o.models && !o.models(model)) continue;
    if (o.regions && (region === null || !o.regions.has(region))) continue;
    Object.assign(values, o.params);
  }
  for (const o of rule.overrides) if (o.devices?.has(deviceId)) Object.assign(values, o.params);
  set = buildParamSet(values);
  rule.paramCache.set(key, set);
  return set;
}

interface Ctx {
  issues: CompileIssue[];
  params: Record<string, MetricValue>;
  leaves: Leaf[];
  stateSlots: number;
  windows: Map<string, WindowSpec>;
  faultLeaves: FaultsLeaf[];
  messageAbsence: boolean;
  uncapped: boolean;
  /** Parameter names used as durations / counts, checked against every override. */
  durationParams: Map<string, Array<string | number>>;
  countParams: Map<string, Array<string | number>>;
  /** Duration parameters of absences, which must be longer than 0 wherever they are set. */
  absenceParams: Map<string, Array<string | number>>;
}

function valueRef(raw: MetricValue, path: Array<string | number>, ctx: Ctx): ValueRef {
  if (typeof raw === 'string' && raw.startsWith('$$')) return { value: raw.slice(1) };
  if (typeof raw === 'string' && raw.startsWith('$')) {
    const name = raw.slice(1);
    if (!PARAM_REF_PATTERN.test(raw)) {
      ctx.issues.push({
        path,
        message: `"${raw}" is not a parameter reference; write "$$" for a literal "$"`,
      });
    } else if (!(name in ctx.params)) {
      ctx.issues.push({ path, message: `unknown parameter "${name}": declare it under params` });
    }
    return { param: name };
  }
  return { value: raw };
}

function durRef(raw: string | undefined, path: Array<string | number>, ctx: Ctx): DurRef {
  if (raw === undefined) return 0;
  if (raw.startsWith('$')) {
    const name = raw.slice(1);
    if (!(name in ctx.params))
      ctx.issues.push({ path, message: `unknown parameter "${name}": declare it under params` });
    else ctx.durationParams.set(name, path);
    return { param: name };
  }
  return parseDuration(raw);
}

function normalizedRef(ref: ValueRef | DurRef | number): unknown {
  if (typeof ref === 'number') return ref;
  return 'param' in ref ? { $: ref.param } : ref.value;
}

function compileCondition(
  raw: ConditionInput,
  path: Array<string | number>,
  ctx: Ctx,
): { node: CNode; norm: unknown } {
  if ('all' in raw || 'any' in raw) {
    const kind = 'all' in raw ? 'all' : 'any';
    const list = 'all' in raw ? raw.all : raw.any;
    const parts = list.map((c, i) => compileCondition(c, [...path, kind, i], ctx));
    const kids = parts.map((p) => p.node);
    return {
      node: kind === 'all' ? new AllNode(kids) : new AnyNode(kids),
      norm: { [kind]: parts.map((p) => p.norm) },
    };
  }
  if ('not' in raw) {
    const inner = compileCondition(raw.not, [...path, 'not'], ctx);
    return { node: new NotNode(inner.node), norm: { not: inner.norm } };
  }
  let leaf: Leaf;
  let norm: unknown;
  if ('threshold' in raw) {
    const t = raw.threshold;
    const p = [...path, 'threshold'];
    const ref = valueRef(t.value, [...p, 'value'], ctx);
    const hold = t.for === undefined ? null : durRef(t.for, [...p, 'for'], ctx);
    leaf = new ThresholdLeaf(t.metric, t.op, ref, hold);
    if (hold !== null) leaf.stateSlot = ctx.stateSlots++;
    norm = {
      threshold: {
        metric: t.metric,
        op: t.op,
        value: normalizedRef(ref),
        for: hold === null ? 0 : normalizedRef(hold),
      },
    };
  } else if ('aggregate' in raw) {
    const a = raw.aggregate;
    const p = [...path, 'aggregate'];
    const windowMs = parseDuration(a.window);
    const stepMs = a.step === undefined ? Math.max(1, Math.floor(windowMs / 12)) : parseDuration(a.step);
    if (windowMs <= 0)
      ctx.issues.push({ path: [...p, 'window'], message: 'the window must be longer than 0' });
    if (stepMs <= 0 || windowMs % stepMs !== 0) {
      ctx.issues.push({
        path: [...p, a.step === undefined ? 'window' : 'step'],
        message: `the window (${a.window}) must be a whole number of steps (${stepMs} ms)`,
      });
    }
    const buckets = Math.max(1, Math.round(windowMs / Math.max(1, stepMs)));
    if (buckets > 1000)
      ctx.issues.push({
        path: [...p, 'step'],
        message: `window/step is ${buckets}; at most 1000 buckets per window`,
      });
    let where: WindowSpec['where'] = null;
    if (a.where) {
      if (
        typeof a.where.value === 'string' &&
        a.where.value.startsWith('$') &&
        !a.where.value.startsWith('$$')
      ) {
        ctx.issues.push({
          path: [...p, 'where', 'value'],
          message: 'where takes a literal value, not a parameter (windows are shared per device)',
        });
      }
      const wv =
        typeof a.where.value === 'string' && a.where.value.startsWith('$$')
          ? a.where.value.slice(1)
          : a.where.value;
      where = { metric: a.where.metric, op: a.where.op, value: wv };
    }
    const sig = canonicalJson({ m: a.metric, f: a.fn, w: windowMs, s: stepMs, where });
    let spec = ctx.windows.get(sig);
    if (!spec) {
      spec = { sig, metric: a.metric, fn: a.fn, windowMs, stepMs, buckets, fields: FIELDS[a.fn], where };
      ctx.windows.set(sig, spec);
    }
    const ref = valueRef(a.value, [...p, 'value'], ctx);
    const minSamples = a.minSamples ?? (a.fn === 'rate' ? 2 : 1);
    leaf = new AggregateLeaf(a.metric, spec, minSamples, a.op, ref);
    norm = {
      aggregate: {
        metric: a.metric,
        fn: a.fn,
        window: windowMs,
        step: stepMs,
        minSamples,
        where,
        op: a.op,
        value: normalizedRef(ref),
      },
    };
  } else if ('faults' in raw) {
    const f = raw.faults;
    const p = [...path, 'faults'];
    if ((f.code === undefined) === (f.codes === undefined)) {
      ctx.issues.push({ path: p, message: 'give exactly one of code or codes' });
    }
    const codes = new Set(f.codes ?? (f.code === undefined ? [] : [f.code]));
    let count: number | { param: string } = 1;
    if (typeof f.count === 'number') count = f.count;
    else if (typeof f.count === 'string') {
      const name = f.count.slice(1);
      if (!(name in ctx.params))
        ctx.issues.push({
          path: [...p, 'count'],
          message: `unknown parameter "${name}": declare it under params`,
        });
      else ctx.countParams.set(name, [...p, 'count']);
      count = { param: name };
    }
    const fl = new FaultsLeaf(codes, count, parseDuration(f.within));
    fl.codePaths = f.codes
      ? f.codes.map((c, i) => [c, [...p, 'codes', i]])
      : f.code
        ? [[f.code, [...p, 'code']]]
        : [];
    fl.stateSlot = ctx.stateSlots++;
    ctx.faultLeaves.push(fl);
    leaf = fl;
    norm = { faults: { codes: [...codes].sort(), count: normalizedRef(count), within: fl.withinMs } };
  } else {
    const a = raw.absent;
    const forPath = [...path, 'absent', 'for'];
    const forRef = durRef(a.for, forPath, ctx);
    if (typeof forRef === 'number' && forRef <= 0)
      ctx.issues.push({ path: forPath, message: 'an absence needs a duration longer than 0' });
    else if (typeof forRef !== 'number') ctx.absenceParams.set(forRef.param, forPath);
    const al = new AbsentLeaf(a.metric ?? null, forRef);
    if (a.metric !== undefined) al.stateSlot = ctx.stateSlots++;
    else ctx.messageAbsence = true;
    ctx.uncapped = true;
    leaf = al;
    norm = { absent: { metric: a.metric ?? null, for: normalizedRef(forRef) } };
  }
  leaf.leafIndex = ctx.leaves.length;
  leaf.path = path;
  ctx.leaves.push(leaf);
  return { node: leaf, norm };
}

function firstLeaf(node: CNode): Leaf | null {
  if (node instanceof Leaf) return node;
  if (node instanceof AllNode || node instanceof AnyNode) {
    for (const k of node.kids) {
      const l = firstLeaf(k);
      if (l) return l;
    }
    return null;
  }
  if (node instanceof NotNode) return firstLeaf(node.kid);
  return null;
}

/** Compiles one schema-valid rule; issues carry paths relative to the rule. */
export function compileRule(
  input: RuleInput,
  where: { file: string | null; line: number | null; col: number | null },
): { rule: LoadedRule | null; issues: CompileIssue[] } {
  const params = (input.params ?? {}) as Record<string, MetricValue>;
  const ctx: Ctx = {
    issues: [],
    params,
    leaves: [],
    stateSlots: 0,
    windows: new Map(),
    faultLeaves: [],
    messageAbsence: false,
    uncapped: false,
    durationParams: new Map(),
    countParams: new Map(),
    absenceParams: new Map(),
  };
  const when = compileCondition(input.when, ['when'], ctx);
  const gate = input.gate ? compileCondition(input.gate, ['gate'], ctx) : null;
  const clearCond = input.clear?.when ? compileCondition(input.clear.when, ['clear', 'when'], ctx) : null;
  const forRef = durRef(input.for, ['for'], ctx);
  const clearForRef = durRef(input.clear?.for, ['clear', 'for'], ctx);

  const modelGlobs = asGlobs(input.scope?.models);
  let firmwareRange: string | null = null;
  if (input.scope?.firmware !== undefined) {
    if (semver.validRange(input.scope.firmware, { loose: true }) === null) {
      ctx.issues.push({
        path: ['scope', 'firmware'],
        message: `"${input.scope.firmware}" is not a semver range (e.g. ">=3.0.0 <4")`,
      });
    } else firmwareRange = input.scope.firmware;
  }

  const overrides: CompiledOverride[] = [];
  (input.overrides ?? []).forEach((o, i) => {
    if (o.models === undefined && o.regions === undefined && o.devices === undefined) {
      ctx.issues.push({ path: ['overrides', i], message: 'an override needs models, regions or devices' });
    }
    if (o.devices !== undefined && (o.models !== undefined || o.regions !== undefined)) {
      ctx.issues.push({
        path: ['overrides', i],
        message: 'a device override names devices only (it wins over model overrides anyway)',
      });
    }
    for (const [k, v] of Object.entries(o.params)) {
      if (!(k in params)) {
        ctx.issues.push({
          path: ['overrides', i, 'params', k],
          message: `override of undeclared parameter "${k}": declare a default under params`,
        });
      } else if (typeof v !== typeof params[k]) {
        ctx.issues.push({
          path: ['overrides', i, 'params', k],
          message: `"${k}" is a ${typeof params[k]} in params but a ${typeof v} here`,
        });
      }
    }
    overrides.push({
      models: o.models === undefined ? null : globMatcher(asGlobs(o.models)),
      regions: o.regions ? new Set(o.regions) : null,
      devices: o.devices ? new Set(o.devices) : null,
      params: o.params as Record<string, MetricValue>,
    });
  });
  const checkParamEverywhere = (
    name: string,
    path: Array<string | number>,
    ok: (v: unknown) => boolean,
    what: string,
  ) => {
    if (name in params && !ok(params[name]))
      ctx.issues.push({
        path: ['params', name],
        message: `parameter "${name}" is used as ${what} at ${path.join('.')}`,
      });
    (input.overrides ?? []).forEach((o, i) => {
      if (name in o.params && !ok(o.params[name]))
        ctx.issues.push({
          path: ['overrides', i, 'params', name],
          message: `parameter "${name}" must be ${what}`,
        });
    });
  };
  for (const [name, path] of ctx.durationParams)
    checkParamEverywhere(name, path, isDurationText, 'a duration (e.g. "10m")');
  for (const [name, path] of ctx.absenceParams)
    checkParamEverywhere(
      name,
      path,
      (v) => !isDurationText(v) || parseDuration(v) > 0,
      'an absence duration longer than 0',
    );
  for (const [name, path] of ctx.countParams) {
    checkParamEverywhere(
      name,
      path,
      (v) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1000,
      'an integer count from 1 to 1000',
    );
  }

  const fingerprint = input.fingerprint ?? 'rule+device';
  const perCode = fingerprint === 'device+code';
  if (perCode && ctx.faultLeaves.length !== 1) {
    ctx.issues.push({
      path: ['fingerprint'],
      message: 'device+code needs exactly one faults condition in the rule',
    });
  }

  const escalate = (input.escalate ?? []).map((e) => ({
    afterMs: parseDuration(e.after),
    severity: e.severity,
  }));
  escalate.sort((a, b) => a.afterMs - b.afterMs);
  const flapping: FlapPolicy | null =
    input.flapping === false
      ? null
      : {
          transitions: input.flapping?.transitions ?? DEFAULT_FLAPPING.transitions,
          withinMs: input.flapping?.within ? parseDuration(input.flapping.within) : DEFAULT_FLAPPING.withinMs,
          holdOpenMs: input.flapping?.holdOpen
            ? parseDuration(input.flapping.holdOpen)
            : DEFAULT_FLAPPING.holdOpenMs,
        };

  const paramNames = new Set(Object.keys(params));
  const title = compileTemplate(input.title, paramNames);
  for (const pr of title.problems) ctx.issues.push({ path: ['title'], message: pr.message, index: pr.index });
  const description = compileTemplate(input.description ?? '', paramNames);
  for (const pr of description.problems)
    ctx.issues.push({ path: ['description'], message: pr.message, index: pr.index });

  const guide = input.actions?.guide;
  const actions: RuleActions = {
    ticket: input.actions?.ticket ?? true,
    guide: guide === true ? input.id : typeof guide === 'string' ? guide : null,
    autoClose: input.actions?.autoClose ?? false,
  };

  const metrics = new Set<string>();
  for (const l of ctx.leaves) if (l.metric) metrics.add(l.metric);
  for (const w of ctx.windows.values()) if (w.where) metrics.add(w.where.metric);

  const maxGapMs = input.maxGap ? parseDuration(input.maxGap) : DEFAULT_MAX_GAP_MS;
  const normalized = {
    scope: {
      models: [...modelGlobs].sort(),
      firmware: firmwareRange,
      regions: input.scope?.regions ? [...input.scope.regions].sort() : null,
    },
    when: when.norm,
    gate: gate?.norm ?? null,
    for: normalizedRef(forRef),
    clear: { when: clearCond?.norm ?? null, for: normalizedRef(clearForRef) },
    params,
    overrides: (input.overrides ?? []).map((o) => ({
      models: o.models === undefined ? null : [...asGlobs(o.models)].sort(),
      regions: o.regions ? [...o.regions].sort() : null,
      devices: o.devices ? [...o.devices].sort() : null,
      params: o.params,
    })),
    maxGap: maxGapMs,
    fingerprint,
    enabled: input.enabled ?? true,
  };

  if (ctx.issues.length > 0) return { rule: null, issues: ctx.issues };
  const rule: LoadedRule = {
    id: input.id,
    version: hashLogic(normalized),
    file: where.file,
    line: where.line,
    col: where.col,
    enabled: input.enabled ?? true,
    titleTemplate: title.template,
    descriptionTemplate: description.template,
    title: input.title,
    severity: input.severity,
    category: input.category ?? 'hardware_fault',
    safety: input.safety ?? false,
    actions,
    labels: input.labels ?? {},
    modelGlobs,
    matchesModel: globMatcher(modelGlobs),
    firmwareRange,
    regions: input.scope?.regions ? new Set(input.scope.regions) : null,
    params,
    overrides,
    when: when.node,
    gate: gate?.node ?? null,
    clear: clearCond?.node ?? new NotNode(when.node),
    clearExplicit: clearCond !== null,
    forRef,
    clearForRef,
    maxGapMs,
    cooldownMs: input.cooldown ? parseDuration(input.cooldown) : 0,
    escalate,
    flapping,
    perCode,
    leaves: ctx.leaves,
    stateSlots: ctx.stateSlots,
    primary: firstLeaf(when.node),
    metrics: [...metrics].sort(),
    windowSpecs: [...ctx.windows.values()],
    faultLeaves: ctx.faultLeaves,
    messageAbsence: ctx.messageAbsence,
    uncapped: ctx.uncapped,
    normalized,
    paramCache: new Map(),
  };
  return { rule, issues: [] };
}
