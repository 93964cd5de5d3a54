/**
 * The rule engine: pure and clock-driven. It never reads the wall clock or sets
 * a timer; the integrator feeds messages and calls tick(now), and nextDeadline()
 * says when the next tick is useful.
 *
 * Time model (docs/rules.md has the long form):
 * - Rules run on device time (sample ts). Each (rule, device) state has a clock
 *   `at` that only moves forward, to sample times and to its own deadlines.
 * - Between samples a metric's last value is held for the rule's maxGap; a longer
 *   gap makes it unknown, which resets pending and clearing timers.
 * - tick(now) estimates the device's current time from a per-device
 *   server-minus-device offset. Data-driven rules advance only up to
 *   lastTs + maxGap (what the data can vouch for); rules with an absence
 *   condition and escalation timers advance to the estimated device time.
 * - A sample older than a rule's clock is late: it enters windows and updates
 *   the latest value if newer, and the rule is re-evaluated at its clock; the
 *   past is never rewritten.
 */
import semver from 'semver';
import type { MetricValue } from '../contract/index.js';
import {
  AbsentLeaf,
  AggregateLeaf,
  compare,
  type EvalCtx,
  type LoadedRule,
  newWindow,
  type ParamSet,
  paramsFor,
  resolveDuration,
  resolveValue,
  ThresholdLeaf,
  type WindowData,
  type WindowSpec,
  windowAggregate,
  windowInsert,
} from './compile.js';
import { SEVERITIES, type Severity } from './schema.js';
import { renderTemplate } from './template.js';
import type {
  EngineDevice,
  EngineFault,
  EngineSample,
  EvidenceFault,
  EvidenceSample,
  ResolveReason,
  RuleDescription,
  RuleErrorInfo,
  RuleEvent,
  RuleEvidence,
  RuleObserver,
  RulePhase,
  RuleStateSnapshot,
  RuleStateView,
  SnapshotDevice,
  SnapshotRuleState,
  UpdateReason,
} from './types.js';

/** Evidence entries kept per incident (samples and faults together). */
export const EVIDENCE_LIMIT = 50;
export const DEFAULT_STALE_AFTER_MS = 30 * 60_000;
export const DEFAULT_LATE_AFTER_MS = 2 * 60_000;

const OFF = 0;
const PENDING = 1;
const ON = 2;
const CLEARING = 3;
type Cond = 0 | 1 | 2 | 3;

type LeafStates = Array<number | number[] | null>;
type EvidenceEntry = [number, Record<string, MetricValue>] | [number, string];

interface RState {
  /** Rule clock (device time). */
  at: number;
  c: Cond;
  /** pending since / clearing since */
  ps: number;
  cs: number;
  open: boolean;
  /** incident: firing since, pending since, severity index, escalation steps done */
  fs: number;
  ips: number;
  sev: number;
  esc: number;
  hold: number;
  cool: number;
  /** condition transition times, for flap detection */
  fl: number[] | null;
  fc: number;
  occ: number;
  ls: LeafStates | null;
  ev: EvidenceEntry[] | null;
  evt: boolean;
  code: string | null;
  next: RState | undefined;
  /** Cached next deadline (device time). */
  due: number;
}

function newState(code: string | null = null): RState {
  return {
    at: Number.NEGATIVE_INFINITY,
    c: OFF,
    ps: Number.NaN,
    cs: Number.NaN,
    open: false,
    fs: Number.NaN,
    ips: Number.NaN,
    sev: 0,
    esc: 0,
    hold: Number.NaN,
    cool: Number.NEGATIVE_INFINITY,
    fl: null,
    fc: 0,
    occ: 0,
    ls: null,
    ev: null,
    evt: false,
    code,
    next: undefined,
    due: Number.POSITIVE_INFINITY,
  };
}

interface Group {
  key: string;
  rules: LoadedRule[];
  index: Map<string, number>;
  params: ParamSet[];
  deviceOverrides: boolean[];
  slot: Map<string, number>;
  metrics: string[];
  windows: WindowSpec[];
  wslot: Map<string, number>;
  windowsByMetric: Map<string, number[]>;
  leafSlots: number[][];
  leafWslots: number[][];
  byMetric: Map<string, number[]>;
  onMessage: number[];
  onFault: Map<string, number[]>;
  metricAbsence: boolean[];
  /**
   * per rule: an idle state for it is exactly "nothing": every leaf is a plain threshold
   * (no for-timer of its own, no window, no absence, no fault count), so while the
   * condition is not raised an idle rule has no deadline and nothing to remember.
   */
  quietIdle: Uint8Array;
  /**
   * Quiet rules on one metric compared with a fixed number (the fleet's bulk: "x above N"),
   * flattened per metric so an idle one is decided by one numeric comparison in a loop,
   * without evaluating its condition tree. flatRule marks them; affectedBy leaves them out.
   */
  flat: Map<string, FlatRules>;
  flatRule: Uint8Array;
  stats: RuleStats[];
  /** per rule: maxGap (ms), and whether ticks may move it past the data (absence rules) */
  maxGap: Float64Array;
  uncapped: Uint8Array;
  stamp: Int32Array;
  gen: number;
  /** affectedBy's memo: the metric names of the last sample and the rules they touched. */
  lastKeys: string[];
  lastAff: number[] | null;
}

interface FlatRules {
  idx: number[];
  /** 0 >, 1 >=, 2 <, 3 <= */
  op: Uint8Array;
  thr: Float64Array;
}

const FLAT_OPS: Record<string, number> = { '>': 0, '>=': 1, '<': 2, '<=': 3 };

function raisedBy(op: number, v: number, t: number): boolean {
  return op === 0 ? v > t : op === 1 ? v >= t : op === 2 ? v < t : v <= t;
}

interface Dev {
  info: EngineDevice;
  group: Group;
  /** server time - device time, NaN before the first message */
  off: number;
  /** latest device ts of any message */
  last: number;
  /** device time from which silence counts when nothing newer is known */
  since: number;
  /*
   * Per-slot arrays grow on first write: a device pays only for the metrics it
   * reports and the rules it exercises, not for every rule its model could have.
   * A missing entry reads as "nothing": no value, no state, no deadline.
   */
  vals: Array<MetricValue | undefined>;
  vts: Array<number | undefined>;
  wins: Array<WindowData | undefined>;
  st: Array<RState | undefined>;
  /** per group rule: next condition deadline (device time) */
  dues: Array<number | undefined>;
  /** server time of this device's heap entry */
  sched: number;
  /**
   * Lowest lastTs at which a deadline now beyond the data horizon becomes reachable
   * from a tick; until lastTs passes it, rescheduling looks only at touched rules.
   */
  blocked: number;
  /** Open incidents (for escalation timers). */
  open: number;
}

interface RuleStats {
  evaluations: number;
  errors: number;
  lastError: RuleErrorInfo | null;
  firedTotal: number;
  firing: number;
}

export interface RuleEngineOptions {
  rules: LoadedRule[];
  now: () => number;
  emit: (e: RuleEvent) => void;
  observer?: RuleObserver;
  /** Episodes that ended longer ago than this (device time) are emitted with stale: true. Default 30 min. */
  staleAfterMs?: number;
  /** Events decided this long after their device time carry late: true. Default 2 min. */
  lateAfterMs?: number;
}

export interface ReplaceResult {
  kept: string[];
  reset: string[];
  removed: string[];
  added: string[];
}

const isActive = (s: RState) => s.c !== OFF || s.open;

/** Binary min-heap of (server time, device id); entries go stale lazily (see Dev.sched). */
class TimerHeap {
  private readonly t: number[] = [];
  private readonly id: string[] = [];
  get size(): number {
    return this.t.length;
  }
  peek(): number | null {
    return this.t.length > 0 ? (this.t[0] as number) : null;
  }
  peekId(): string {
    return this.id[0] as string;
  }
  push(time: number, id: string): void {
    let i = this.t.length;
    this.t.push(time);
    this.id.push(id);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((this.t[p] as number) <= time) break;
      this.t[i] = this.t[p] as number;
      this.id[i] = this.id[p] as string;
      i = p;
    }
    this.t[i] = time;
    this.id[i] = id;
  }
  pop(): void {
    const n = this.t.length - 1;
    const lastT = this.t[n] as number;
    const lastId = this.id[n] as string;
    this.t.pop();
    this.id.pop();
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && (this.t[c + 1] as number) < (this.t[c] as number)) c++;
      if ((this.t[c] as number) >= lastT) break;
      this.t[i] = this.t[c] as number;
      this.id[i] = this.id[c] as string;
      i = c;
    }
    this.t[i] = lastT;
    this.id[i] = lastId;
  }
  clear(): void {
    this.t.length = 0;
    this.id.length = 0;
  }
}

function firmwareMatches(range: string | null, firmware: string | null): boolean {
  if (range === null) return true;
  // A firmware-scoped rule targets known versions; an unknown firmware is not in scope.
  if (firmware === null) return false;
  const version = semver.valid(firmware, { loose: true }) ?? semver.coerce(firmware)?.version ?? null;
  return version !== null && semver.satisfies(version, range, { loose: true, includePrerelease: true });
}

function num(v: number): number | undefined {
  return Number.isFinite(v) ? v : undefined;
}

