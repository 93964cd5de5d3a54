/** Rows to API shapes, and the read queries (lists, one ticket with its history, stats). */
import type { Queryable } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';
import type { Category, Severity } from '../rules/types.js';
import type { Priority } from './config.js';
import type {
  FleetIncident,
  Occurrence,
  SlaPause,
  Ticket,
  TicketDetail,
  TicketEventKind,
  TicketLink,
  TicketStatus,
  TimelineEntry,
  WaitingOn,
} from './model.js';

export interface TicketRow {
  id: string;
  fingerprint: string;
  status: TicketStatus;
  status_before_recovery: TicketStatus | null;
  rule_id: string;
  rule_version: string;
  rule_file: string | null;
  code: string | null;
  incident_id: string;
  title: string;
  description: string;
  device_id: string;
  model: string;
  firmware: string | null;
  batch: string | null;
  owner_id: string | null;
  owner_locale: string | null;
  region: string | null;
  severity: Severity;
  category: Category;
  safety: boolean;
  labels: Record<string, string>;
  team: string;
  priority: Priority;
  priority_score: number;
  auto_close: boolean;
  assignee: string | null;
  occurrences: number;
  stale: boolean;
  cycle: number;
  waiting_on: WaitingOn | null;
  previous_ticket_id: string | null;
  opened_at: Date;
  cycle_started_at: Date;
  last_fired_at: Date;
  acknowledged_at: Date | null;
  recovered_at: Date | null;
  resolved_at: Date | null;
  closed_at: Date | null;
  reopened_at: Date | null;
  response_due_at: Date;
  resolution_due_at: Date;
  response_breached_at: Date | null;
  resolution_breached_at: Date | null;
  waiting_since: Date | null;
  /** int8 comes back as a string on both backends. */
  paused_ms: string;
  response_ms: string | null;
  resolution_ms: string | null;
  updated_at: Date;
}

export interface IncidentRow {
  id: string;
  status: 'open' | 'closed';
  rule_id: string;
  code: string;
  scope: 'model' | 'batch';
  scope_value: string;
  model: string;
  title: string;
  severity: Severity;
  category: Category;
  safety: boolean;
  team: string;
  priority: Priority;
  priority_score: number;
  affected_devices: number;
  affected_customers: number;
  opened_at: Date;
  last_linked_at: Date;
  closed_at: Date | null;
  updated_at: Date;
}

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);
const num = (v: string | null): number | null => (v === null ? null : Number(v));

/** Time the SLA clock was paused, including a wait still in progress at `now`. */
export function pausedMsAt(row: Pick<TicketRow, 'paused_ms' | 'waiting_since'>, now: number): number {
  return Number(row.paused_ms) + (row.waiting_since ? Math.max(0, now - row.waiting_since.getTime()) : 0);
}

export function toTicket(r: TicketRow, now: number): Ticket {
  return {
    id: r.id,
    fingerprint: r.fingerprint,
    status: r.status,
    title: r.title,
    description: r.description,
    ruleId: r.rule_id,
    ruleVersion: r.rule_version,
    code: r.code,
    incidentId: r.incident_id,
    device: { id: r.device_id, model: r.model, firmware: r.firmware, batch: r.batch, region: r.region },
    owner: { id: r.owner_id, locale: r.owner_locale },
    severity: r.severity,
    category: r.category,
    safety: r.safety,
    labels: r.labels,
    team: r.team,
    priority: r.priority,
    priorityScore: Math.round(r.priority_score * 100) / 100,
    autoClose: r.auto_close,
    assignee: r.assignee,
    occurrences: r.occurrences,
    stale: r.stale,
    cycle: r.cycle,
    waitingOn: r.waiting_on,
    previousTicketId: r.previous_ticket_id,
    openedAt: r.opened_at.toISOString(),
    lastFiredAt: r.last_fired_at.toISOString(),
    acknowledgedAt: iso(r.acknowledged_at),
    recoveredAt: iso(r.recovered_at),
    resolvedAt: iso(r.resolved_at),
    closedAt: iso(r.closed_at),
    reopenedAt: iso(r.reopened_at),
    updatedAt: r.updated_at.toISOString(),
    sla: {
      responseDueAt: r.response_due_at.toISOString(),
      resolutionDueAt: r.resolution_due_at.toISOString(),
      responseBreachedAt: iso(r.response_breached_at),
      resolutionBreachedAt: iso(r.resolution_breached_at),
      pausedMs: pausedMsAt(r, now),
      responseMs: num(r.response_ms),
      resolutionMs: num(r.resolution_ms),
    },
  };
}

