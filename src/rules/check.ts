/**
 * Static checks for rule authors, against the model catalogue (models.ts):
 * metrics and fault codes no model reports, comparisons the metric's type cannot
 * satisfy, durations shorter than the reporting interval, and conditions that can
 * never hold or never clear (a small interval analysis over the condition's
 * disjunctive normal form; anything it cannot reason about counts as satisfiable,
 * so it warns only when it is sure).
 */
import type { MetricValue } from '../contract/index.js';
import {
  AggregateLeaf,
  AllNode,
  AnyNode,
  type CNode,
  FaultsLeaf,
  Leaf,
  type LoadedRule,
  NotNode,
  type ParamSet,
  paramsFor,
  resolveDuration,
  ThresholdLeaf,
  type ValueRef,
} from './compile.js';
import { formatDuration } from './duration.js';
import { familiesForGlobs, type MetricSpec, MODEL_CATALOGUE, type ModelFamily } from './models.js';
import { type Comparison, type RuleInput, SEVERITIES } from './schema.js';

export interface CheckWarning {
  path: Array<string | number>;
  message: string;
}

interface Literal {
  leaf: Leaf;
  positive: boolean;
}

const MAX_CONJUNCTS = 256;

/** DNF of node (or of its negation); null when it grows past MAX_CONJUNCTS. */
function dnf(node: CNode, positive: boolean): Literal[][] | null {
  if (node instanceof Leaf) return [[{ leaf: node, positive }]];
  if (node instanceof NotNode) return dnf(node.kid, !positive);
  const kids = node instanceof AllNode || node instanceof AnyNode ? node.kids : [];
  const conjunctive = node instanceof AllNode === positive;
  const parts: Literal[][][] = [];
  for (const k of kids) {
    const d = dnf(k, positive);
    if (d === null) return null;
    parts.push(d);
  }
  if (!conjunctive) {
    const out = parts.flat();
    return out.length > MAX_CONJUNCTS ? null : out;
  }
  let acc: Literal[][] = [[]];
  for (const p of parts) {
    const next: Literal[][] = [];
    for (const a of acc) for (const b of p) next.push([...a, ...b]);
    if (next.length > MAX_CONJUNCTS) return null;
    acc = next;
  }
  return acc;
}

const NEGATE: Record<Comparison, Comparison> = {
  '>': '<=',
  '>=': '<',
  '<': '>=',
  '<=': '>',
  '==': '!=',
  '!=': '==',
};

interface NumDomain {
  lo: number;
  loOpen: boolean;
  hi: number;
  hiOpen: boolean;
  not: number[];
  never: boolean;
}

interface SetDomain {
  allowed: Set<string | boolean> | null;
  not: Set<string | boolean>;
  never: boolean;
}

function specFor(metric: string, families: readonly ModelFamily[]): MetricSpec | undefined {
  for (const f of families) {
    const s = f.metrics[metric];
    if (s) return s;
  }
  return undefined;
}

function resolved(ref: ValueRef, p: ParamSet): MetricValue | undefined {
  return 'param' in ref ? p.values[ref.param] : ref.value;
}