export class RuleEngine {
  private rules: LoadedRule[];
  private byId = new Map<string, LoadedRule>();
  private readonly stats = new Map<string, RuleStats>();
  private readonly devices = new Map<string, Dev>();
  private groups = new Map<string, Group>();
  private modelRules = new Map<string, LoadedRule[]>();
  private readonly heap = new TimerHeap();
  private readonly emitFn: (e: RuleEvent) => void;
  private readonly now: () => number;
  private readonly observer: RuleObserver | undefined;
  private readonly staleAfterMs: number;
  private readonly lateAfterMs: number;
  private serverNow = 0;
  private pending: RuleEvent[] = [];
  private readonly aff: number[] = [];
  /** Rules an ingest call touched, for rescheduling only those. */
  private readonly touched: number[] = [];
  private readonly scratch = newState();
  private ctxState: RState = this.scratch;
  /** The sample being stepped, until it is recorded as evidence. */
  private curSample: EngineSample | null = null;
  private ctxRule: LoadedRule | null = null;
  private readonly ctx: EvalCtx;

  constructor(opts: RuleEngineOptions) {
    this.rules = [];
    this.emitFn = opts.emit;
    this.now = opts.now;
    this.observer = opts.observer;
    this.staleAfterMs = opts.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
    this.lateAfterMs = opts.lateAfterMs ?? DEFAULT_LATE_AFTER_MS;
    this.ctx = {
      t: 0,
      vals: [],
      vts: [],
      slots: [],
      wslots: [],
      wins: [],
      params: { values: {}, durMs: {} },
      maxGap: 0,
      absRef: 0,
      wantExpiry: false,
      since: 0,
      ls: null,
      ensureLs: () => {
        const s = this.ctxState;
        if (!s.ls) s.ls = new Array<number | number[] | null>(this.ctxRule?.stateSlots ?? 0).fill(null);
        this.ctx.ls = s.ls;
        return s.ls;
      },
    };
    this.setRules(opts.rules);
  }

  // ---------------------------------------------------------------- rules

  private setRules(rules: LoadedRule[]): void {
    const ids = new Set<string>();
    for (const r of rules) {
      if (ids.has(r.id)) throw new Error(`duplicate rule id "${r.id}"`);
      ids.add(r.id);
    }
    this.rules = [...rules];
    this.byId = new Map(rules.map((r) => [r.id, r]));
    this.groups = new Map();
    this.modelRules = new Map();
    for (const r of rules) {
      if (!this.stats.has(r.id))
        this.stats.set(r.id, { evaluations: 0, errors: 0, lastError: null, firedTotal: 0, firing: 0 });
    }
  }

  private groupFor(info: EngineDevice): Group {
    const key = `${info.model}\u0000${info.firmware ?? ''}\u0000${info.region ?? ''}`;
    let g = this.groups.get(key);
    if (g) return g;
    let byModel = this.modelRules.get(info.model);
    if (!byModel) {
      byModel = this.rules.filter((r) => r.enabled && r.matchesModel(info.model));
      this.modelRules.set(info.model, byModel);
    }
    const rules = byModel.filter(
      (r) =>
        firmwareMatches(r.firmwareRange, info.firmware) &&
        (r.regions === null || (info.region !== null && r.regions.has(info.region))),
    );
    g = this.buildGroup(key, rules, info);
    this.groups.set(key, g);
    return g;
  }

  private buildGroup(key: string, rules: LoadedRule[], info: EngineDevice): Group {
    const params = rules.map((r) => paramsFor(r, info.model, info.region, ''));
    const deviceOverrides = rules.map((r) => r.overrides.some((o) => o.devices !== null));
    const slot = new Map<string, number>();
    const wslot = new Map<string, number>();
    const windows: WindowSpec[] = [];
    const windowsByMetric = new Map<string, number[]>();
    const byMetric = new Map<string, number[]>();
    const onFault = new Map<string, number[]>();
    const onMessage: number[] = [];
    const push = <K>(m: Map<K, number[]>, k: K, v: number) => {
      const list = m.get(k);
      if (list) {
        if (!list.includes(v)) list.push(v);
      } else m.set(k, [v]);
    };
    rules.forEach((r, i) => {
      for (const m of r.metrics) {
        if (!slot.has(m)) slot.set(m, slot.size);
        push(byMetric, m, i);
      }
      for (const w of r.windowSpecs) {
        if (!wslot.has(w.sig)) {
          wslot.set(w.sig, windows.length);
          push(windowsByMetric, w.metric, windows.length);
          windows.push(w);
        }
      }
      if (r.messageAbsence) onMessage.push(i);
      for (const f of r.faultLeaves) for (const c of f.codes) push(onFault, c, i);
    });
    return {
      key,
      rules,
      index: new Map(rules.map((r, i) => [r.id, i])),
      params,
      deviceOverrides,
      slot,
      metrics: [...slot.keys()],
      windows,
      wslot,
      windowsByMetric,
      leafSlots: rules.map((r) => r.leaves.map((l) => (l.metric ? (slot.get(l.metric) ?? -1) : -1))),
      leafWslots: rules.map((r) =>
        r.leaves.map((l) => (l instanceof AggregateLeaf ? (wslot.get(l.spec.sig) ?? -1) : -1)),
      ),
      byMetric,
      onMessage,
      onFault,
      metricAbsence: rules.map((r) => r.leaves.some((l) => l instanceof AbsentLeaf && l.metric !== null)),
      quietIdle: Uint8Array.from(rules.map((r) => (quietWhenIdle(r) ? 1 : 0))),
      ...flatten(rules, params, deviceOverrides),
      stats: rules.map((r) => this.stats.get(r.id) as RuleStats),
      maxGap: Float64Array.from(rules.map((r) => r.maxGapMs)),
      uncapped: Uint8Array.from(rules.map((r) => (r.uncapped ? 1 : 0))),
      stamp: new Int32Array(rules.length),
      gen: 0,
      lastKeys: [],
      lastAff: null,
    };
  }

  private paramsOf(dev: Dev, i: number): ParamSet {
    const g = dev.group;
    if (!g.deviceOverrides[i]) return g.params[i] as ParamSet;
    return paramsFor(g.rules[i] as LoadedRule, dev.info.model, dev.info.region, dev.info.id);
  }

  // ---------------------------------------------------------------- devices

  private newDev(info: EngineDevice, since: number): Dev {
    const group = this.groupFor(info);
    const dev: Dev = {
      info: { ...info },
      group,
      off: Number.NaN,
      last: Number.NEGATIVE_INFINITY,
      since,
      vals: slots<MetricValue | undefined>(group.metrics.length, undefined),
      vts: slots<number | undefined>(group.metrics.length, Number.NaN),
      wins: slots<WindowData | undefined>(group.windows.length, undefined),
      st: slots<RState | undefined>(group.rules.length, undefined),
      dues: slots<number | undefined>(group.rules.length, Number.POSITIVE_INFINITY),
      sched: Number.POSITIVE_INFINITY,
      blocked: Number.POSITIVE_INFINITY,
      open: 0,
    };
    this.devices.set(info.id, dev);
    for (let i = 0; i < group.rules.length; i++) this.refreshDue(dev, i);
    return dev;
  }

  /** Known devices, so absence rules cover devices that never report. Idempotent; updates the info. */
  registerDevice(device: EngineDevice): void {
    this.serverNow = this.now();
    const dev = this.devices.get(device.id);
    if (!dev) {
      const d = this.newDev(device, device.registeredAt ?? this.serverNow);
      this.reschedule(d);
      return;
    }
    this.updateInfo(dev, device);
    if (device.registeredAt !== undefined && dev.last === Number.NEGATIVE_INFINITY) {
      dev.since = device.registeredAt - (Number.isNaN(dev.off) ? 0 : dev.off);
      for (let i = 0; i < dev.group.rules.length; i++) this.refreshDue(dev, i);
    }
    this.flush(this.deviceNow(dev, this.serverNow));
    this.reschedule(dev);
  }

  /** Forgets a device; its open incidents resolve with reason device_removed. */
  removeDevice(id: string): void {
    const dev = this.devices.get(id);
    if (!dev) return;
    this.serverNow = this.now();
    const t = Math.max(dev.last, this.deviceNow(dev, this.serverNow));
    dev.group.rules.forEach((_, i) => {
      for (let s = dev.st[i]; s; s = s.next)
        if (s.open) this.closeIncident(dev, i, s, Math.max(t, s.at), 'device_removed');
    });
    this.flush(t);
    this.devices.delete(id);
  }

  private getDev(info: EngineDevice, firstTs: number): Dev {
    const dev = this.devices.get(info.id);
    if (!dev) return this.newDev(info, info.registeredAt ?? firstTs);
    if (
      dev.info.model !== info.model ||
      dev.info.firmware !== info.firmware ||
      dev.info.region !== info.region ||
      dev.info.batch !== info.batch ||
      dev.info.ownerId !== info.ownerId ||
      dev.info.ownerLocale !== info.ownerLocale
    ) {
      this.updateInfo(dev, info);
    }
    return dev;
  }

  private updateInfo(dev: Dev, info: EngineDevice): void {
    const regroup =
      dev.info.model !== info.model || dev.info.firmware !== info.firmware || dev.info.region !== info.region;
    dev.info = { ...info, registeredAt: info.registeredAt ?? dev.info.registeredAt };
    if (regroup) this.regroup(dev, this.groupFor(dev.info), new Set(), new Set());
  }