export function toIncident(r: IncidentRow): FleetIncident {
  return {
    id: r.id,
    status: r.status,
    ruleId: r.rule_id,
    code: r.code === '' ? null : r.code,
    scope: r.scope,
    scopeValue: r.scope_value,
    model: r.model,
    title: r.title,
    severity: r.severity,
    category: r.category,
    safety: r.safety,
    team: r.team,
    priority: r.priority,
    priorityScore: Math.round(r.priority_score * 100) / 100,
    affectedDevices: r.affected_devices,
    affectedCustomers: r.affected_customers,
    openedAt: r.opened_at.toISOString(),
    lastLinkedAt: r.last_linked_at.toISOString(),
    closedAt: iso(r.closed_at),
    updatedAt: r.updated_at.toISOString(),
  };
}

export async function ticketRow(q: Queryable, id: string, lock = false): Promise<TicketRow | null> {
  if (!/^\d{1,19}$/.test(id)) return null;
  const { rows } = await q.query<TicketRow>(
    `SELECT * FROM tickets WHERE id = $1${lock ? ' FOR NO KEY UPDATE' : ''}`,
    [id],
  );
  return rows[0] ?? null;
}

export async function linksOf(q: Queryable, ticketId: string): Promise<TicketLink[]> {
  const { rows } = await q.query<{ kind: string; ref: string; at: Date; data: Record<string, unknown> }>(
    'SELECT kind, ref, at, data FROM ticket_links WHERE ticket_id = $1 ORDER BY id',
    [ticketId],
  );
  return rows.map((r) => ({ kind: r.kind, ref: r.ref, at: r.at.toISOString(), data: r.data }));
}

/** At most this many timeline entries and occurrences come with one ticket: the newest. */
export const DETAIL_LIMIT = 500;

export async function ticketDetail(q: Queryable, id: string, now: number): Promise<TicketDetail | null> {
  const row = await ticketRow(q, id);
  if (!row) return null;
  const events = await q.query<{
    id: string;
    at: Date;
    actor: string;
    kind: TicketEventKind;
    data: Record<string, unknown>;
  }>(
    `SELECT * FROM (SELECT id, at, actor, kind, data FROM ticket_events WHERE ticket_id = $1
       ORDER BY id DESC LIMIT $2) newest ORDER BY id`,
    [id, DETAIL_LIMIT],
  );
  const occurrences = await q.query<{
    id: string;
    incident_id: string;
    kind: 'fired' | 'updated';
    reason: string | null;
    at: Date;
    device_time: Date;
    severity: Severity;
    metric: string | null;
    value: unknown;
    threshold: unknown;
    stale: boolean;
    late: boolean;
    evidence: Occurrence['evidence'];
  }>(
    `SELECT * FROM (SELECT * FROM ticket_occurrences WHERE ticket_id = $1 ORDER BY id DESC LIMIT $2) newest
     ORDER BY id`,
    [id, DETAIL_LIMIT],
  );
  const pauses = await q.query<{ started_at: Date; ended_at: Date | null; reason: string | null }>(
    'SELECT started_at, ended_at, reason FROM ticket_sla_pauses WHERE ticket_id = $1 ORDER BY id',
    [id],
  );
  const timeline: TimelineEntry[] = events.rows.map((e) => ({
    id: e.id,
    at: e.at.toISOString(),
    actor: e.actor,
    kind: e.kind,
    data: e.data,
  }));
  return {
    ...toTicket(row, now),
    timeline,
    occurrenceList: occurrences.rows.map((o) => ({
      id: o.id,
      incidentId: o.incident_id,
      kind: o.kind,
      reason: o.reason,
      at: o.at.toISOString(),
      deviceTime: o.device_time.toISOString(),
      severity: o.severity,
      metric: o.metric,
      value: o.value,
      threshold: o.threshold,
      stale: o.stale,
      late: o.late,
      evidence: o.evidence,
    })),
    links: await linksOf(q, id),
    comments: timeline
      .filter((e) => e.kind === 'comment.added')
      .map((e) => ({ id: e.id, at: e.at, actor: e.actor, text: String(e.data.text ?? '') })),
    pauses: pauses.rows.map(
      (p): SlaPause => ({
        startedAt: p.started_at.toISOString(),
        endedAt: iso(p.ended_at),
        reason: p.reason,
      }),
    ),
  };
}