/** Whether one conjunct of literals can hold, given the catalogue's ranges and value sets. */
function conjunctSatisfiable(lits: Literal[], families: readonly ModelFamily[], p: ParamSet): boolean {
  const nums = new Map<string, NumDomain>();
  const sets = new Map<string, SetDomain>();
  for (const { leaf, positive } of lits) {
    let variable: string;
    let metric: string;
    let op: Comparison;
    let value: MetricValue | undefined;
    if (leaf instanceof ThresholdLeaf) {
      variable = leaf.metric;
      metric = leaf.metric;
      op = leaf.op;
      value = resolved(leaf.ref, p);
    } else if (leaf instanceof AggregateLeaf && ['avg', 'min', 'max'].includes(leaf.spec.fn)) {
      variable = `${leaf.spec.sig}`;
      metric = leaf.metric;
      op = leaf.op;
      value = resolved(leaf.ref, p);
    } else continue;
    if (value === undefined) continue;
    // A held-for threshold may be false while the comparison holds: only its positive form constrains.
    if (leaf instanceof ThresholdLeaf && leaf.holdFor !== null && !positive) continue;
    if (!positive) op = NEGATE[op];
    const spec = specFor(metric, families);
    const type = spec?.type ?? (typeof value === 'number' ? 'number' : undefined);
    if (type === 'number') {
      let d = nums.get(variable);
      if (!d) {
        d = {
          lo: spec?.min ?? -Infinity,
          loOpen: false,
          hi: spec?.max ?? Infinity,
          hiOpen: false,
          not: [],
          never: false,
        };
        nums.set(variable, d);
      }
      if (typeof value !== 'number') {
        if (op === '==') d.never = true;
        continue;
      }
      if (op === '>' || op === '>=') {
        if (value > d.lo || (value === d.lo && op === '>')) {
          d.lo = value;
          d.loOpen = op === '>';
        }
      } else if (op === '<' || op === '<=') {
        if (value < d.hi || (value === d.hi && op === '<')) {
          d.hi = value;
          d.hiOpen = op === '<';
        }
      } else if (op === '==') {
        if (value > d.lo || (value === d.lo && !d.loOpen)) {
          d.lo = value;
          d.loOpen = false;
        } else d.never = d.never || value < d.lo || (value === d.lo && d.loOpen);
        if (value < d.hi || (value === d.hi && !d.hiOpen)) {
          d.hi = value;
          d.hiOpen = false;
        } else d.never = d.never || value > d.hi || (value === d.hi && d.hiOpen);
      } else d.not.push(value);
    } else if (type === 'string' || type === 'boolean') {
      let d = sets.get(variable);
      if (!d) {
        const allowed =
          type === 'boolean'
            ? new Set<string | boolean>([true, false])
            : spec?.values
              ? new Set<string | boolean>(spec.values)
              : null;
        d = { allowed, not: new Set(), never: false };
        sets.set(variable, d);
      }
      if (op === '==') {
        if (typeof value === 'number') d.never = true;
        else d.allowed = d.allowed ? new Set([...d.allowed].filter((x) => x === value)) : new Set([value]);
      } else if (op === '!=') {
        if (typeof value !== 'number') d.not.add(value);
      }
    }
  }
  for (const d of nums.values()) {
    if (d.never || d.lo > d.hi) return false;
    if (d.lo === d.hi && (d.loOpen || d.hiOpen || d.not.includes(d.lo))) return false;
  }
  for (const d of sets.values()) {
    if (d.never) return false;
    if (d.allowed && [...d.allowed].every((x) => d.not.has(x))) return false;
  }
  return true;
}

function canBeTrue(node: CNode, families: readonly ModelFamily[], p: ParamSet): boolean {
  const d = dnf(node, true);
  if (d === null) return true;
  return d.some((c) => conjunctSatisfiable(c, families, p));
}

function leafKind(l: Leaf): string {
  return l.kind;
}

