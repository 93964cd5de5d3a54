/**
 * Read queries behind the service desk page. The ticket list API pages newest
 * first by id; a queue has to be ordered by priority and SLA time left, which
 * the browser cannot do without fetching every open ticket (10,000 tickets are
 * megabytes of JSON). So the database orders and pages it, and returns only the
 * columns a queue row shows.
 */
import type { Queryable } from '../db/db.js';
import { FINAL_STATUSES, STATUSES, type TicketStatus } from '../tickets/model.js';

export interface QueueQuery {
  /** Empty or undefined: every unresolved ticket (the desk's default view). */
  status?: TicketStatus[] | undefined;
  team?: string | undefined;
  model?: string | undefined;
  rule?: string | undefined;
  region?: string | undefined;
  breached?: boolean | undefined;
  /** A device id prefix or words of the title. */
  q?: string | undefined;
  offset?: number | undefined;
  limit?: number | undefined;
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
    /** Which clock runs: response until acknowledged, then resolution; null once resolved or closed. */
    target: 'response' | 'resolution' | null;
    dueAt: string | null;
    /** Time left when the page was answered; negative when overdue. Frozen while waiting. */
    leftMs: number | null;
    paused: boolean;
  };
}

export interface QueuePage {
  items: QueueItem[];
  /** Tickets matching every filter. */
  total: number;
  offset: number;
  limit: number;
  /** Tickets per status matching every filter except the status one. */
  counts: Record<string, number>;
  at: string;
}

/** Values present in the store, for the filter menus. */
export interface QueueFacets {
  team: string[];
  model: string[];
  rule: string[];
  region: string[];
}

/** The running SLA target's due time; null once resolved or closed. */
const SLA_DUE = `CASE WHEN status IN ('resolved', 'closed') THEN NULL
  WHEN acknowledged_at IS NULL THEN response_due_at ELSE resolution_due_at END`;

/**
 * Its own read, not part of every queue page: the menus change rarely, and a live refresh of the
 * queue should not scan every ticket four more times.
 */
export async function deskFacets(db: Queryable): Promise<QueueFacets> {
  const { rows } = await db.query<{
    team: string | null;
    model: string | null;
    rule_id: string | null;
    region: string | null;
  }>(
    'SELECT team, model, rule_id, region FROM tickets GROUP BY GROUPING SETS ((team), (model), (rule_id), (region))',
  );
  const facet = (pick: (r: (typeof rows)[number]) => string | null): string[] =>
    [...new Set(rows.map(pick).filter((v): v is string => v !== null))].sort();
  return {
    team: facet((r) => r.team),
    model: facet((r) => r.model),
    rule: facet((r) => r.rule_id),
    region: facet((r) => r.region),
  };
}

interface QueueRow {
  id: string;
  title: string;
  status: TicketStatus;
  priority: string;
  severity: string;
  safety: boolean;
  team: string;
  rule_id: string;
  code: string | null;
  device_id: string;
  model: string;
  region: string | null;
  assignee: string | null;
  occurrences: number;
  opened_at: Date;
  updated_at: Date;
  acknowledged_at: Date | null;
  waiting_since: Date | null;
  breached: boolean;
  sla_due: Date | null;
  sla_left_ms: number | null;
}

export const QUEUE_MAX_LIMIT = 500;
const QUEUE_DEFAULT_LIMIT = 100;

/** Escapes LIKE wildcards so a search for "ac_1" means those characters. */
const likeLiteral = (s: string): string => s.replace(/[\\%_]/g, (c) => `\\${c}`);