  /**
   * Moves a device to another rule group (new firmware, new rules): values and
   * windows follow by name, rule states by id; `reset` ids keep only an open
   * incident, `removed` ids resolve as rule_removed, other lost ids as out_of_scope.
   */
  private regroup(dev: Dev, to: Group, reset: ReadonlySet<string>, removed: ReadonlySet<string>): void {
    const from = dev.group;
    const t = dev.last;
    from.rules.forEach((r, i) => {
      if (to.index.has(r.id) && !removed.has(r.id)) return;
      for (let s = dev.st[i]; s; s = s.next) {
        if (s.open)
          this.closeIncident(
            dev,
            i,
            s,
            Math.max(t, s.at),
            removed.has(r.id) ? 'rule_removed' : 'out_of_scope',
          );
      }
    });
    const vals: Array<MetricValue | undefined> = [];
    const vts: Array<number | undefined> = [];
    for (const [m, j] of to.slot) {
      const k = from.slot.get(m);
      if (k !== undefined && dev.vts[k] !== undefined) {
        vals[j] = dev.vals[k];
        vts[j] = dev.vts[k];
      }
    }
    const wins: Array<WindowData | undefined> = [];
    to.windows.forEach((w, j) => {
      const k = from.wslot.get(w.sig);
      const data = k === undefined ? undefined : dev.wins[k];
      if (data) wins[j] = data;
    });
    const st: Array<RState | undefined> = [];
    to.rules.forEach((r, j) => {
      const k = from.index.get(r.id);
      if (k === undefined) return;
      const old = dev.st[k];
      if (!reset.has(r.id)) {
        if (old) st[j] = old;
        return;
      }
      let head: RState | undefined;
      let tail: RState | undefined;
      for (let s = old; s; s = s.next) {
        if (!s.open) continue;
        // The logic changed: timers and windows restart, but an open incident stays open
        // (no resolve-then-refire churn); the new clear condition decides when it ends.
        const n = newState(s.code);
        Object.assign(n, {
          at: s.at,
          c: ON,
          open: true,
          fs: s.fs,
          ips: s.ips,
          sev: s.sev,
          fc: s.fc,
          occ: s.occ,
        });
        n.esc = r.escalate.filter((e) => e.afterMs <= s.at - s.fs).length;
        if (tail) tail.next = n;
        else head = n;
        tail = n;
      }
      if (head) st[j] = head;
    });
    dev.group = to;
    dev.vals = vals;
    dev.vts = vts;
    dev.wins = wins;
    dev.st = st;
    dev.dues = [];
    for (let i = 0; i < to.rules.length; i++) this.refreshDue(dev, i);
    dev.open = countOpen(dev);
  }

  // ---------------------------------------------------------------- ingest

  private updateOffset(dev: Dev, receivedAt: number, newestTs: number): void {
    const d = receivedAt - newestTs;
    // The smallest delay seen is the best estimate of the clock offset; a late batch
    // pushes it up only a little, and the next live message pulls it straight back.
    if (Number.isNaN(dev.off) || d <= dev.off) dev.off = d;
    else dev.off += (d - dev.off) / 8;
  }

  private deviceNow(dev: Dev, serverTime: number): number {
    return serverTime - (Number.isNaN(dev.off) ? 0 : dev.off);
  }

  /**
   * Where "now" is on the device's clock for judging late and stale: from the offset
   * known before this message, since a message cannot vouch for its own punctuality.
   * A device's first message is judged against a synced clock (the bridge refuses
   * timestamps far in the future, and device clocks are NTP-synced by contract).
   */
  private judgeNow(priorOffset: number, receivedAt: number): number {
    return receivedAt - (Number.isNaN(priorOffset) ? 0 : priorOffset);
  }

  ingestTelemetry(device: EngineDevice, samples: EngineSample[], receivedAt: number): void {
    if (samples.length === 0) return;
    this.serverNow = this.now();
    const sorted = sortByTs(samples);
    const dev = this.getDev(device, (sorted[0] as EngineSample).ts);
    const prior = dev.off;
    this.updateOffset(dev, receivedAt, (sorted[sorted.length - 1] as EngineSample).ts);
    this.touched.length = 0;
    for (const s of sorted) this.processSample(dev, s);
    this.flush(this.judgeNow(prior, receivedAt));
    this.rescheduleTouched(dev);
  }

  ingestFaults(device: EngineDevice, faults: EngineFault[], receivedAt: number): void {
    if (faults.length === 0) return;
    this.serverNow = this.now();
    const sorted = sortByTs(faults);
    const dev = this.getDev(device, (sorted[0] as EngineFault).ts);
    const prior = dev.off;
    this.updateOffset(dev, receivedAt, (sorted[sorted.length - 1] as EngineFault).ts);
    this.touched.length = 0;
    for (const f of sorted) this.processFault(dev, f);
    this.flush(this.judgeNow(prior, receivedAt));
    this.rescheduleTouched(dev);
  }

  private collect(g: Group, i: number): void {
    if (g.stamp[i] !== g.gen) {
      g.stamp[i] = g.gen;
      this.aff.push(i);
    }
  }

  private nextGen(g: Group): void {
    g.gen = g.gen === 0x7fffffff ? 1 : g.gen + 1;
    this.aff.length = 0;
  }

  private processSample(dev: Dev, sample: EngineSample): void {
    const g = dev.group;
    const ts = sample.ts;
    let aff = this.affectedBy(g, sample.metrics);
    if (g.flat.size > 0) {
      const woken = this.wakeFlat(dev, sample);
      if (woken) aff = this.withWoken(g, sample.metrics, woken);
    }
    for (const i of aff) this.touched.push(i);
    // A: bring each affected rule up to the sample's time with the values it had before.
    for (const i of aff) if ((dev.dues[i] as number) <= ts) this.advanceRule(dev, i, ts, false);
    // B: apply the sample.
    if (ts > dev.last) dev.last = ts;
    for (const m in sample.metrics) {
      const v = sample.metrics[m] as MetricValue;
      const slot = g.slot.get(m);
      if (slot !== undefined && !(ts < (dev.vts[slot] as number))) {
        dev.vals[slot] = v;
        dev.vts[slot] = ts;
      }
      const ws = g.windowsByMetric.get(m);
      if (ws) for (const w of ws) this.windowAdd(dev, w, ts, v, sample.metrics);
    }
    for (const i of aff) {
      if (g.metricAbsence[i]) this.touchMetricAbsence(dev, i, sample);
    }
    // C: evaluate at the sample's time (or at the rule's clock, for a late sample).
    for (const i of aff) this.stepRule(dev, i, ts, sample);
  }

  /**
   * The flat rules this sample must step: those it raises, those busy for the device, and all
   * of a metric whose value cannot be compared here (not a number, or late). The rest stay idle
   * and are counted as evaluated.
   */
  private wakeFlat(dev: Dev, sample: EngineSample): number[] | null {
    const g = dev.group;
    const observer = this.observer;
    let woken: number[] | null = null;
    for (const m in sample.metrics) {
      const f = g.flat.get(m);
      if (!f) continue;
      const v = sample.metrics[m];
      const usable = typeof v === 'number' && !(sample.ts < (dev.vts[g.slot.get(m) as number] as number));
      for (let k = 0; k < f.idx.length; k++) {
        const i = f.idx[k] as number;
        if (
          !usable ||
          dev.st[i] !== undefined ||
          (dev.dues[i] as number) < Number.POSITIVE_INFINITY ||
          raisedBy(f.op[k] as number, v as number, f.thr[k] as number)
        ) {
          if (woken) woken.push(i);
          else woken = [i];
          continue;
        }
        (g.stats[i] as RuleStats).evaluations++;
        if (observer) observer.evaluated((g.rules[i] as LoadedRule).id);
      }
    }
    return woken;
  }

  /** affectedBy's list with the woken flat rules in their usual places (event order follows it). */
  private withWoken(g: Group, metrics: Record<string, MetricValue>, woken: number[]): number[] {
    this.nextGen(g);
    for (const m in metrics) {
      const list = g.byMetric.get(m);
      if (list) for (const i of list) if (g.flatRule[i] === 0 || woken.includes(i)) this.collect(g, i);
    }
    for (const i of g.onMessage) this.collect(g, i);
    return this.aff.slice();
  }

  /**
   * The rules a sample with these metrics touches, in a stable order. A device sends the
   * same metric names message after message, so the last answer per group is kept.
   */
  private affectedBy(g: Group, metrics: Record<string, MetricValue>): readonly number[] {
    let k = 0;
    let same = g.lastAff !== null;
    for (const m in metrics) {
      if (same && g.lastKeys[k] !== m) same = false;
      k++;
    }
    if (same && k === g.lastKeys.length) return g.lastAff as number[];
    this.nextGen(g);
    for (const m in metrics) {
      const list = g.byMetric.get(m);
      if (list) for (const i of list) if (g.flatRule[i] === 0) this.collect(g, i);
    }
    for (const i of g.onMessage) this.collect(g, i);
    g.lastKeys = Object.keys(metrics);
    g.lastAff = this.aff.slice();
    return g.lastAff;
  }