export function checkRule(rule: LoadedRule, input: RuleInput): CheckWarning[] {
  const out: CheckWarning[] = [];
  const warn = (path: Array<string | number>, message: string) => out.push({ path, message });
  const everyModel = rule.modelGlobs.length === 1 && rule.modelGlobs[0] === '*';
  const families = everyModel ? [...MODEL_CATALOGUE] : familiesForGlobs(rule.modelGlobs);
  const known = MODEL_CATALOGUE.map((f) => `${f.pattern} (${f.name})`).join(', ');
  if (families.length === 0) {
    warn(
      ['scope', 'models'],
      `model glob ${rule.modelGlobs.join(', ')} matches no catalogued model family: ${known}`,
    );
  }
  const sample = families[0]?.models[0] ?? 'X';
  const defaults = paramsFor(rule, sample, null, '\u0000check');

  if (families.length > 0) {
    const names = families.map((f) => f.pattern).join(', ');
    for (const leaf of rule.leaves) {
      const at = [...leaf.path, leafKind(leaf)];
      if (leaf.metric) {
        const spec = specFor(leaf.metric, families);
        if (!spec) {
          const list = families.map((f) => `${f.pattern}: ${Object.keys(f.metrics).join(', ')}`).join('; ');
          warn([...at, 'metric'], `no model in scope (${names}) reports metric "${leaf.metric}" (${list})`);
        } else if (leaf instanceof ThresholdLeaf || leaf instanceof AggregateLeaf) {
          const value = resolved(leaf.ref, defaults);
          const numericOp = !['==', '!='].includes(leaf.op);
          const aggregated = leaf instanceof AggregateLeaf && leaf.spec.fn !== 'count';
          if ((numericOp || aggregated) && spec.type !== 'number') {
            warn(
              [...at, numericOp ? 'op' : 'fn'],
              `"${leaf.metric}" is a ${spec.type} metric: "${numericOp ? leaf.op : (leaf as AggregateLeaf).spec.fn}" needs numbers and will fail at runtime`,
            );
          } else if (leaf instanceof ThresholdLeaf && value !== undefined && typeof value !== spec.type) {
            warn(
              [...at, 'value'],
              `"${leaf.metric}" is a ${spec.type} metric; comparing it with ${typeof value} ${JSON.stringify(value)} never matches`,
            );
          } else if (
            leaf instanceof ThresholdLeaf &&
            typeof value === 'string' &&
            spec.values &&
            !spec.values.includes(value)
          ) {
            warn(
              [...at, 'value'],
              `"${leaf.metric}" takes ${spec.values.join(', ')}; "${value}" never matches`,
            );
          }
        }
      }
      if (leaf instanceof AggregateLeaf && leaf.spec.where && !specFor(leaf.spec.where.metric, families)) {
        warn(
          [...at, 'where', 'metric'],
          `no model in scope (${names}) reports metric "${leaf.spec.where.metric}"`,
        );
      }
      if (leaf instanceof FaultsLeaf) {
        for (const [code, path] of leaf.codePaths) {
          if (!families.some((f) => code in f.faultCodes)) {
            const list = families
              .map((f) => `${f.pattern}: ${Object.keys(f.faultCodes).join(' ')}`)
              .join('; ');
            warn(path, `no model in scope reports fault code "${code}" (${list})`);
          }
        }
      }
    }

    const interval = Math.max(...families.map((f) => f.reportingIntervalMs));
    const slowest = families.find((f) => f.reportingIntervalMs === interval) as ModelFamily;
    const short = (path: Array<string | number>, what: string, ms: number) => {
      if (ms > 0 && ms < interval) {
        warn(
          path,
          `${what} ${formatDuration(ms)} is shorter than the ${slowest.pattern} reporting interval (${formatDuration(interval)}): it completes on the first sample that holds`,
        );
      }
    };
    short(['for'], 'for', resolveDuration(rule.forRef, defaults));
    short(['clear', 'for'], 'clear.for', resolveDuration(rule.clearForRef, defaults));
    for (const leaf of rule.leaves) {
      if (leaf instanceof ThresholdLeaf && leaf.holdFor !== null) {
        short([...leaf.path, 'threshold', 'for'], 'for', resolveDuration(leaf.holdFor, defaults));
      }
      if (leaf instanceof AggregateLeaf) {
        const most = Math.floor(leaf.spec.windowMs / interval);
        if (most < leaf.minSamples) {
          warn(
            [...leaf.path, 'aggregate', 'window'],
            `a ${formatDuration(leaf.spec.windowMs)} window holds at most ${most} ${slowest.pattern} sample(s) (every ${formatDuration(interval)}) but needs ${leaf.minSamples}: the aggregate is never known`,
          );
        }
      }
    }
    if (rule.maxGapMs < interval) {
      warn(
        ['maxGap'],
        `maxGap ${formatDuration(rule.maxGapMs)} is shorter than the ${slowest.pattern} reporting interval (${formatDuration(interval)}): values expire between samples, so for-timers never complete`,
      );
    }
  }

  const scope = families.length > 0 ? families : [];
  const sets: ParamSet[] = [defaults];
  rule.overrides.forEach((o, i) => {
    if (o.devices) sets.push(paramsFor(rule, sample, null, [...o.devices][0] as string));
    else if (i >= 0) sets.push({ values: { ...defaults.values, ...o.params }, durMs: defaults.durMs });
  });
  const seen = new Set<string>();
  const once = (path: Array<string | number>, message: string) => {
    if (seen.has(message)) return;
    seen.add(message);
    warn(path, message);
  };
  for (const p of sets) {
    const which = p === defaults ? '' : ' (with an override)';
    if (!canBeTrue(rule.when, scope, p))
      once(['when'], `the raise condition can never be true${which}: the rule never fires`);
    else if (rule.gate && !canBeTrue(new AllNode([rule.when, rule.gate]), scope, p)) {
      once(
        ['gate'],
        `the raise condition and the gate can never hold together${which}: the rule never fires`,
      );
    }
    if (!canBeTrue(rule.clear, scope, p)) {
      once(
        rule.clearExplicit ? ['clear', 'when'] : ['when'],
        rule.clearExplicit
          ? `the clear condition can never be true${which}: an incident can never clear`
          : `the raise condition can never be false${which}: an incident can never clear`,
      );
    } else if (rule.clearExplicit && canBeTrue(new AllNode([rule.when, rule.clear]), scope, p)) {
      once(
        ['clear', 'when'],
        `the clear condition can hold while the raise condition holds${which}: an incident may resolve and re-fire without the value moving (hysteresis needs disjoint conditions)`,
      );
    }
  }

  for (const [i, step] of (input.escalate ?? []).entries()) {
    if (SEVERITIES.indexOf(step.severity) <= SEVERITIES.indexOf(rule.severity)) {
      warn(
        ['escalate', i, 'severity'],
        `escalation to ${step.severity} does not raise the severity (${rule.severity})`,
      );
    }
  }
  return out;
}
