/** The bridge's API as the page uses it: the token from sessionStorage on every call, one error shape. */
import type { Role, TicketStatus, WaitingOn } from './model.js';

const TOKEN_KEY = 'faultline.token';

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the API says the token is no good (revoked while the page was open). */
let onUnauthorized: () => void = () => undefined;
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T>(path: string, init: RequestInit & { token?: string } = {}): Promise<T> {
  const { token = storedToken() ?? '', headers, ...rest } = init;
  const h: Record<string, string> = {
    authorization: `Bearer ${token}`,
    ...(headers as Record<string, string>),
  };
  if (rest.body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(path, { ...rest, headers: h });
  if (res.ok) return (await res.json()) as T;
  let code = 'FL_HTTP';
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  if (res.status === 401 && init.token === undefined) onUnauthorized();
  throw new ApiError(res.status, code, message);
}

export const post = <T>(path: string, body?: unknown): Promise<T> =>
  api<T>(path, { method: 'POST', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

export interface Me {
  name: string;
  role: Role;
}

export interface QueueItem {
  id: string;
  title: string;
  status: TicketStatus;
  priority: string;
  severity: string;
  safety: boolean;
  team: string;
  ruleId: string;
  code: string | null;
  device: { id: string; model: string; region: string | null };
  assignee: string | null;
  occurrences: number;
  openedAt: string;
  updatedAt: string;
  breached: boolean;
  sla: {
    target: 'response' | 'resolution' | null;
    dueAt: string | null;
    leftMs: number | null;
    paused: boolean;
  };
}

export interface QueuePage {
  items: QueueItem[];
  total: number;
  offset: number;
  limit: number;
  counts: Record<string, number>;
  at: string;
}

export interface QueueFacets {
  team: string[];
  model: string[];
  rule: string[];
  region: string[];
}

export type MetricValue = number | string | boolean;

export interface Ticket {
  id: string;
  fingerprint: string;
  status: TicketStatus;
  title: string;
  description: string;
  ruleId: string;
  ruleVersion: string;
  code: string | null;
  incidentId: string;
  device: { id: string; model: string; firmware: string | null; batch: string | null; region: string | null };
  owner: { id: string | null; locale: string | null };
  severity: string;
  category: string;
  safety: boolean;
  labels: Record<string, string>;
  team: string;
  priority: string;
  priorityScore: number;
  assignee: string | null;
  occurrences: number;
  stale: boolean;
  cycle: number;
  waitingOn: WaitingOn | null;
  previousTicketId: string | null;
  openedAt: string;
  lastFiredAt: string;
  acknowledgedAt: string | null;
  recoveredAt: string | null;
  resolvedAt: string | null;
  closedAt: string | null;
  updatedAt: string;
  sla: {
    responseDueAt: string;
    resolutionDueAt: string;
    responseBreachedAt: string | null;
    resolutionBreachedAt: string | null;
    pausedMs: number;
    responseMs: number | null;
    resolutionMs: number | null;
  };
}

export interface TimelineEntry {
  id: string;
  at: string;
  actor: string;
  kind: string;
  data: Record<string, unknown>;
}

export interface Occurrence {
  id: string;
  incidentId: string;
  kind: 'fired' | 'updated';
  reason: string | null;
  at: string;
  deviceTime: string;
  severity: string;
  metric: string | null;
  value: unknown;
  threshold: unknown;
  stale: boolean;
  late: boolean;
  evidence: {
    samples: Array<{ ts: number; metrics: Record<string, MetricValue> }>;
    faults: Array<{ ts: number; code: string }>;
    windows: Array<{ metric: string; fn: string; windowMs: number; value: number | null; samples: number }>;
    truncated: boolean;
  };
}

export interface TicketLink {
  kind: string;
  ref: string;
  at: string;
  data: Record<string, unknown>;
}

export interface TicketDetail extends Ticket {
  timeline: TimelineEntry[];
  occurrenceList: Occurrence[];
  links: TicketLink[];
  comments: Array<{ id: string; at: string; actor: string; text: string }>;
  pauses: Array<{ startedAt: string; endedAt: string | null; reason: string | null }>;
}

export interface Device {
  id: string;
  model: string;
  firmware: string | null;
  ownerId: string | null;
  ownerLocale: string | null;
  region: string | null;
  batch: string | null;
  disabled: boolean;
  createdAt: string;
  lastSeenAt: string | null;
  online: boolean;
}

export interface Series {
  device: string;
  from: string;
  to: string;
  step: string;
  stepMs: number;
  series: Array<{ metric: string; aggregate: 'mean' | 'last'; points: Array<[number, MetricValue]> }>;
}

/** What the guides feature records per notification; optional fields as it may still change. */
export interface Notification {
  id: string;
  kind: string;
  guideId?: string | null;
  locale?: string | null;
  status: string;
  channels?: string[];
  sentAt?: string | null;
  deliveredAt?: string | null;
  openedAt?: string | null;
  outcome?: string | null;
  survey?: { score: number; text: string | null; answeredAt: string } | null;
  message?: { title?: string; summary?: string } | null;
}

export interface DeviceStats {
  total: number;
  online: number;
  disabled: number;
}

export interface TicketStats {
  open: {
    total: number;
    byRule: Record<string, number>;
    byModel: Record<string, number>;
    byTeam: Record<string, number>;
    byPriority: Record<string, number>;
  };
  window: {
    since: string;
    opened: number;
    medianResponseMs: number | null;
    medianResolutionMs: number | null;
    slaBreachRate: number | null;
    resolutionRate: number | null;
  };
  incidentsOpen: number;
}

export interface FeedbackStats {
  receipts?: { delivered: number; opened: number; fixed: number; notFixed: number };
  surveys?: { sent: number; answered: number; averageScore: number | null };
}

export interface Incident {
  id: string;
  status: 'open' | 'closed';
  ruleId: string;
  code: string | null;
  scope: 'model' | 'batch';
  scopeValue: string;
  model: string;
  title: string;
  severity: string;
  team: string;
  priority: string;
  affectedDevices: number;
  affectedCustomers: number;
  openedAt: string;
  lastLinkedAt: string;
  closedAt: string | null;
}

export interface Trend {
  bucketMs: number;
  buckets: number[];
  byRule: Record<string, number[]>;
  byModel: Record<string, number[]>;
}

export interface RuleInfo {
  id: string;
  version: string;
  file: string | null;
  line: number | null;
  title: string;
  severity: string;
  category: string;
  safety: boolean;
  enabled: boolean;
  firing: number;
  firedTotal: number;
  evaluations: number;
  errors: number;
  lastError: { message: string; deviceId: string | null; at: number } | null;
}

export interface LoadIssue {
  file: string;
  line: number;
  col: number;
  message: string;
}

export interface RulesInfo {
  rules: RuleInfo[];
  loadErrors: LoadIssue[];
  warnings: LoadIssue[];
  lastReloadAt: string | null;
  devices: number;
}