  private windowAdd(
    dev: Dev,
    w: number,
    ts: number,
    v: MetricValue,
    metrics: Record<string, MetricValue>,
  ): void {
    const spec = dev.group.windows[w] as WindowSpec;
    if (spec.where) {
      const wm = spec.where.metric;
      let wv: MetricValue | undefined = metrics[wm];
      if (wv === undefined) {
        const slot = dev.group.slot.get(wm);
        wv = slot === undefined ? undefined : dev.vals[slot];
      }
      if (wv === undefined) return;
      try {
        if (!compare(wm, wv, spec.where.op, spec.where.value)) return;
      } catch {
        return; // a where over a mistyped metric admits nothing; the check command warns about it
      }
    }
    let num: number;
    if (typeof v === 'number') num = v;
    else if (spec.fn === 'count') num = 0;
    else return;
    let data = dev.wins[w];
    if (!data) {
      data = newWindow(spec);
      dev.wins[w] = data;
    }
    windowInsert(spec, data, ts, num);
  }

  private touchMetricAbsence(dev: Dev, i: number, sample: EngineSample): void {
    const rule = dev.group.rules[i] as LoadedRule;
    for (let s = dev.st[i]; s; s = s.next) {
      if (!s.ls) continue;
      for (const l of rule.leaves) {
        if (l instanceof AbsentLeaf && l.metric !== null && l.metric in sample.metrics) {
          const ref = s.ls[l.stateSlot];
          if (typeof ref === 'number' && sample.ts > ref) s.ls[l.stateSlot] = sample.ts;
        }
      }
    }
  }

  private processFault(dev: Dev, f: EngineFault): void {
    const g = dev.group;
    this.nextGen(g);
    const list = g.onFault.get(f.code);
    if (list) for (const i of list) this.collect(g, i);
    const faultRules = this.aff.length;
    for (const i of g.onMessage) this.collect(g, i);
    const aff = this.aff.slice();
    for (const i of aff) this.touched.push(i);
    for (const i of aff) if ((dev.dues[i] as number) <= f.ts) this.advanceRule(dev, i, f.ts, false);
    if (f.ts > dev.last) dev.last = f.ts;
    const touched: RState[] = [];
    for (let n = 0; n < faultRules; n++) {
      const i = aff[n] as number;
      const rule = g.rules[i] as LoadedRule;
      const p = this.paramsOf(dev, i);
      let s: RState;
      if (rule.perCode) {
        let found = dev.st[i];
        while (found && found.code !== f.code) found = found.next;
        if (!found) {
          found = newState(f.code);
          found.next = dev.st[i];
          dev.st[i] = found;
        }
        s = found;
      } else {
        s = dev.st[i] ?? newState();
        dev.st[i] = s;
      }
      if (!s.ls) s.ls = new Array<number | number[] | null>(rule.stateSlots).fill(null);
      for (const leaf of rule.faultLeaves) if (leaf.codes.has(f.code)) leaf.record(s.ls, f.ts, p);
      pushEvidence(s, [f.ts, f.code]);
      touched.push(s);
    }
    for (const i of aff) this.stepRule(dev, i, f.ts, null);
    // Faults that land in an incident already open add to it.
    for (const s of touched) {
      if (s.open && !Number.isNaN(s.fs) && s.fs < Math.max(f.ts, s.at) && s.occ > 0) {
        s.occ++;
        const i = this.indexOfState(dev, s);
        if (i >= 0) this.queue(dev, i, s, 'rule.updated', Math.max(f.ts, s.at), { reason: 'occurrence' });
      }
    }
  }

  private indexOfState(dev: Dev, target: RState): number {
    for (let i = 0; i < dev.st.length; i++) for (let s = dev.st[i]; s; s = s.next) if (s === target) return i;
    return -1;
  }

  // ---------------------------------------------------------------- evaluation

  private setCtx(dev: Dev, i: number, s: RState, t: number): EvalCtx {
    const c = this.ctx;
    const rule = dev.group.rules[i] as LoadedRule;
    c.t = t;
    c.vals = dev.vals;
    c.vts = dev.vts;
    c.slots = dev.group.leafSlots[i] as number[];
    c.wslots = dev.group.leafWslots[i] as number[];
    c.wins = dev.wins;
    c.params = this.paramsOf(dev, i);
    c.maxGap = rule.maxGapMs;
    c.absRef = Math.max(dev.last, dev.since);
    c.wantExpiry = s.c === PENDING || s.c === CLEARING;
    c.since = dev.since;
    c.ls = s.ls;
    this.ctxState = s;
    this.ctxRule = rule;
    return c;
  }

  /** Sparse write: an unreachable deadline is not stored for a rule that never had one. */
  private setDue(dev: Dev, i: number, d: number): void {
    if (d === Number.POSITIVE_INFINITY && dev.dues[i] === undefined) return;
    dev.dues[i] = d;
  }

  private chainDue(dev: Dev, i: number): number {
    let d = Number.POSITIVE_INFINITY;
    for (let s = dev.st[i]; s; s = s.next) if (s.due < d) d = s.due;
    return d;
  }

  /** Re-derives a rule's next deadline for a device from scratch (after regroup, restore, register). */
  private refreshDue(dev: Dev, i: number): void {
    const rule = dev.group.rules[i] as LoadedRule;
    if (rule.perCode || dev.st[i]) {
      for (let s = dev.st[i]; s; s = s.next) s.due = this.safeDue(dev, i, s);
      this.setDue(dev, i, this.chainDue(dev, i));
      return;
    }
    const s = this.freshScratch();
    s.at = Number.isFinite(dev.last) ? dev.last : Number.NEGATIVE_INFINITY;
    this.setDue(dev, i, this.safeDue(dev, i, s));
  }

  private safeDue(dev: Dev, i: number, s: RState): number {
    try {
      return this.computeDue(dev, i, s);
    } catch (err) {
      this.fail(dev.group.rules[i] as LoadedRule, dev, err, s.at);
      return Number.POSITIVE_INFINITY;
    }
  }

  private computeDue(dev: Dev, i: number, s: RState): number {
    const rule = dev.group.rules[i] as LoadedRule;
    const c = this.setCtx(dev, i, s, s.at);
    let d = rule.when.next(c);
    if (rule.gate) d = Math.min(d, rule.gate.next(c));
    if (s.c >= ON) d = Math.min(d, rule.clear.next(c));
    if (s.c === PENDING) {
      const due = s.ps + resolveDuration(rule.forRef, c.params);
      d = Math.min(d, s.open ? due : Math.max(due, s.cool));
    } else if (s.c === CLEARING) {
      d = Math.min(d, s.cs + resolveDuration(rule.clearForRef, c.params));
    }
    if (s.open && !Number.isNaN(s.hold) && s.c <= PENDING) d = Math.min(d, s.hold);
    const esc = this.escalationDue(rule, s);
    if (esc < d) d = esc;
    // Deadlines are strictly after the clock; anything else would loop.
    return d > s.at ? d : Number.POSITIVE_INFINITY;
  }

  private escalationDue(rule: LoadedRule, s: RState): number {
    if (!s.open || s.c < ON || s.esc >= rule.escalate.length) return Number.POSITIVE_INFINITY;
    return s.fs + (rule.escalate[s.esc] as { afterMs: number }).afterMs;
  }

  /** Resets the shared scratch state in place: stateless rules are evaluated on it without allocating. */
  private freshScratch(): RState {
    const s = this.scratch;
    s.at = Number.NEGATIVE_INFINITY;
    s.c = OFF;
    s.ps = Number.NaN;
    s.cs = Number.NaN;
    s.open = false;
    s.fs = Number.NaN;
    s.ips = Number.NaN;
    s.sev = 0;
    s.esc = 0;
    s.hold = Number.NaN;
    s.cool = Number.NEGATIVE_INFINITY;
    s.fl = null;
    s.fc = 0;
    s.occ = 0;
    s.ls = null;
    s.ev = null;
    s.evt = false;
    s.code = null;
    s.next = undefined;
    s.due = Number.POSITIVE_INFINITY;
    return s;
  }

  /**
   * Advances a rule's states for a device through their deadlines up to `target`.
   * From tick, data-driven rules stop at lastTs + maxGap: beyond it the data says
   * nothing, and a batch arriving later must find the state where the data left it.
   */
  private advanceRule(dev: Dev, i: number, target: number, fromTick: boolean): void {
    const rule = dev.group.rules[i] as LoadedRule;
    const cap = fromTick && !rule.uncapped ? Math.min(target, dev.last + rule.maxGapMs) : target;
    if (rule.perCode) {
      for (let s = dev.st[i]; s; s = s.next) {
        this.advanceState(dev, i, s, cap);
        if (fromTick) this.escalateTo(dev, i, s, target);
      }
      this.gcChain(dev, i);
      this.setDue(dev, i, this.chainDue(dev, i));
      return;
    }
    let s = dev.st[i];
    if (!s) {
      if (!((dev.dues[i] as number) <= cap)) return;
      s = this.freshScratch();
      s.due = dev.dues[i] ?? Number.POSITIVE_INFINITY;
    }
    this.advanceState(dev, i, s, cap);
    if (fromTick) this.escalateTo(dev, i, s, target);
    this.store(dev, i, s);
  }