export interface TicketListQuery {
  status?: TicketStatus[] | undefined;
  priority?: Priority[] | undefined;
  team?: string | undefined;
  model?: string | undefined;
  rule?: string | undefined;
  region?: string | undefined;
  deviceId?: string | undefined;
  assignee?: string | undefined;
  /** true: only tickets that breached an SLA target; false: only those that did not. */
  breached?: boolean | undefined;
  /** true: only unresolved tickets (neither resolved nor closed). */
  open?: boolean | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;

function encodeCursor(prefix: string, id: string): string {
  return Buffer.from(`${prefix}:${id}`, 'utf8').toString('base64url');
}

function decodeCursor(prefix: string, cursor: string): string {
  const m = new RegExp(`^${prefix}:(\\d{1,19})$`).exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new FaultlineError('FL_VALIDATION', 'invalid cursor: pass nextCursor from the previous page');
  return m[1]!;
}

/** Newest first, keyset-paged by id. */
export async function listTickets(
  q: Queryable,
  query: TicketListQuery,
  now: number,
): Promise<{ items: Ticket[]; nextCursor: string | null }> {
  const limit = Math.min(Math.max(query.limit ?? DEFAULT_LIMIT, 1), MAX_LIMIT);
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replaceAll('?', `$${params.length}`));
  };
  if (query.cursor !== undefined) add('id < ?', decodeCursor('t1', query.cursor));
  if (query.status?.length) add('status = ANY(?::text[])', query.status);
  if (query.priority?.length) add('priority = ANY(?::text[])', query.priority);
  if (query.team !== undefined) add('team = ?', query.team);
  if (query.model !== undefined) add('model = ?', query.model);
  if (query.rule !== undefined) add('rule_id = ?', query.rule);
  if (query.region !== undefined) add('region = ?', query.region);
  if (query.deviceId !== undefined) add('device_id = ?', query.deviceId);
  if (query.assignee !== undefined) add('assignee = ?', query.assignee);
  if (query.breached !== undefined) {
    where.push(
      `${query.breached ? '' : 'NOT '}(response_breached_at IS NOT NULL OR resolution_breached_at IS NOT NULL)`,
    );
  }
  if (query.open !== undefined) where.push(`status ${query.open ? 'NOT ' : ''}IN ('resolved', 'closed')`);
  params.push(limit + 1);
  const { rows } = await q.query<TicketRow>(
    `SELECT * FROM tickets ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY id DESC LIMIT $${params.length}`,
    params,
  );
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  return {
    items: page.map((r) => toTicket(r, now)),
    nextCursor: more ? encodeCursor('t1', page[page.length - 1]!.id) : null,
  };
}