export async function deskQueue(db: Queryable, query: QueueQuery, now: number): Promise<QueuePage> {
  const limit = Math.min(Math.max(query.limit ?? QUEUE_DEFAULT_LIMIT, 1), QUEUE_MAX_LIMIT);
  const offset = Math.max(query.offset ?? 0, 0);
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, ...values: unknown[]) => {
    let out = sql;
    for (const v of values) {
      params.push(v);
      out = out.replace('?', `$${params.length}`);
    }
    where.push(out);
  };
  if (query.team !== undefined) add('team = ?', query.team);
  if (query.model !== undefined) add('model = ?', query.model);
  if (query.rule !== undefined) add('rule_id = ?', query.rule);
  if (query.region !== undefined) add('region = ?', query.region);
  if (query.breached !== undefined) {
    where.push(
      `${query.breached ? '' : 'NOT '}(response_breached_at IS NOT NULL OR resolution_breached_at IS NOT NULL)`,
    );
  }
  if (query.q !== undefined && query.q.trim() !== '') {
    const q = likeLiteral(query.q.trim());
    add('(device_id LIKE ? OR title ILIKE ?)', `${q}%`, `%${q}%`);
  }
  // Counted before the status filter: the desk shows every status's count for the other filters.
  const countWhere = [...where];
  const countParams = [...params];
  const statuses = query.status?.length ? query.status : STATUSES.filter((s) => !FINAL_STATUSES.includes(s));
  add('status = ANY(?::text[])', statuses);
  params.push(new Date(now), limit, offset);
  const [nowP, limitP, offsetP] = [params.length - 2, params.length - 1, params.length];

  // Sorts ids and the key alone, then reads the columns of the rows shown: sorting every open
  // ticket with its title and description costs twice as much.
  const page = await db.query<QueueRow>(
    `WITH top AS (
       SELECT id, priority, ${SLA_DUE} - coalesce(waiting_since, $${nowP}) AS sla_left
       FROM tickets WHERE ${where.join(' AND ')}
       ORDER BY priority, sla_left ASC NULLS LAST, id DESC LIMIT $${limitP} OFFSET $${offsetP}
     )
     SELECT t.id, t.title, t.status, t.priority, t.severity, t.safety, t.team, t.rule_id, t.code, t.device_id,
            t.model, t.region, t.assignee, t.occurrences, t.opened_at, t.updated_at, t.acknowledged_at,
            t.waiting_since,
            (t.response_breached_at IS NOT NULL OR t.resolution_breached_at IS NOT NULL) AS breached,
            top.sla_left + coalesce(t.waiting_since, $${nowP}) AS sla_due,
            (extract(epoch FROM top.sla_left) * 1000)::float8 AS sla_left_ms
     FROM top JOIN tickets t ON t.id = top.id
     ORDER BY top.priority, top.sla_left ASC NULLS LAST, t.id DESC`,
    params,
  );
  const counted = await db.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM tickets ${countWhere.length ? `WHERE ${countWhere.join(' AND ')}` : ''}
     GROUP BY status`,
    countParams,
  );
  const counts: Record<string, number> = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const r of counted.rows) counts[r.status] = r.n;
  return {
    items: page.rows.map(toQueueItem),
    total: statuses.reduce((n, s) => n + (counts[s] ?? 0), 0),
    offset,
    limit,
    counts,
    at: new Date(now).toISOString(),
  };
}

function toQueueItem(r: QueueRow): QueueItem {
  const final = FINAL_STATUSES.includes(r.status);
  return {
    id: r.id,
    title: r.title,
    status: r.status,
    priority: r.priority,
    severity: r.severity,
    safety: r.safety,
    team: r.team,
    ruleId: r.rule_id,
    code: r.code,
    device: { id: r.device_id, model: r.model, region: r.region },
    assignee: r.assignee,
    occurrences: r.occurrences,
    openedAt: r.opened_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    breached: r.breached,
    sla: {
      target: final ? null : r.acknowledged_at === null ? 'response' : 'resolution',
      dueAt: r.sla_due ? r.sla_due.toISOString() : null,
      leftMs: r.sla_left_ms === null ? null : Math.round(r.sla_left_ms),
      paused: !final && r.waiting_since !== null,
    },
  };
}

export interface TrendQuery {
  /** How far back. */
  hours: number;
  /** The browser's offset from UTC in minutes (Date#getTimezoneOffset), so days start at local midnight. */
  tzOffsetMinutes: number;
}

export interface Trend {
  bucketMs: number;
  /** Start of each bucket, ms since the epoch, oldest first. */
  buckets: number[];
  byRule: Record<string, number[]>;
  byModel: Record<string, number[]>;
}

const HOUR = 3_600_000;

/** Tickets opened per hour (ranges up to two days) or per local day, by rule and by model. */
export async function deskTrend(db: Queryable, query: TrendQuery, now: number): Promise<Trend> {
  const bucketMs = query.hours <= 48 ? HOUR : 24 * HOUR;
  // Local time = UTC - offset; buckets are cut in local time and reported back as UTC instants.
  const shift = -query.tzOffsetMinutes * 60_000;
  const last = Math.floor((now + shift) / bucketMs);
  const first = last - Math.ceil((query.hours * HOUR) / bucketMs) + 1;
  const from = new Date(first * bucketMs - shift);
  const { rows } = await db.query<{ b: string; rule_id: string; model: string; n: number }>(
    `SELECT floor((extract(epoch FROM opened_at) * 1000 + $2) / $3)::bigint AS b, rule_id, model,
            count(*)::int AS n
     FROM tickets WHERE opened_at >= $1 GROUP BY 1, 2, 3`,
    [from, shift, bucketMs],
  );
  const size = last - first + 1;
  const byRule: Record<string, number[]> = {};
  const byModel: Record<string, number[]> = {};
  const bump = (into: Record<string, number[]>, key: string, i: number, n: number) => {
    const series = into[key] ?? new Array<number>(size).fill(0);
    series[i] = (series[i] ?? 0) + n;
    into[key] = series;
  };
  for (const r of rows) {
    const i = Number(r.b) - first;
    if (i < 0 || i >= size) continue;
    bump(byRule, r.rule_id, i, r.n);
    bump(byModel, r.model, i, r.n);
  }
  return {
    bucketMs,
    buckets: Array.from({ length: size }, (_, i) => (first + i) * bucketMs - shift),
    byRule,
    byModel,
  };
}