  private advanceState(dev: Dev, i: number, s: RState, target: number): void {
    let guard = 0;
    while (s.due <= target) {
      this.stepState(dev, i, s, s.due, null);
      if (++guard > 100_000) {
        // A deadline that does not move forward is a bug; stop rather than spin.
        this.fail(dev.group.rules[i] as LoadedRule, dev, new Error('deadline loop'), s.at);
        s.due = Number.POSITIVE_INFINITY;
      }
    }
  }

  private stepRule(dev: Dev, i: number, t: number, sample: EngineSample | null): void {
    const rule = dev.group.rules[i] as LoadedRule;
    if (rule.perCode) {
      for (let s = dev.st[i]; s; s = s.next) this.stepState(dev, i, s, Math.max(t, s.at), sample);
      this.gcChain(dev, i);
      this.setDue(dev, i, this.chainDue(dev, i));
      return;
    }
    let s = dev.st[i];
    // The hot path of a fleet: most rules are idle for most devices. When a quiet rule
    // stays unraised, the full step would compute the same "nothing" it started from.
    if (!s && dev.group.quietIdle[i] === 1 && !((dev.dues[i] as number) < Number.POSITIVE_INFINITY)) {
      if (this.staysQuiet(dev, i, rule, Math.max(t, dev.last))) return;
    }
    if (!s) {
      // An idle rule remembers nothing, so its clock is the device's latest time: a late
      // sample must not be evaluated back in the past any more than for a busy rule.
      s = this.freshScratch();
      s.at = dev.last;
    }
    this.stepState(dev, i, s, Math.max(t, s.at), sample);
    this.store(dev, i, s);
  }

  /**
   * For an idle quiet rule: true when the sample leaves it idle (counted as an evaluation,
   * nothing else to do). False sends it down the full step, which also records any error.
   */
  private staysQuiet(dev: Dev, i: number, rule: LoadedRule, t: number): boolean {
    const c = this.ctx;
    c.t = t;
    c.vals = dev.vals;
    c.vts = dev.vts;
    c.slots = dev.group.leafSlots[i] as number[];
    c.wslots = dev.group.leafWslots[i] as number[];
    c.wins = dev.wins;
    c.params = this.paramsOf(dev, i);
    c.maxGap = rule.maxGapMs;
    c.absRef = Math.max(dev.last, dev.since);
    c.wantExpiry = false;
    c.since = dev.since;
    c.ls = null;
    try {
      if (rule.when.eval(c) === true && (!rule.gate || rule.gate.eval(c) === true)) return false;
    } catch {
      return false;
    }
    (this.stats.get(rule.id) as RuleStats).evaluations++;
    this.observer?.evaluated(rule.id);
    return true;
  }

  /** Keeps a state that has something to remember; drops one that is idle again. */
  private store(dev: Dev, i: number, s: RState): void {
    const rule = dev.group.rules[i] as LoadedRule;
    const idle = this.isIdle(rule, s);
    if (s === this.scratch) {
      if (!idle) {
        const copy = newState();
        Object.assign(copy, s);
        dev.st[i] = copy;
        this.setDue(dev, i, copy.due);
        this.scratch.ls = null;
        this.scratch.ev = null;
        this.scratch.fl = null;
        return;
      }
      this.setDue(dev, i, s.due);
      return;
    }
    if (idle) {
      dev.st[i] = undefined;
      // An idle state's only deadlines are the stateless ones, which it just computed.
    }
    this.setDue(dev, i, s.due);
  }

  private gcChain(dev: Dev, i: number): void {
    const rule = dev.group.rules[i] as LoadedRule;
    let prev: RState | undefined;
    for (let s = dev.st[i]; s; s = s.next) {
      if (this.isIdle(rule, s)) {
        if (prev) prev.next = s.next;
        else dev.st[i] = s.next;
      } else prev = s;
    }
  }

  private isIdle(rule: LoadedRule, s: RState): boolean {
    if (s.c !== OFF || s.open || s.cool > s.at) return false;
    if (s.fl) {
      const horizon = s.at - (rule.flapping?.withinMs ?? 0);
      while (s.fl.length > 0 && (s.fl[0] as number) <= horizon) s.fl.shift();
      if (s.fl.length > 0) return false;
      s.fl = null;
    }
    if (s.ls) {
      let empty = true;
      for (const leaf of rule.faultLeaves) {
        const occ = s.ls[leaf.stateSlot];
        if (Array.isArray(occ)) {
          while (occ.length > 0 && (occ[0] as number) <= s.at - leaf.withinMs) occ.shift();
          if (occ.length > 0) empty = false;
          else s.ls[leaf.stateSlot] = null;
        }
      }
      if (empty) for (const v of s.ls) if (v !== null && !Array.isArray(v)) empty = false;
      if (!empty) return false;
      s.ls = null;
    }
    s.ev = null;
    s.evt = false;
    return true;
  }

  private stepState(dev: Dev, i: number, s: RState, t: number, sample: EngineSample | null): void {
    const rule = dev.group.rules[i] as LoadedRule;
    const stats = this.stats.get(rule.id) as RuleStats;
    try {
      stats.evaluations++;
      this.observer?.evaluated(rule.id);
      // Evidence is recorded before deciding, so a resolve carries the sample that cleared it;
      // an episode that starts now records its first sample when it goes pending.
      this.curSample = null;
      if (sample && rule.metrics.length > 0) {
        if (isActive(s)) pushEvidence(s, [sample.ts, pick(sample, rule.metrics)]);
        else this.curSample = sample;
      }
      this.transition(dev, i, s, t);
      this.curSample = null;
      s.due = this.computeDue(dev, i, s);
    } catch (err) {
      // The state stays as it was; the error is counted, never read as "false".
      this.curSample = null;
      s.at = Math.max(s.at, t);
      s.due = Number.POSITIVE_INFINITY;
      this.fail(rule, dev, err, t);
    }
  }

  private fail(rule: LoadedRule, dev: Dev | null, err: unknown, at: number): void {
    const stats = this.stats.get(rule.id);
    if (stats) {
      stats.errors++;
      stats.lastError = {
        message: err instanceof Error ? err.message : String(err),
        deviceId: dev?.info.id ?? null,
        at,
      };
    }
    this.observer?.error(rule.id, err);
  }

  private transition(dev: Dev, i: number, s: RState, t: number): void {
    const rule = dev.group.rules[i] as LoadedRule;
    const c = this.setCtx(dev, i, s, t);
    s.at = t;
    const when = rule.when.eval(c);
    const gate = rule.gate ? rule.gate.eval(c) : true;
    const raise = when === true && gate === true;
    if (s.c === OFF) {
      if (raise) {
        s.c = PENDING;
        s.ps = t;
        if (this.curSample) pushEvidence(s, [this.curSample.ts, pick(this.curSample, rule.metrics)]);
      }
    } else if (s.c === PENDING) {
      if (!raise) {
        s.c = OFF;
        s.ps = Number.NaN;
      }
    } else {
      const clear = rule.clear.eval(c);
      if (s.c === ON && clear === true) {
        s.c = CLEARING;
        s.cs = t;
      } else if (s.c === CLEARING && clear !== true) {
        // Unknown interrupts clearing like false does: resolving needs evidence.
        s.c = ON;
        s.cs = Number.NaN;
      }
    }
    if (s.c === PENDING) {
      const forMs = resolveDuration(rule.forRef, c.params);
      if (t >= s.ps + forMs && (s.open || t >= s.cool)) this.condOn(dev, i, s, t);
    }
    if (s.c === CLEARING && t >= s.cs + resolveDuration(rule.clearForRef, c.params))
      this.condOff(dev, i, s, t);
    if (s.open && s.c <= PENDING && !Number.isNaN(s.hold) && t >= s.hold)
      this.closeIncident(dev, i, s, t, 'cleared');
    this.escalateTo(dev, i, s, t);
  }

  private flapping(rule: LoadedRule, s: RState, t: number): boolean {
    const f = rule.flapping;
    if (!f) return false;
    if (!s.fl) s.fl = [];
    s.fl.push(t);
    while (s.fl.length > 0 && (s.fl[0] as number) <= t - f.withinMs) s.fl.shift();
    if (s.fl.length > f.transitions) s.fl.splice(0, s.fl.length - f.transitions);
    return s.fl.length >= f.transitions;
  }

  private condOn(dev: Dev, i: number, s: RState, t: number): void {
    const rule = dev.group.rules[i] as LoadedRule;
    s.c = ON;
    s.cs = Number.NaN;
    this.flapping(rule, s, t);
    if (s.open) {
      // Re-fired while flap control held the incident open: same incident, one more flap.
      s.hold = Number.NaN;
      s.fc++;
      this.queue(dev, i, s, 'rule.updated', t, { reason: 'retriggered' });
      return;
    }
    s.open = true;
    dev.open++;
    s.fs = t;
    s.ips = s.ps;
    s.sev = SEVERITIES.indexOf(rule.severity);
    s.esc = 0;
    s.fc = 0;
    s.hold = Number.NaN;
    s.occ = 0;
    if (rule.faultLeaves.length > 0) {
      const c = this.setCtx(dev, i, s, t);
      s.occ = (rule.faultLeaves[0] as { count(c: EvalCtx): number }).count(c);
    }
    const stats = this.stats.get(rule.id) as RuleStats;
    stats.firedTotal++;
    stats.firing++;
    this.observer?.fired(rule.id);
    this.queue(dev, i, s, 'rule.fired', t, {});
  }