export interface IncidentListQuery {
  status?: 'open' | 'closed' | undefined;
  rule?: string | undefined;
  model?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

export async function listIncidents(
  q: Queryable,
  query: IncidentListQuery,
): Promise<{ items: FleetIncident[]; nextCursor: string | null }> {
  const limit = Math.min(Math.max(query.limit ?? DEFAULT_LIMIT, 1), MAX_LIMIT);
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (query.cursor !== undefined) add('id < ?', decodeCursor('f1', query.cursor));
  if (query.status !== undefined) add('status = ?', query.status);
  if (query.rule !== undefined) add('rule_id = ?', query.rule);
  if (query.model !== undefined) add('model = ?', query.model);
  params.push(limit + 1);
  const { rows } = await q.query<IncidentRow>(
    `SELECT * FROM fleet_incidents ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY id DESC LIMIT $${params.length}`,
    params,
  );
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  return {
    items: page.map(toIncident),
    nextCursor: more ? encodeCursor('f1', page[page.length - 1]!.id) : null,
  };
}

export async function incidentRow(q: Queryable, id: string, lock = false): Promise<IncidentRow | null> {
  if (!/^\d{1,19}$/.test(id)) return null;
  const { rows } = await q.query<IncidentRow>(
    `SELECT * FROM fleet_incidents WHERE id = $1${lock ? ' FOR UPDATE' : ''}`,
    [id],
  );
  return rows[0] ?? null;
}

/** Tickets linked to a fleet incident, oldest link first. */
export async function incidentTickets(q: Queryable, incidentId: string, now: number): Promise<Ticket[]> {
  const { rows } = await q.query<TicketRow>(
    `SELECT t.* FROM ticket_links l JOIN tickets t ON t.id = l.ticket_id
     WHERE l.kind = 'fleet_incident' AND l.ref = $1 ORDER BY l.id`,
    [incidentId],
  );
  return rows.map((r) => toTicket(r, now));
}

export interface TicketStats {
  open: {
    total: number;
    byRule: Record<string, number>;
    byModel: Record<string, number>;
    byTeam: Record<string, number>;
    byPriority: Record<string, number>;
  };
  /** Over tickets opened since `since`. */
  window: {
    since: string;
    opened: number;
    medianResponseMs: number | null;
    medianResolutionMs: number | null;
    /** Tickets that breached a response or resolution target / tickets opened. */
    slaBreachRate: number | null;
    /** Tickets resolved or closed / tickets opened. */
    resolutionRate: number | null;
  };
  incidentsOpen: number;
}

export interface OpenTicketGroup {
  rule: string;
  model: string;
  team: string;
  priority: string;
  count: number;
}

export async function openTicketGroups(q: Queryable): Promise<OpenTicketGroup[]> {
  const { rows } = await q.query<OpenTicketGroup>(
    `SELECT rule_id AS rule, model, team, priority, count(*)::int AS count FROM tickets
     WHERE status NOT IN ('resolved', 'closed') GROUP BY rule_id, model, team, priority`,
  );
  return rows;
}

export async function ticketStats(q: Queryable, since: Date): Promise<TicketStats> {
  const groups = await openTicketGroups(q);
  const sum = (key: keyof Omit<OpenTicketGroup, 'count'>): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const g of groups) out[g[key]] = (out[g[key]] ?? 0) + g.count;
    return out;
  };
  const { rows } = await q.query<{
    opened: number;
    median_response_ms: number | null;
    median_resolution_ms: number | null;
    breached: number;
    resolved: number;
  }>(
    `SELECT count(*)::int AS opened,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY response_ms) AS median_response_ms,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_ms) AS median_resolution_ms,
            (count(*) FILTER (WHERE response_breached_at IS NOT NULL
                               OR resolution_breached_at IS NOT NULL))::int AS breached,
            (count(*) FILTER (WHERE status IN ('resolved', 'closed')))::int AS resolved
     FROM tickets WHERE opened_at >= $1`,
    [since],
  );
  const w = rows[0]!;
  const incidents = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM fleet_incidents WHERE status = 'open'`,
  );
  const ratio = (n: number) => (w.opened === 0 ? null : Math.round((n / w.opened) * 10_000) / 10_000);
  return {
    open: {
      total: groups.reduce((n, g) => n + g.count, 0),
      byRule: sum('rule'),
      byModel: sum('model'),
      byTeam: sum('team'),
      byPriority: sum('priority'),
    },
    window: {
      since: since.toISOString(),
      opened: w.opened,
      medianResponseMs: w.median_response_ms === null ? null : Math.round(Number(w.median_response_ms)),
      medianResolutionMs: w.median_resolution_ms === null ? null : Math.round(Number(w.median_resolution_ms)),
      slaBreachRate: ratio(w.breached),
      resolutionRate: ratio(w.resolved),
    },
    incidentsOpen: incidents.rows[0]!.n,
  };
}
