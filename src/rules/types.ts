/** Public shapes of the rule engine: what the integrator feeds in and what comes out. */
import type { MetricValue } from '../contract/index.js';
import type { Category, Severity } from './schema.js';

export type { Category, Severity } from './schema.js';

export interface EngineDevice {
  id: string;
  model: string;
  firmware: string | null;
  region: string | null;
  batch: string | null;
  ownerId: string | null;
  ownerLocale: string | null;
  /** Server time the device was registered; absence rules count from here for a device that never reported. */
  registeredAt?: number;
}

export interface EngineSample {
  ts: number;
  seq: number;
  metrics: Record<string, MetricValue>;
}

export interface EngineFault {
  ts: number;
  seq: number;
  code: string;
  detail?: string;
}

export interface RuleObserver {
  /** One (rule, device) evaluation. */
  evaluated(ruleId: string): void;
  /** An incident opened. */
  fired(ruleId: string): void;
  /** A rule threw while being evaluated; the rule's state for that device is left as it was. */
  error(ruleId: string, err: unknown): void;
}

export interface RuleActions {
  ticket: boolean;
  /** Guide id to push, or null for none. */
  guide: string | null;
  autoClose: boolean;
}

export interface EvidenceSample {
  ts: number;
  /** Only the metrics the rule reads. */
  metrics: Record<string, MetricValue>;
}

export interface EvidenceFault {
  ts: number;
  code: string;
}

export interface EvidenceWindow {
  metric: string;
  fn: string;
  windowMs: number;
  value: number | null;
  samples: number;
}

export interface RuleEvidence {
  /** Samples seen since the pending timer started, newest last, at most EVIDENCE_LIMIT. */
  samples: EvidenceSample[];
  faults: EvidenceFault[];
  windows: EvidenceWindow[];
  /** Older samples were dropped to stay within the bound. */
  truncated: boolean;
}

export interface RuleEventBase {
  ruleId: string;
  /** Hash of the rule's normalised logic; changes only when what decides firing changes. */
  ruleVersion: string;
  ruleFile: string | null;
  /** "<rule>:<device>", or "<device>:fault:<code>" for device+code rules. Stable across config order and restarts. */
  fingerprint: string;
  /** One id per incident (open to resolve): "<fingerprint>@<firingSince>". */
  incidentId: string;
  title: string;
  description: string;
  severity: Severity;
  category: Category;
  safety: boolean;
  actions: RuleActions;
  labels: Record<string, string>;
  device: EngineDevice;
  /** Device time at which the transition happened. */
  deviceTime: number;
  /** Engine clock when it was decided (ms). */
  serverTime: number;
  /** When the raise condition started to hold for this incident (device time). */
  pendingSince: number | null;
  /** When the incident opened (device time). */
  firingSince: number;
  /** The metric of the rule's first leaf, if it reads one. */
  metric: string | null;
  /** The rule's value: its first leaf's current value (metric value, aggregate, fault count, or silence in ms). */
  value: MetricValue | null;
  /** What the first leaf compares with, resolved from params. */
  threshold: MetricValue | null;
  params: Record<string, MetricValue>;
  /** Fault rules: matching faults in this incident; null for other rules. */
  occurrences: number | null;
  /** device+code rules: the fault code of this incident. */
  code: string | null;
  /** Times the condition re-fired into this incident while flap control held it open. */
  flapCount: number;
  evidence: RuleEvidence;
  /** Decided from data that arrived well after its device time (an offline buffer, a slow link). */
  late: boolean;
  /** The whole episode lies further back than staleAfter: record it, do not page for it. */
  stale: boolean;
}

export interface RuleFired extends RuleEventBase {
  type: 'rule.fired';
}

export type UpdateReason = 'escalated' | 'occurrence' | 'retriggered' | 'flapping';

export interface RuleUpdated extends RuleEventBase {
  type: 'rule.updated';
  reason: UpdateReason;
  previousSeverity: Severity | null;
}

export type ResolveReason = 'cleared' | 'rule_removed' | 'device_removed' | 'out_of_scope';

export interface RuleResolved extends RuleEventBase {
  type: 'rule.resolved';
  reason: ResolveReason;
  resolvedAt: number;
  /** Device-time length of the incident. */
  durationMs: number;
}

export type RuleEvent = RuleFired | RuleUpdated | RuleResolved;

export interface RuleErrorInfo {
  message: string;
  deviceId: string | null;
  at: number;
}

export interface RuleDescription {
  id: string;
  version: string;
  file: string | null;
  line: number | null;
  title: string;
  severity: Severity;
  category: Category;
  safety: boolean;
  enabled: boolean;
  /** Incidents open now. */
  firing: number;
  firedTotal: number;
  evaluations: number;
  errors: number;
  lastError: RuleErrorInfo | null;
}

export type RulePhase = 'inactive' | 'pending' | 'firing' | 'resolved';

/** Introspection of one (rule, device) state, for tests and the API. */
export interface RuleStateView {
  ruleId: string;
  deviceId: string;
  code: string | null;
  phase: RulePhase;
  /** Condition state under the incident: off, pending, on, clearing. */
  condition: 'off' | 'pending' | 'on' | 'clearing';
  pendingSince: number | null;
  firingSince: number | null;
  clearingSince: number | null;
  severity: Severity | null;
  flapping: boolean;
  holdUntil: number | null;
  cooldownUntil: number | null;
  clock: number | null;
}

export interface SnapshotRuleState {
  /** code (device+code rules) */
  k?: string;
  at: number | null;
  c: 0 | 1 | 2 | 3;
  ps?: number;
  cs?: number;
  open?: 1;
  fs?: number;
  /** pending start of the open incident */
  ips?: number;
  sev?: number;
  esc?: number;
  hold?: number;
  cool?: number;
  fl?: number[];
  fc?: number;
  occ?: number;
  /** leaf states, by leaf slot */
  ls?: Array<number | number[] | null>;
  ev?: Array<[number, Record<string, MetricValue>] | [number, string]>;
  evt?: 1;
}

export interface SnapshotDevice {
  /** id, model, firmware, region, batch, ownerId, ownerLocale, registeredAt */
  d: [
    string,
    string,
    string | null,
    string | null,
    string | null,
    string | null,
    string | null,
    number | null,
  ];
  /** offset server - device (ms), null before the first message */
  o: number | null;
  /** last device ts of any message */
  l: number | null;
  /** absence reference (device time) */
  s: number;
  v?: Record<string, [number, MetricValue]>;
  /** window signature -> [newest bucket, buckets, last ts, last value] */
  w?: Record<string, [number, number[], number | null, number]>;
  r?: Record<string, SnapshotRuleState[]>;
}

export interface RuleStateSnapshot {
  format: 'faultline.rules/v1';
  takenAt: number;
  /** rule id -> version hash at the time of the snapshot */
  rules: Record<string, string>;
  devices: SnapshotDevice[];
}

export interface LoadIssue {
  file: string;
  line: number;
  col: number;
  message: string;
}