  private condOff(dev: Dev, i: number, s: RState, t: number): void {
    const rule = dev.group.rules[i] as LoadedRule;
    s.c = OFF;
    s.cs = Number.NaN;
    s.ps = Number.NaN;
    if (this.flapping(rule, s, t) && s.open && rule.flapping) {
      const wasHolding = !Number.isNaN(s.hold);
      s.hold = t + rule.flapping.holdOpenMs;
      if (!wasHolding && s.fc === 0) this.queue(dev, i, s, 'rule.updated', t, { reason: 'flapping' });
      return;
    }
    if (s.open) this.closeIncident(dev, i, s, t, 'cleared');
  }

  private closeIncident(dev: Dev, i: number, s: RState, t: number, reason: ResolveReason): void {
    const rule = dev.group.rules[i] as LoadedRule;
    this.queue(dev, i, s, 'rule.resolved', t, { reason, resolvedAt: t, durationMs: t - s.fs });
    s.open = false;
    dev.open = Math.max(0, dev.open - 1);
    s.hold = Number.NaN;
    s.cool = t + rule.cooldownMs;
    s.ev = null;
    s.evt = false;
    const stats = this.stats.get(rule.id);
    if (stats) stats.firing = Math.max(0, stats.firing - 1);
  }

  private escalateTo(dev: Dev, i: number, s: RState, t: number): void {
    const rule = dev.group.rules[i] as LoadedRule;
    while (s.open && s.c >= ON && s.esc < rule.escalate.length) {
      const step = rule.escalate[s.esc] as { afterMs: number; severity: Severity };
      const at = s.fs + step.afterMs;
      if (at > t) break;
      s.esc++;
      const idx = SEVERITIES.indexOf(step.severity);
      if (idx > s.sev) {
        const previous = SEVERITIES[s.sev] as Severity;
        s.sev = idx;
        this.queue(dev, i, s, 'rule.updated', at, { reason: 'escalated', previousSeverity: previous });
      }
    }
  }

  // ---------------------------------------------------------------- events

  private queue(
    dev: Dev,
    i: number,
    s: RState,
    type: RuleEvent['type'],
    t: number,
    extra: {
      reason?: UpdateReason | ResolveReason;
      previousSeverity?: Severity;
      resolvedAt?: number;
      durationMs?: number;
    },
  ): void {
    const rule = dev.group.rules[i] as LoadedRule;
    const c = this.setCtx(dev, i, s, t);
    const p = c.params;
    const primary = rule.primary;
    let value: MetricValue | null = null;
    try {
      value = primary ? primary.value(c) : null;
    } catch {
      value = null;
    }
    const threshold = primary ? primary.threshold(p) : null;
    const severity = SEVERITIES[s.sev] as Severity;
    const fingerprint = rule.perCode ? `${dev.info.id}:fault:${s.code}` : `${rule.id}:${dev.info.id}`;
    const pendingSince = Number.isNaN(s.ips) ? null : s.ips;
    const fields: Record<string, unknown> = {
      'device.id': dev.info.id,
      'device.model': dev.info.model,
      'device.firmware': dev.info.firmware,
      'device.region': dev.info.region,
      'device.batch': dev.info.batch,
      'device.ownerId': dev.info.ownerId,
      'rule.id': rule.id,
      severity,
      category: rule.category,
      metric: primary?.metric ?? null,
      value,
      threshold,
      duration: t - (pendingSince ?? s.fs),
      occurrences: rule.faultLeaves.length > 0 ? s.occ : null,
      code: s.code,
    };
    const tctx = { fields, params: p.values, valueIsDuration: primary?.kind === 'absent' };
    const base = {
      ruleId: rule.id,
      ruleVersion: rule.version,
      ruleFile: rule.file,
      fingerprint,
      incidentId: `${fingerprint}@${s.fs}`,
      title: renderTemplate(rule.titleTemplate, tctx),
      description: renderTemplate(rule.descriptionTemplate, tctx),
      severity,
      category: rule.category,
      safety: rule.safety,
      actions: { ...rule.actions },
      labels: { ...rule.labels },
      device: { ...dev.info },
      deviceTime: t,
      serverTime: this.serverNow,
      pendingSince,
      firingSince: s.fs,
      metric: primary?.metric ?? null,
      value,
      threshold,
      params: { ...p.values },
      occurrences: rule.faultLeaves.length > 0 ? s.occ : null,
      code: s.code,
      flapCount: s.fc,
      evidence: this.evidence(dev, i, s, c),
      late: false,
      stale: false,
    };
    let e: RuleEvent;
    if (type === 'rule.fired') e = { ...base, type };
    else if (type === 'rule.updated') {
      e = {
        ...base,
        type,
        reason: (extra.reason ?? 'occurrence') as UpdateReason,
        previousSeverity: extra.previousSeverity ?? null,
      };
    } else {
      e = {
        ...base,
        type,
        reason: (extra.reason ?? 'cleared') as ResolveReason,
        resolvedAt: extra.resolvedAt ?? t,
        durationMs: extra.durationMs ?? t - s.fs,
      };
    }
    this.pending.push(e);
  }

  private evidence(dev: Dev, i: number, s: RState, c: EvalCtx): RuleEvidence {
    const rule = dev.group.rules[i] as LoadedRule;
    const samples: EvidenceSample[] = [];
    const faults: EvidenceFault[] = [];
    for (const e of s.ev ?? []) {
      if (typeof e[1] === 'string') faults.push({ ts: e[0], code: e[1] });
      else samples.push({ ts: e[0], metrics: { ...e[1] } });
    }
    const windows = rule.leaves
      .filter((l): l is AggregateLeaf => l instanceof AggregateLeaf)
      .map((l) => {
        const slot = c.wslots[l.leafIndex] ?? -1;
        const a = windowAggregate(l.spec, slot >= 0 ? dev.wins[slot] : undefined, c.t, l.minSamples);
        return {
          metric: l.metric,
          fn: l.spec.fn,
          windowMs: l.spec.windowMs,
          value: a.value,
          samples: a.samples,
        };
      });
    return { samples, faults, windows, truncated: s.evt };
  }

  /**
   * Emits what this operation decided. late: decided well after its device time.
   * stale: the incident both opened and closed within this operation and ended
   * longer ago than staleAfter, so nobody should be paged for it.
   */
  private flush(deviceNow: number): void {
    if (this.pending.length === 0) return;
    const events = this.pending;
    this.pending = [];
    const closedAt = new Map<string, number>();
    for (const e of events) if (e.type === 'rule.resolved') closedAt.set(e.incidentId, e.deviceTime);
    const out: RuleEvent[] = [];
    for (const e of events) {
      e.late = deviceNow - e.deviceTime > this.lateAfterMs;
      const closed = closedAt.get(e.incidentId);
      e.stale = closed !== undefined && closed < deviceNow - this.staleAfterMs;
      // Several new occurrences in one message make one update with the final count.
      const prev = out[out.length - 1];
      if (
        e.type === 'rule.updated' &&
        e.reason === 'occurrence' &&
        prev?.type === 'rule.updated' &&
        prev.reason === 'occurrence' &&
        prev.incidentId === e.incidentId
      ) {
        out[out.length - 1] = e;
        continue;
      }
      out.push(e);
    }
    for (const e of out) {
      try {
        this.emitFn(e);
      } catch (err) {
        this.observer?.error(e.ruleId, err);
      }
    }
  }

  // ---------------------------------------------------------------- timers

  /** Recomputes a device's wake-up from all its rules (after a tick, reload, restore). */
  private reschedule(dev: Dev): void {
    const g = dev.group;
    let wake = Number.POSITIVE_INFINITY;
    let blocked = Number.POSITIVE_INFINITY;
    for (let i = 0; i < dev.dues.length; i++) {
      const d = dev.dues[i];
      if (d === undefined || d === Number.POSITIVE_INFINITY) continue;
      const gap = g.maxGap[i] as number;
      if (g.uncapped[i] === 0 && d > dev.last + gap) {
        if (d - gap < blocked) blocked = d - gap;
      } else if (d < wake) wake = d;
    }
    if (dev.open > 0) {
      for (let i = 0; i < dev.st.length; i++) {
        for (let s = dev.st[i]; s; s = s.next) {
          const e = this.escalationDue(g.rules[i] as LoadedRule, s);
          if (e < wake) wake = e;
        }
      }
    }
    dev.blocked = blocked;
    this.arm(dev, wake);
  }

  /**
   * After a message: only the rules it touched can have new deadlines, unless the
   * data moved far enough to bring a blocked deadline within reach. Keeps the cost
   * of a message independent of the rules that did not apply to it.
   */
  private rescheduleTouched(dev: Dev): void {
    if (dev.last >= dev.blocked) {
      this.reschedule(dev);
      return;
    }
    const g = dev.group;
    let wake = Number.POSITIVE_INFINITY;
    for (const i of this.touched) {
      const d = dev.dues[i];
      if (d !== undefined && d !== Number.POSITIVE_INFINITY) {
        const gap = g.maxGap[i] as number;
        if (g.uncapped[i] === 0 && d > dev.last + gap) {
          if (d - gap < dev.blocked) dev.blocked = d - gap;
        } else if (d < wake) wake = d;
      }
      if (dev.open > 0) {
        for (let s = dev.st[i]; s; s = s.next) {
          const e = this.escalationDue(g.rules[i] as LoadedRule, s);
          if (e < wake) wake = e;
        }
      }
    }
    this.arm(dev, wake);
  }

  /** Heap entries are never moved: a later wake keeps the earlier entry, which re-arms when it pops. */
  private arm(dev: Dev, wake: number): void {
    if (wake === Number.POSITIVE_INFINITY) return;
    const server = wake + (Number.isNaN(dev.off) ? 0 : dev.off);
    if (server < dev.sched) {
      dev.sched = server;
      this.heap.push(server, dev.info.id);
    }
  }

  /** Fires what is due by server time `now`: for-timers, clear timers, absences, escalations. */
  tick(now: number): void {
    this.serverNow = now;
    for (;;) {
      const top = this.heap.peek();
      if (top === null || top > now) break;
      const id = this.heap.peekId();
      this.heap.pop();
      const dev = this.devices.get(id);
      if (!dev || dev.sched !== top) continue;
      dev.sched = Number.POSITIVE_INFINITY;
      const t = this.deviceNow(dev, now);
      const g = dev.group;
      for (let i = 0; i < dev.dues.length; i++) {
        const d = dev.dues[i];
        if (
          d !== undefined &&
          d <= (g.uncapped[i] === 1 ? t : Math.min(t, dev.last + (g.maxGap[i] as number)))
        ) {
          this.advanceRule(dev, i, t, true);
        }
      }
      if (dev.open > 0) {
        for (let i = 0; i < dev.st.length; i++) {
          for (let s = dev.st[i]; s; s = s.next) if (s.open) this.escalateTo(dev, i, s, t);
        }
      }
      this.flush(t);
      this.reschedule(dev);
      if (dev.sched <= now) {
        // Defensive: never schedule into the past, or this loop would not end.
        dev.sched = now + 1;
        this.heap.push(now + 1, id);
      }
    }
  }

  /** Server time of the next useful tick (never later than needed; may be early), or null. */
  nextDeadline(): number | null {
    return this.heap.peek();
  }

  // ---------------------------------------------------------------- reload

  /** Swaps the rule set; states of rules whose version hash is unchanged carry over untouched. */
  replaceRules(rules: LoadedRule[]): ReplaceResult {
    this.serverNow = this.now();
    const old = this.byId;
    const result: ReplaceResult = { kept: [], reset: [], removed: [], added: [] };
    const incoming = new Set(rules.map((r) => r.id));
    for (const r of rules) {
      const prev = old.get(r.id);
      if (!prev) result.added.push(r.id);
      else if (prev.version === r.version) result.kept.push(r.id);
      else result.reset.push(r.id);
    }
    for (const id of old.keys()) if (!incoming.has(id)) result.removed.push(id);
    this.setRules(rules);
    for (const id of result.removed) this.stats.delete(id);
    const reset = new Set(result.reset);
    const removed = new Set(result.removed);
    for (const dev of this.devices.values()) {
      this.regroup(dev, this.groupFor(dev.info), reset, removed);
      this.flush(this.deviceNow(dev, this.serverNow));
      dev.sched = Number.POSITIVE_INFINITY;
    }
    this.heap.clear();
    for (const dev of this.devices.values()) this.reschedule(dev);
    this.recountFiring();
    return result;
  }

  private recountFiring(): void {
    for (const s of this.stats.values()) s.firing = 0;
    for (const dev of this.devices.values()) {
      dev.group.rules.forEach((r, i) => {
        for (let s = dev.st[i]; s; s = s.next) {
          if (s.open) (this.stats.get(r.id) as RuleStats).firing++;
        }
      });
    }
  }

  // ---------------------------------------------------------------- durability

  snapshot(): RuleStateSnapshot {
    const devices: SnapshotDevice[] = [];
    for (const dev of this.devices.values()) {
      const g = dev.group;
      const info = dev.info;
      const sd: SnapshotDevice = {
        d: [
          info.id,
          info.model,
          info.firmware,
          info.region,
          info.batch,
          info.ownerId,
          info.ownerLocale,
          info.registeredAt ?? null,
        ],
        o: Number.isNaN(dev.off) ? null : dev.off,
        l: Number.isFinite(dev.last) ? dev.last : null,
        s: Number.isFinite(dev.since) ? dev.since : 0,
      };
      g.metrics.forEach((m, j) => {
        const ts = dev.vts[j];
        if (ts !== undefined && !Number.isNaN(ts)) {
          sd.v ??= {};
          sd.v[m] = [ts, dev.vals[j] as MetricValue];
        }
      });
      g.windows.forEach((w, j) => {
        const data = dev.wins[j];
        if (data && Number.isFinite(data.k)) {
          sd.w ??= {};
          sd.w[w.sig] = [data.k, data.a.slice(), num(data.lt) ?? null, data.lv];
        }
      });
      g.rules.forEach((r, i) => {
        const list: SnapshotRuleState[] = [];
        for (let s = dev.st[i]; s; s = s.next) list.push(snapState(s));
        if (list.length > 0) {
          sd.r ??= {};
          sd.r[r.id] = list;
        }
      });
      devices.push(sd);
    }
    const rules: Record<string, string> = {};
    for (const r of this.rules) rules[r.id] = r.version;
    return { format: 'faultline.rules/v1', takenAt: this.now(), rules, devices };
  }

  /**
   * Replaces all state with a snapshot. Timers keep their device-time deadlines, so
   * downtime counts toward them (a for: 10m pending since 09:00 fires at 09:10 or at
   * once after a later restore, if the data has no gap beyond maxGap). The engine's
   * own downtime does not count as device silence: absence references move forward by it.
   * Restore emits nothing itself: timers already due show in nextDeadline() (<= now) and
   * fire on the next tick, after the integrator has attached its listeners.
   */
  restore(snap: RuleStateSnapshot, now: number): void {
    if (snap.format !== 'faultline.rules/v1')
      throw new Error(`unknown snapshot format ${String(snap.format)}`);
    this.serverNow = now;
    this.devices.clear();
    this.heap.clear();
    const downtime = Math.max(0, now - snap.takenAt);
    for (const sd of snap.devices) {
      const [id, model, firmware, region, batch, ownerId, ownerLocale, registeredAt] = sd.d;
      const info: EngineDevice = { id, model, firmware, region, batch, ownerId, ownerLocale };
      if (registeredAt !== null) info.registeredAt = registeredAt;
      const dev = this.newDev(info, sd.s);
      dev.off = sd.o ?? Number.NaN;
      dev.last = sd.l ?? Number.NEGATIVE_INFINITY;
      const oldSince = sd.s;
      dev.since = Math.max(dev.last, sd.s) + downtime;
      const g = dev.group;
      for (const [m, [ts, v]] of Object.entries(sd.v ?? {})) {
        const j = g.slot.get(m);
        if (j !== undefined) {
          dev.vals[j] = v;
          dev.vts[j] = ts;
        }
      }
      for (const [sig, raw] of Object.entries(sd.w ?? {})) {
        const j = g.wslot.get(sig);
        const spec = j === undefined ? undefined : g.windows[j];
        const [k, a, lt, lv] = raw;
        if (j !== undefined && spec && a.length === spec.buckets * spec.fields) {
          dev.wins[j] = { k, a: a.slice(), lt: lt ?? Number.NaN, lv };
        }
      }
      g.rules.forEach((r, i) => {
        const list = snap.rules[r.id] === r.version ? sd.r?.[r.id] : undefined;
        let head: RState | undefined;
        let tail: RState | undefined;
        for (const ss of list ?? []) {
          const s = unsnapState(ss);
          if (tail) tail.next = s;
          else head = s;
          tail = s;
        }
        dev.st[i] = head;
        if (g.metricAbsence[i]) this.shiftMetricAbsence(dev, i, oldSince, downtime);
        this.refreshDue(dev, i);
      });
      dev.open = countOpen(dev);
    }
    this.recountFiring();
    for (const dev of this.devices.values()) this.reschedule(dev);
  }

  private shiftMetricAbsence(dev: Dev, i: number, oldSince: number, downtime: number): void {
    const rule = dev.group.rules[i] as LoadedRule;
    if (rule.perCode) return;
    let s = dev.st[i];
    if (!s) {
      s = newState();
      s.at = Number.isFinite(dev.last) ? dev.last : Number.NEGATIVE_INFINITY;
      dev.st[i] = s;
    }
    s.ls ??= new Array<number | number[] | null>(rule.stateSlots).fill(null);
    for (const l of rule.leaves) {
      if (!(l instanceof AbsentLeaf) || l.metric === null) continue;
      const own = s.ls[l.stateSlot];
      const slot = dev.group.slot.get(l.metric);
      const seen = slot === undefined ? Number.NaN : (dev.vts[slot] ?? Number.NaN);
      const ref = typeof own === 'number' ? own : Number.isNaN(seen) ? oldSince : Math.max(seen, oldSince);
      s.ls[l.stateSlot] = ref + downtime;
    }
  }

  // ---------------------------------------------------------------- introspection

  describeRules(): RuleDescription[] {
    return this.rules.map((r) => {
      const s = this.stats.get(r.id) as RuleStats;
      return {
        id: r.id,
        version: r.version,
        file: r.file,
        line: r.line,
        title: r.title,
        severity: r.severity,
        category: r.category,
        safety: r.safety,
        enabled: r.enabled,
        firing: s.firing,
        firedTotal: s.firedTotal,
        evaluations: s.evaluations,
        errors: s.errors,
        lastError: s.lastError ? { ...s.lastError } : null,
      };
    });
  }

  /** States of one device (all rules that have one), for tests and the API. */
  ruleStates(deviceId: string): RuleStateView[] {
    const dev = this.devices.get(deviceId);
    if (!dev) return [];
    const out: RuleStateView[] = [];
    dev.group.rules.forEach((r, i) => {
      for (let s = dev.st[i]; s; s = s.next) out.push(view(r, deviceId, s));
    });
    return out;
  }

  deviceCount(): number {
    return this.devices.size;
  }

  /**
   * Approximate bytes of rule state (V8 object and array costs, not JSON size):
   * the figure to watch per device against the 1 KB target.
   */
  stateBytesEstimate(): number {
    const OBJ = 16;
    const FIELD = 8;
    const ARR = 16;
    let total = 0;
    for (const [id, dev] of this.devices) {
      total += OBJ + 11 * FIELD + 40 + id.length + 16; // device record and its map entry
      total += OBJ + 8 * FIELD; // info copy
      total += 2 * ARR + dev.vals.length * (FIELD + 16) + dev.vts.length * FIELD;
      total += ARR + dev.st.length * FIELD + ARR + dev.dues.length * FIELD + ARR + dev.wins.length * FIELD;
      for (const w of dev.wins) if (w) total += OBJ + 4 * FIELD + ARR + w.a.length * FIELD;
      for (const head of dev.st) {
        for (let s = head; s; s = s.next) {
          total += OBJ + 20 * FIELD;
          if (s.fl) total += ARR + s.fl.length * FIELD;
          if (s.ls) for (const v of s.ls) total += FIELD + (Array.isArray(v) ? ARR + v.length * FIELD : 0);
          if (s.ev)
            for (const e of s.ev)
              total +=
                ARR + 2 * FIELD + (typeof e[1] === 'string' ? 0 : OBJ + Object.keys(e[1]).length * 2 * FIELD);
        }
      }
    }
    return total;
  }
}

/**
 * Per-device arrays: exact-size for the usual small groups (a grown array carries
 * V8's spare capacity, which would dominate the state of a quiet device); empty
 * and grown on first write when a model has many rules, most never exercised.
 */
const DENSE_LIMIT = 64;
function slots<T>(n: number, fill: T): T[] {
  return n <= DENSE_LIMIT ? new Array<T>(n).fill(fill) : [];
}

function countOpen(dev: Dev): number {
  let n = 0;
  for (const head of dev.st) for (let s = head; s; s = s.next) if (s.open) n++;
  return n;
}

function pick(sample: EngineSample, metrics: readonly string[]): Record<string, MetricValue> {
  const m: Record<string, MetricValue> = {};
  for (const name of metrics) {
    const v = sample.metrics[name];
    if (v !== undefined) m[name] = v;
  }
  return m;
}

function pushEvidence(s: RState, e: EvidenceEntry): void {
  if (!s.ev) s.ev = [];
  s.ev.push(e);
  if (s.ev.length > EVIDENCE_LIMIT) {
    s.ev.shift();
    s.evt = true;
  }
}

function sortByTs<T extends { ts: number; seq: number }>(items: T[]): T[] {
  for (let i = 1; i < items.length; i++) {
    const a = items[i - 1] as T;
    const b = items[i] as T;
    if (b.ts < a.ts || (b.ts === a.ts && b.seq < a.seq)) {
      return [...items].sort((x, y) => x.ts - y.ts || x.seq - y.seq);
    }
  }
  return items;
}

function snapState(s: RState): SnapshotRuleState {
  const out: SnapshotRuleState = { at: num(s.at) ?? null, c: s.c };
  if (s.code !== null) out.k = s.code;
  if (!Number.isNaN(s.ps)) out.ps = s.ps;
  if (!Number.isNaN(s.cs)) out.cs = s.cs;
  if (s.open) {
    out.open = 1;
    out.fs = s.fs;
    out.sev = s.sev;
    out.esc = s.esc;
    if (!Number.isNaN(s.ips)) out.ips = s.ips;
  }
  if (!Number.isNaN(s.hold)) out.hold = s.hold;
  if (Number.isFinite(s.cool)) out.cool = s.cool;
  if (s.fl && s.fl.length > 0) out.fl = [...s.fl];
  if (s.fc > 0) out.fc = s.fc;
  if (s.occ > 0) out.occ = s.occ;
  if (s.ls) out.ls = s.ls.map((v) => (Array.isArray(v) ? [...v] : v));
  if (s.ev && s.ev.length > 0)
    out.ev = s.ev.map((e) => [e[0], typeof e[1] === 'string' ? e[1] : { ...e[1] }] as EvidenceEntry);
  if (s.evt) out.evt = 1;
  return out;
}

function unsnapState(ss: SnapshotRuleState): RState {
  const s = newState(ss.k ?? null);
  s.at = ss.at ?? Number.NEGATIVE_INFINITY;
  s.c = ss.c;
  s.ps = ss.ps ?? Number.NaN;
  s.cs = ss.cs ?? Number.NaN;
  s.open = ss.open === 1;
  s.fs = ss.fs ?? Number.NaN;
  s.ips = ss.ips ?? Number.NaN;
  s.sev = ss.sev ?? 0;
  s.esc = ss.esc ?? 0;
  s.hold = ss.hold ?? Number.NaN;
  s.cool = ss.cool ?? Number.NEGATIVE_INFINITY;
  s.fl = ss.fl ? [...ss.fl] : null;
  s.fc = ss.fc ?? 0;
  s.occ = ss.occ ?? 0;
  s.ls = ss.ls ? ss.ls.map((v) => (Array.isArray(v) ? [...v] : v)) : null;
  s.ev = ss.ev
    ? ss.ev.map((e) => [e[0], typeof e[1] === 'string' ? e[1] : { ...e[1] }] as EvidenceEntry)
    : null;
  s.evt = ss.evt === 1;
  return s;
}

function view(rule: LoadedRule, deviceId: string, s: RState): RuleStateView {
  const condition = (['off', 'pending', 'on', 'clearing'] as const)[s.c];
  let phase: RulePhase;
  if (s.open) phase = 'firing';
  else if (s.c === PENDING) phase = 'pending';
  else if (s.cool > s.at) phase = 'resolved';
  else phase = 'inactive';
  return {
    ruleId: rule.id,
    deviceId,
    code: s.code,
    phase,
    condition,
    pendingSince: Number.isNaN(s.ps) ? null : s.ps,
    firingSince: s.open ? s.fs : null,
    clearingSince: Number.isNaN(s.cs) ? null : s.cs,
    severity: s.open ? (SEVERITIES[s.sev] as Severity) : null,
    flapping: s.open && !Number.isNaN(s.hold),
    holdUntil: Number.isNaN(s.hold) ? null : s.hold,
    cooldownUntil: Number.isFinite(s.cool) && s.cool > s.at ? s.cool : null,
    clock: Number.isFinite(s.at) ? s.at : null,
  };
}

/** See Group.flat: quiet, one metric, `when` a single comparison with a number fixed for the group. */
function flatten(
  rules: LoadedRule[],
  params: ParamSet[],
  deviceOverrides: boolean[],
): { flat: Map<string, FlatRules>; flatRule: Uint8Array } {
  const lists = new Map<string, Array<{ i: number; op: number; thr: number }>>();
  const flatRule = new Uint8Array(rules.length);
  rules.forEach((r, i) => {
    const leaf = r.when;
    if (!(leaf instanceof ThresholdLeaf) || deviceOverrides[i] || !quietWhenIdle(r)) return;
    if (r.metrics.length !== 1 || r.metrics[0] !== leaf.metric) return;
    const op = FLAT_OPS[leaf.op];
    const thr = resolveValue(leaf.ref, params[i] as ParamSet);
    if (op === undefined || typeof thr !== 'number' || !Number.isFinite(thr)) return;
    flatRule[i] = 1;
    const list = lists.get(leaf.metric) ?? [];
    list.push({ i, op, thr });
    lists.set(leaf.metric, list);
  });
  const flat = new Map<string, FlatRules>();
  for (const [m, list] of lists) {
    flat.set(m, {
      idx: list.map((e) => e.i),
      op: Uint8Array.from(list.map((e) => e.op)),
      thr: Float64Array.from(list.map((e) => e.thr)),
    });
  }
  return { flat, flatRule };
}

/** See Group.quietIdle. */
function quietWhenIdle(rule: LoadedRule): boolean {
  if (rule.perCode || rule.faultLeaves.length > 0 || rule.stateSlots > 0) return false;
  return rule.leaves.every((l) => l instanceof ThresholdLeaf && l.holdFor === null);
}
