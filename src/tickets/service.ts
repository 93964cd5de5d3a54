/**
 * Service tickets: one per real problem. Rule events open a ticket or add to
 * the open one with the same fingerprint; people move it through its lifecycle;
 * a scheduled check marks SLA breaches and escalates; many devices firing one
 * rule become one fleet incident.
 *
 * Every change is one transaction that also writes the timeline entry and the
 * outbox rows of its webhooks and notifications, so a change, its history and
 * its deliveries commit together or not at all. "One open ticket per
 * fingerprint" is a partial unique index, not a check in this code: a loser of
 * a race lands on ON CONFLICT (or a unique violation) and retries as an append.
 *
 * Time comes from the injected now() only, so tests drive SLAs with a clock.
 */
import { createHash } from 'node:crypto';
import type { Role } from '../config/schema.js';
import type { Db, Queryable } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';
import type { Logger } from '../log/logger.js';
import { SEVERITIES } from '../rules/schema.js';
import type { RuleEvent, RuleFired, RuleResolved, RuleUpdated, Severity } from '../rules/types.js';
import type { Outbox } from '../webhooks/outbox.js';
import type { Priority, ReceiverConfig, ReceiverTopic, TicketsConfig } from './config.js';
import {
  type FleetIncident,
  isFinal,
  type PositionedChange,
  type Ticket,
  type TicketChange,
  type TicketDetail,
  type TicketEventKind,
  type TicketLink,
  type TicketStatus,
  type TimelinePosition,
  TRANSITIONS,
  type WaitingOn,
} from './model.js';
import { higherPriority, priorityOf, raiseOneBand, safetyMatcher, teamRouter } from './priority.js';
import {
  type IncidentListQuery,
  type IncidentRow,
  incidentRow,
  incidentTickets,
  linksOf,
  listIncidents,
  listTickets,
  type OpenTicketGroup,
  openTicketGroups,
  type TicketListQuery,
  type TicketRow,
  type TicketStats,
  ticketDetail,
  ticketRow,
  ticketStats,
  toIncident,
  toTicket,
} from './store.js';

/** Who made a change: a token's name and role, or the bridge itself. */
export interface Actor {
  name: string;
  role: Role;
}

/** The actor name of changes the rule engine's events cause. */
export const ENGINE_ACTOR = 'rule-engine';
/** The actor name of scheduled checks (SLA, fleet incidents). */
export const SYSTEM_ACTOR = 'system';

export type IncidentEventKind = 'incident.opened' | 'incident.updated' | 'incident.closed';

export type StreamEvent =
  | { type: 'ticket'; change: TicketChange }
  | { type: 'incident'; kind: IncidentEventKind; at: string; incident: FleetIncident };

export interface TicketObserver {
  opened?(priority: Priority, team: string): void;
  reopened?(): void;
  escalated?(target: 'response' | 'resolution'): void;
  paged?(): void;
  /** A rule event waited for the database to come back. */
  retried?(): void;
}

export interface TicketServiceOptions {
  db: Db;
  config: TicketsConfig;
  /** Without one, nothing is sent (tickets still work). */
  outbox?: Outbox | null;
  now?: () => number;
  log?: Logger;
  observer?: TicketObserver;
  /**
   * Rule events handled at once; more wait here, in order. The bus starts every listener at once,
   * and a burst of hundreds of events would otherwise queue for the connection pool (which other
   * components share) until its connect timeout fails them.
   */
  maxConcurrentEvents?: number;
}

export type RuleEventOutcome =
  | {
      action: 'opened' | 'reopened' | 'appended' | 'duplicate' | 'recovered' | 'closed' | 'ignored';
      ticketId: string;
    }
  | { action: 'no_ticket'; ticketId: null };

export interface SlaCheckResult {
  escalations: number;
  incidentsClosed: number;
}

/** Thrown inside a transaction to run it again from the start (a concurrent change won a race). */
class Retry extends Error {}

const MAX_TX_ATTEMPTS = 10;
const RETRYABLE_SQLSTATES = new Set(['23505', '40001', '40P01']);
const severityRank = (s: Severity): number => SEVERITIES.indexOf(s);
const MINUTE = 60_000;
/** Most tickets one fleet-check transaction takes (a long transaction holds back timeline readers). */
const FLEET_BATCH = 25;

interface TimelineRow {
  id: string;
  ticket_id: string;
  at: Date;
  actor: string;
  kind: TicketEventKind;
  data: Record<string, unknown>;
}

interface PendingEvent {
  id: string;
  kind: TicketEventKind;
  actor: string;
  data: Record<string, unknown>;
}

interface PendingNotification {
  topic: Exclude<ReceiverTopic, 'tickets'>;
  ticketId: string;
  eventId: string;
  reason: string;
}

/** What one transaction changed; turned into webhooks before COMMIT and stream events after. */
/** A counting semaphore: at most `size` callers run at once, the rest wait in arrival order. */
class Limiter {
  #active = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly size: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.size) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active++;
    try {
      return await fn();
    } finally {
      // Hand the slot straight to the next waiter, so a newcomer cannot overtake the queue.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active--;
    }
  }
}

class Work {
  readonly at: Date;
  readonly events = new Map<string, PendingEvent[]>();
  readonly notifications: PendingNotification[] = [];
  readonly incidents: Array<{ id: string; kind: IncidentEventKind }> = [];
  readonly stream: StreamEvent[] = [];
  readonly snapshots = new Map<string, Ticket>();

  constructor(readonly now: number) {
    this.at = new Date(now);
  }
}

function isRetryable(err: unknown): boolean {
  if (err instanceof Retry) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RETRYABLE_SQLSTATES.has(code);
}

/** A 64-bit advisory lock key per rule, the same in every process (hashtext() is not a stable API). */
function fleetLockKey(ruleId: string): string {
  return createHash('sha256').update(`faultline.fleet:${ruleId}`).digest().readBigInt64BE(0).toString();
}

export class TicketService {
  readonly #db: Db;
  readonly #config: TicketsConfig;
  readonly #outbox: Outbox | null;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  readonly #observer: TicketObserver;
  readonly #route: ReturnType<typeof teamRouter>;
  readonly #safety: (text: string) => string | null;
  readonly #listeners = new Set<(e: StreamEvent) => void>();
  readonly #events: Limiter;
  /** The last queued event of each fingerprint: the next one waits for it. */
  readonly #chains = new Map<string, Promise<unknown>>();
  /** Fleet checks waiting, per rule, and who waits for each (see #linkFleet). */
  readonly #fleetQueue = new Map<
    string,
    Array<{ ticketId: string; resolve: () => void; reject: (err: unknown) => void }>
  >();
  /** Fleet checks of different rules run side by side, this many at once (each holds a connection). */
  readonly #fleetSlots = new Limiter(2);
  #closing = false;

  constructor(options: TicketServiceOptions) {
    this.#events = new Limiter(options.maxConcurrentEvents ?? 4);
    this.#db = options.db;
    this.#config = options.config;
    this.#outbox = options.outbox ?? null;
    this.#now = options.now ?? Date.now;
    this.#log = options.log;
    this.#observer = options.observer ?? {};
    this.#route = teamRouter(options.config);
    this.#safety = safetyMatcher(options.config.priority.safetyKeywords);
  }

  get config(): TicketsConfig {
    return this.#config;
  }

  now(): number {
    return this.#now();
  }

  /** Live changes, after they committed. Returns the unsubscribe function. */
  subscribe(fn: (e: StreamEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  // ---------------------------------------------------------------- rule events

  async handle(e: RuleEvent): Promise<RuleEventOutcome> {
    if (e.type === 'rule.fired') return this.handleFired(e);
    if (e.type === 'rule.updated') return this.handleUpdated(e);
    return this.handleResolved(e);
  }

  /** Opens a ticket, reopens a recently resolved one, or adds an occurrence to the open one. */
  async handleFired(e: RuleFired): Promise<RuleEventOutcome> {
    if (!e.actions.ticket) return { action: 'no_ticket', ticketId: null };
    const outcome = await this.#inOrder(e.fingerprint, () =>
      this.#run((q, w) => this.#openOrAppend(q, w, e)),
    );
    if (outcome.ticketId !== null && outcome.action !== 'duplicate') {
      await this.#linkFleet(outcome.ticketId, e.ruleId);
    }
    return outcome;
  }

  /**
   * Events of one fingerprint are applied in the order they were emitted (a fired overtaken by its
   * resolve would leave a recovered problem's ticket open), and at most maxConcurrentEvents
   * events run at once. Between processes, the unique index is what keeps tickets single.
   */
  #inOrder<T>(fingerprint: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(fingerprint) ?? Promise.resolve();
    const next = previous.then(
      () => this.#events.run(() => this.#untilDbAnswers(fn)),
      () => this.#events.run(() => this.#untilDbAnswers(fn)),
    );
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(fingerprint, settled);
    void settled.then(() => {
      if (this.#chains.get(fingerprint) === settled) this.#chains.delete(fingerprint);
    });
    return next;
  }

  /**
   * A database outage must not drop a rule event: it is retried with capped backoff, still in its
   * fingerprint's order, until the database answers or the service closes (then it fails, logged).
   */
  async #untilDbAnswers<T>(fn: () => Promise<T>): Promise<T> {
    let delay = 100;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        const unavailable = err instanceof FaultlineError && err.code === 'FL_DB_UNAVAILABLE';
        if (!unavailable || this.#closing) throw err;
        this.#log?.warn({ err, retryInMs: delay }, 'database unavailable; rule event kept and retried');
        this.#observer.retried?.();
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  /** Stops retrying rule events against an unavailable database (shutdown). */
  close(): void {
    this.#closing = true;
  }

  /**
   * An escalation raises severity (and maybe priority); other updates add an occurrence. With no
   * open ticket (staff closed it while the fault went on), the update is handled as a recurrence.
   */
  async handleUpdated(e: RuleUpdated): Promise<RuleEventOutcome> {
    if (!e.actions.ticket) return { action: 'no_ticket', ticketId: null };
    const outcome = await this.#inOrder(e.fingerprint, () =>
      this.#run((q, w) => this.#openOrAppend(q, w, e)),
    );
    if (outcome.ticketId !== null && (outcome.action !== 'appended' || e.reason !== 'escalated')) {
      await this.#linkFleet(outcome.ticketId, e.ruleId);
    }
    return outcome;
  }

  /** Marks the ticket recovered, or closes it when the rule says autoClose. */
  async handleResolved(e: RuleResolved): Promise<RuleEventOutcome> {
    if (!e.actions.ticket) return { action: 'no_ticket', ticketId: null };
    return this.#inOrder(e.fingerprint, () => this.#resolved(e));
  }

  async #resolved(e: RuleResolved): Promise<RuleEventOutcome> {
    return this.#run(async (q, w) => {
      const t = await this.#lockOpen(q, e.fingerprint);
      if (!t) return { action: 'no_ticket', ticketId: null };
      const current = t.incident_id === e.incidentId;
      await this.#event(q, w, t.id, 'rule.resolved', ENGINE_ACTOR, {
        incidentId: e.incidentId,
        reason: e.reason,
        durationMs: e.durationMs,
        resolvedAt: new Date(e.resolvedAt).toISOString(),
        // A resolve of an older episode arriving after a newer one fired changes nothing.
        ...(current ? {} : { ignored: 'not the latest episode of this ticket' }),
      });
      if (!current || t.status === 'recovered') return { action: 'ignored', ticketId: t.id };
      const autoClose = e.actions.autoClose;
      const paused = this.#endPause(q, w, t);
      await paused.write();
      const elapsed = this.#slaElapsed(t, w.now, paused.pausedMs);
      await q.query(
        `UPDATE tickets SET status = $2, status_before_recovery = $3, recovered_at = $4, waiting_since = NULL,
           waiting_on = NULL, paused_ms = $5, response_due_at = $6, resolution_due_at = $7,
           resolved_at = CASE WHEN $8 THEN $4 ELSE resolved_at END,
           closed_at = CASE WHEN $8 THEN $4 ELSE closed_at END,
           resolution_ms = CASE WHEN $8 THEN $9 ELSE resolution_ms END,
           auto_close = $8, updated_at = $4
         WHERE id = $1`,
        [
          t.id,
          autoClose ? 'closed' : 'recovered',
          autoClose ? null : t.status,
          w.at,
          paused.pausedMs,
          new Date(paused.responseDue),
          new Date(paused.resolutionDue),
          autoClose,
          elapsed,
        ],
      );
      await this.#event(q, w, t.id, 'status.changed', ENGINE_ACTOR, {
        from: t.status,
        to: 'recovered',
        reason: e.reason,
      });
      if (autoClose) {
        await this.#event(q, w, t.id, 'status.changed', ENGINE_ACTOR, {
          from: 'recovered',
          to: 'closed',
          reason: 'auto_close',
        });
      }
      return { action: autoClose ? 'closed' : 'recovered', ticketId: t.id };
    });
  }

  async #openOrAppend(q: Queryable, w: Work, e: RuleFired | RuleUpdated): Promise<RuleEventOutcome> {
    if (e.type === 'rule.fired') {
      const dup = await q.query<{ ticket_id: string }>(
        `SELECT ticket_id FROM ticket_occurrences WHERE incident_id = $1 AND kind = 'fired'`,
        [e.incidentId],
      );
      if (dup.rows[0]) return { action: 'duplicate', ticketId: dup.rows[0].ticket_id };
    }
    let open = await this.#lockOpen(q, e.fingerprint);
    if (!open) {
      const { rows } = await q.query<TicketRow>(
        'SELECT * FROM tickets WHERE fingerprint = $1 ORDER BY id DESC LIMIT 1 FOR NO KEY UPDATE',
        [e.fingerprint],
      );
      const last = rows[0];
      if (last && !isFinal(last.status)) {
        open = last; // opened by a concurrent event while this one looked
      } else if (last && this.#withinReopenWindow(last, w.now)) {
        const reopened = await this.#reopen(q, w, last, ENGINE_ACTOR, 'recurred', e);
        return { action: 'reopened', ticketId: reopened.id };
      } else {
        const id = await this.#insert(q, w, e, last ?? null);
        if (id) return { action: 'opened', ticketId: id };
        // ON CONFLICT: another transaction opened it first. Its row is committed, so this
        // statement sees it (READ COMMITTED), and the event becomes an occurrence of it.
        open = await this.#lockOpen(q, e.fingerprint);
        if (!open) throw new Retry('the conflicting ticket was closed meanwhile');
      }
    }
    await this.#append(q, w, open, e);
    return { action: 'appended', ticketId: open.id };
  }

  #withinReopenWindow(t: TicketRow, now: number): boolean {
    const ended = t.resolved_at ?? t.closed_at;
    return ended !== null && now - ended.getTime() <= this.#config.reopenWindowMinutes * MINUTE;
  }

  #assess(e: {
    title: string;
    description: string;
    labels: Record<string, string>;
    code: string | null;
    safety: boolean;
    severity: Severity;
    category: RuleFired['category'];
  }) {
    const keyword = e.safety
      ? null
      : this.#safety([e.title, e.description, e.code ?? '', ...Object.values(e.labels)].join('\n'));
    const safety = e.safety || keyword !== null;
    const p = priorityOf(
      { severity: e.severity, category: e.category, customers: 1, safety },
      this.#config.priority,
    );
    return { safety, keyword, ...p };
  }

  #targets(
    priority: Priority,
    cycleStart: number,
    pausedMs: number,
  ): { response: number; resolution: number } {
    const t = this.#config.sla[priority];
    return {
      response: cycleStart + t.responseMinutes * MINUTE + pausedMs,
      resolution: cycleStart + t.resolutionMinutes * MINUTE + pausedMs,
    };
  }

  async #insert(
    q: Queryable,
    w: Work,
    e: RuleFired | RuleUpdated,
    previous: TicketRow | null,
  ): Promise<string | null> {
    const a = this.#assess(e);
    const team = this.#route({ category: e.category, model: e.device.model, region: e.device.region });
    const due = this.#targets(a.priority, w.now, 0);
    const { rows } = await q.query<TicketRow>(
      `INSERT INTO tickets (fingerprint, status, rule_id, rule_version, rule_file, code, incident_id, title,
         description, device_id, model, firmware, batch, owner_id, owner_locale, region, severity, category,
         safety, labels, team, priority, priority_score, auto_close, occurrences, stale, previous_ticket_id,
         opened_at, cycle_started_at, last_fired_at, response_due_at, resolution_due_at, updated_at)
       VALUES ($1, 'open', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
         $20, $21, $22, $23, 1, $24, $25, $26, $26, $26, $27, $28, $26)
       ON CONFLICT (fingerprint) WHERE status NOT IN ('resolved', 'closed') DO NOTHING
       RETURNING *`,
      [
        e.fingerprint,
        e.ruleId,
        e.ruleVersion,
        e.ruleFile,
        e.code,
        e.incidentId,
        e.title,
        e.description,
        e.device.id,
        e.device.model,
        e.device.firmware,
        e.device.batch,
        e.device.ownerId,
        e.device.ownerLocale,
        e.device.region,
        e.severity,
        e.category,
        a.safety,
        JSON.stringify(e.labels),
        team,
        a.priority,
        a.score,
        e.actions.autoClose,
        e.stale,
        previous?.id ?? null,
        w.at,
        new Date(due.response),
        new Date(due.resolution),
      ],
    );
    const t = rows[0];
    if (!t) return null;
    if (previous) {
      await q.query(
        `INSERT INTO ticket_links (ticket_id, kind, ref, data, at) VALUES ($1, 'previous_ticket', $2, $3, $4)`,
        [t.id, previous.id, JSON.stringify({ status: previous.status }), w.at],
      );
    }
    await this.#event(q, w, t.id, 'ticket.opened', ENGINE_ACTOR, {
      incidentId: e.incidentId,
      // When the engine decided (its clock); openedAt is when this transaction began, after any queueing.
      ruleEventAt: new Date(e.serverTime).toISOString(),
      severity: e.severity,
      priority: a.priority,
      priorityScore: a.score,
      scores: a.parts,
      safety: a.safety,
      ...(a.keyword ? { safetyKeyword: a.keyword } : {}),
      team,
      stale: e.stale,
      late: e.late,
      ...(previous ? { previousTicketId: previous.id } : {}),
    });
    await this.#occurrence(q, w, t.id, e);
    if (!e.stale && a.priority === 'P1') await this.#page(q, w, t, a.keyword ? `safety: ${a.keyword}` : 'P1');
    this.#observer.opened?.(a.priority, team);
    return t.id;
  }

  async #append(q: Queryable, w: Work, t: TicketRow, e: RuleFired | RuleUpdated): Promise<void> {
    const escalation = e.type === 'rule.updated' && e.reason === 'escalated';
    const a = this.#assess(e);
    const severity = severityRank(e.severity) > severityRank(t.severity) ? e.severity : t.severity;
    const safety = t.safety || a.safety;
    const computed = priorityOf(
      { severity, category: t.category, customers: 1, safety },
      this.#config.priority,
    );
    // Automatic changes only ever raise the priority: an SLA escalation is not undone by a new event.
    const priority = higherPriority(t.priority, computed.priority);
    const restored: TicketStatus | null =
      t.status === 'recovered'
        ? // A fault back after recovery needs attention again; whatever a wait was for is moot.
          t.status_before_recovery === 'waiting' || t.status_before_recovery === null
          ? t.acknowledged_at
            ? 'in_progress'
            : 'open'
          : t.status_before_recovery
        : null;
    let responseDue = t.response_due_at.getTime();
    let resolutionDue = t.resolution_due_at.getTime();
    if (priority !== t.priority) {
      const due = this.#targets(priority, t.cycle_started_at.getTime(), Number(t.paused_ms));
      if (!t.acknowledged_at) responseDue = Math.min(responseDue, due.response);
      resolutionDue = Math.min(resolutionDue, due.resolution);
    }
    const { rows } = await q.query<TicketRow>(
      `UPDATE tickets SET status = $2, status_before_recovery = $3, recovered_at = $4,
         occurrences = occurrences + $5, last_fired_at = CASE WHEN $5 = 1 THEN $6 ELSE last_fired_at END,
         incident_id = $7, severity = $8, safety = $9, priority = $10, priority_score = $11,
         stale = stale AND $12, response_due_at = $13, resolution_due_at = $14, updated_at = $6
       WHERE id = $1 RETURNING *`,
      [
        t.id,
        restored ?? t.status,
        restored ? null : t.status_before_recovery,
        restored ? null : t.recovered_at,
        escalation ? 0 : 1,
        w.at,
        e.incidentId,
        severity,
        safety,
        priority,
        priority === t.priority ? t.priority_score : computed.score,
        e.stale,
        new Date(responseDue),
        new Date(resolutionDue),
      ],
    );
    const updated = rows[0]!;
    if (!escalation) {
      await this.#occurrence(q, w, t.id, e);
      await this.#event(q, w, t.id, 'occurrence.added', ENGINE_ACTOR, {
        incidentId: e.incidentId,
        event: e.type,
        ...(e.type === 'rule.updated' ? { reason: e.reason } : {}),
        severity: e.severity,
        occurrences: updated.occurrences,
        stale: e.stale,
        late: e.late,
      });
    }
    if (restored) {
      await this.#event(q, w, t.id, 'status.changed', ENGINE_ACTOR, {
        from: 'recovered',
        to: restored,
        reason: 'recurred',
      });
    }
    if (severity !== t.severity) {
      await this.#event(q, w, t.id, 'severity.changed', ENGINE_ACTOR, {
        from: t.severity,
        to: severity,
        reason: e.type === 'rule.updated' ? e.reason : 'fired',
      });
    }
    if (safety && !t.safety) {
      await this.#event(q, w, t.id, 'priority.changed', ENGINE_ACTOR, {
        from: t.priority,
        to: priority,
        reason: a.keyword ? `safety: ${a.keyword}` : 'safety',
      });
    } else if (priority !== t.priority) {
      await this.#event(q, w, t.id, 'priority.changed', ENGINE_ACTOR, {
        from: t.priority,
        to: priority,
        reason: 'severity',
      });
    }
    if (!e.stale && priority === 'P1') {
      await this.#page(q, w, updated, a.keyword ? `safety: ${a.keyword}` : safety ? 'safety' : 'P1');
    }
  }

  /** Starts a new cycle on a resolved or closed ticket: status open, fresh SLA clocks. */
  async #reopen(
    q: Queryable,
    w: Work,
    t: TicketRow,
    actor: string,
    reason: string,
    e?: RuleFired | RuleUpdated,
  ): Promise<TicketRow> {
    const a = e
      ? this.#assess(e)
      : {
          ...priorityOf(
            { severity: t.severity, category: t.category, customers: 1, safety: t.safety },
            this.#config.priority,
          ),
          safety: t.safety,
          keyword: null,
        };
    const due = this.#targets(a.priority, w.now, 0);
    const { rows } = await q.query<TicketRow>(
      `UPDATE tickets SET status = 'open', cycle = cycle + 1, reopened_at = $2, cycle_started_at = $2,
         acknowledged_at = NULL, recovered_at = NULL, resolved_at = NULL, closed_at = NULL,
         response_breached_at = NULL, resolution_breached_at = NULL, response_ms = NULL, resolution_ms = NULL,
         paused_ms = 0, waiting_since = NULL, waiting_on = NULL, status_before_recovery = NULL,
         priority = $3, priority_score = $4, safety = $5, severity = $6, response_due_at = $7,
         resolution_due_at = $8, updated_at = $2,
         occurrences = occurrences + $9, incident_id = $10, last_fired_at = CASE WHEN $9 = 1 THEN $2 ELSE last_fired_at END,
         stale = CASE WHEN $9 = 1 THEN $11 ELSE stale END
       WHERE id = $1 AND status IN ('resolved', 'closed') RETURNING *`,
      [
        t.id,
        w.at,
        a.priority,
        a.score,
        a.safety,
        e?.severity ?? t.severity,
        new Date(due.response),
        new Date(due.resolution),
        e ? 1 : 0,
        e?.incidentId ?? t.incident_id,
        e?.stale ?? false,
      ],
    );
    const r = rows[0];
    if (!r) throw new Retry('reopened concurrently');
    await this.#event(q, w, t.id, 'ticket.reopened', actor, {
      from: t.status,
      reason,
      cycle: r.cycle,
      priority: r.priority,
      ...(e ? { incidentId: e.incidentId, stale: e.stale } : {}),
    });
    if (e) await this.#occurrence(q, w, t.id, e);
    if (!(e?.stale ?? false) && r.priority === 'P1') {
      await this.#page(q, w, r, a.keyword ? `safety: ${a.keyword}` : r.safety ? 'safety' : 'P1');
    }
    this.#observer.reopened?.();
    return r;
  }

  async #occurrence(q: Queryable, w: Work, ticketId: string, e: RuleFired | RuleUpdated): Promise<void> {
    await q.query(
      `INSERT INTO ticket_occurrences (ticket_id, incident_id, kind, reason, at, device_time, severity, metric,
         value, threshold, stale, late, evidence)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
      [
        ticketId,
        e.incidentId,
        e.type === 'rule.fired' ? 'fired' : 'updated',
        e.type === 'rule.updated' ? e.reason : null,
        w.at,
        new Date(e.deviceTime),
        e.severity,
        e.metric,
        JSON.stringify(e.value),
        JSON.stringify(e.threshold),
        e.stale,
        e.late,
        JSON.stringify(e.evidence),
      ],
    );
  }

  /** Pages the on-call channel, at most once per ticket cycle. */
  async #page(q: Queryable, w: Work, t: TicketRow, reason: string): Promise<void> {
    const receivers = this.#receivers('on_call').map((r) => r.name);
    const id = await this.#event(
      q,
      w,
      t.id,
      'oncall.paged',
      SYSTEM_ACTOR,
      { reason, priority: t.priority, receivers },
      `page:${t.cycle}`,
    );
    if (!id) return;
    w.notifications.push({ topic: 'on_call', ticketId: t.id, eventId: id, reason });
    this.#observer.paged?.();
  }

  async #lockOpen(q: Queryable, fingerprint: string): Promise<TicketRow | null> {
    const { rows } = await q.query<TicketRow>(
      `SELECT * FROM tickets WHERE fingerprint = $1 AND status NOT IN ('resolved', 'closed') FOR NO KEY UPDATE`,
      [fingerprint],
    );
    return rows[0] ?? null;
  }

  /** SLA-clock time of the current cycle at `now`, waiting excluded. */
  #slaElapsed(t: TicketRow, now: number, pausedMs: number): number {
    return Math.max(0, now - t.cycle_started_at.getTime() - pausedMs);
  }

  /**
   * Leaving `waiting`: the pause ends and the due times move by its length. Returns the new
   * values and a write() that closes the pause row; a no-op when the ticket was not waiting.
   */
  #endPause(q: Queryable, w: Work, t: TicketRow) {
    const paused = t.waiting_since ? Math.max(0, w.now - t.waiting_since.getTime()) : 0;
    return {
      pausedMs: Number(t.paused_ms) + paused,
      responseDue: t.response_due_at.getTime() + paused,
      resolutionDue: t.resolution_due_at.getTime() + paused,
      write: async () => {
        if (!t.waiting_since) return;
        await q.query(
          'UPDATE ticket_sla_pauses SET ended_at = $2 WHERE ticket_id = $1 AND ended_at IS NULL',
          [t.id, w.at],
        );
      },
    };
  }

  // ---------------------------------------------------------------- staff actions

  /** Moves a ticket along TRANSITIONS; `open` on a resolved or closed ticket reopens it. */
  async setStatus(
    id: string,
    to: TicketStatus,
    actor: Actor,
    options: { reason?: string | undefined; waitingOn?: WaitingOn | undefined } = {},
  ): Promise<Ticket> {
    return this.#staff(id, async (q, w, t) => {
      const from = t.status;
      const allowed = TRANSITIONS[from];
      if (to === from) {
        throw new FaultlineError('FL_INVALID_TRANSITION', `ticket ${id} is already ${to}`, { from, to });
      }
      const roles = allowed[to];
      if (!roles) {
        throw new FaultlineError('FL_INVALID_TRANSITION', `a ${from} ticket cannot become ${to}`, {
          from,
          to,
          allowed: Object.keys(allowed),
        });
      }
      if (!roles.includes(actor.role)) {
        throw new FaultlineError(
          'FL_FORBIDDEN',
          `role ${actor.role} may not move a ${from} ticket to ${to}`,
          {
            allowed: roles,
          },
        );
      }
      if (to === 'open') {
        await this.#reopen(q, w, t, actor.name, options.reason ?? 'reopened by staff');
        return;
      }
      const paused = this.#endPause(q, w, t);
      if (from === 'waiting') await paused.write();
      const waitingOn = to === 'waiting' ? (options.waitingOn ?? 'other') : null;
      if (to === 'waiting') {
        await q.query('INSERT INTO ticket_sla_pauses (ticket_id, reason, started_at) VALUES ($1, $2, $3)', [
          t.id,
          waitingOn,
          w.at,
        ]);
      }
      const elapsed = this.#slaElapsed(t, w.now, paused.pausedMs);
      const finishing = to === 'resolved' || to === 'closed';
      await q.query(
        `UPDATE tickets SET status = $2, waiting_on = $3, waiting_since = $4, paused_ms = $5,
           response_due_at = $6, resolution_due_at = $7,
           acknowledged_at = coalesce(acknowledged_at, $8), response_ms = coalesce(response_ms, $9),
           resolved_at = CASE WHEN $2 = 'resolved' THEN $8 ELSE resolved_at END,
           closed_at = CASE WHEN $2 = 'closed' THEN $8 ELSE closed_at END,
           resolution_ms = CASE WHEN $10 THEN coalesce(resolution_ms, $9) ELSE resolution_ms END,
           status_before_recovery = NULL, updated_at = $8
         WHERE id = $1`,
        [
          t.id,
          to,
          waitingOn,
          to === 'waiting' ? w.at : null,
          paused.pausedMs,
          new Date(paused.responseDue),
          new Date(paused.resolutionDue),
          w.at,
          elapsed,
          finishing,
        ],
      );
      await this.#event(q, w, t.id, 'status.changed', actor.name, {
        from,
        to,
        ...(options.reason ? { reason: options.reason } : {}),
        ...(waitingOn ? { waitingOn } : {}),
      });
    });
  }

  async acknowledge(id: string, actor: Actor): Promise<Ticket> {
    return this.setStatus(id, 'acknowledged', actor);
  }

  async reopen(id: string, actor: Actor, reason?: string): Promise<Ticket> {
    return this.setStatus(id, 'open', actor, { reason });
  }

  /** Sets or clears (null) the assignee; a closed ticket is not assigned. */
  async assign(id: string, assignee: string | null, actor: Actor): Promise<Ticket> {
    return this.#staff(id, async (q, w, t) => {
      if (t.status === 'closed') {
        throw new FaultlineError('FL_INVALID_TRANSITION', `ticket ${id} is closed: reopen it first`, {
          from: t.status,
        });
      }
      if (t.assignee === assignee) return;
      await q.query('UPDATE tickets SET assignee = $2, updated_at = $3 WHERE id = $1', [
        t.id,
        assignee,
        w.at,
      ]);
      await this.#event(q, w, t.id, 'assignee.changed', actor.name, { from: t.assignee, to: assignee });
    });
  }

  async comment(id: string, text: string, actor: Actor): Promise<Ticket> {
    return this.#staff(id, async (q, w, t) => {
      await q.query('UPDATE tickets SET updated_at = $2 WHERE id = $1', [t.id, w.at]);
      await this.#event(q, w, t.id, 'comment.added', actor.name, { text });
    });
  }

  /**
   * Links something to a ticket: kind `guide_push` (the guide-push feature; the timeline says
   * guide.sent), `external` (a helpdesk's own key), or any other kind. Idempotent per
   * (ticket, kind, ref): a repeat changes nothing and returns added: false.
   */
  async addLink(
    ticketId: string,
    kind: string,
    ref: string,
    options: { actor?: string; data?: Record<string, unknown> } = {},
  ): Promise<{ added: boolean; ticket: Ticket }> {
    let added = false;
    const ticket = await this.#staff(ticketId, async (q, w, t) => {
      const { rows } = await q.query(
        `INSERT INTO ticket_links (ticket_id, kind, ref, data, at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (ticket_id, kind, ref) DO NOTHING RETURNING id`,
        [t.id, kind, ref, JSON.stringify(options.data ?? {}), w.at],
      );
      if (rows.length === 0) return;
      added = true;
      await this.#event(
        q,
        w,
        t.id,
        kind === 'guide_push' ? 'guide.sent' : 'link.added',
        options.actor ?? SYSTEM_ACTOR,
        { kind, ref, ...(options.data ?? {}) },
      );
    });
    return { added, ticket };
  }

  async #staff(id: string, fn: (q: Queryable, w: Work, t: TicketRow) => Promise<void>): Promise<Ticket> {
    try {
      return await this.#run(async (q, w) => {
        const t = await ticketRow(q, id, true);
        if (!t) throw new FaultlineError('FL_NOT_FOUND', `no ticket ${id}`, { id });
        await fn(q, w, t);
        return t.id;
      }, false).then(async (tid) => (await this.get(tid))!);
    } catch (err) {
      if ((err as { code?: unknown }).code === '23505') {
        throw new FaultlineError(
          'FL_CONFLICT',
          `another ticket for the same problem is open: reopening ticket ${id} would make two`,
          { id },
        );
      }
      throw err;
    }
  }

  // ---------------------------------------------------------------- SLA and fleet checks

  /**
   * The scheduled check: marks response and resolution breaches, escalates each once per ticket
   * cycle (team-lead channel, one priority band up), and closes quiet fleet incidents. Safe to run
   * concurrently and repeatedly: the timeline's unique dedup key makes each escalation happen once.
   */
  async checkSla(): Promise<SlaCheckResult> {
    const now = new Date(this.#now());
    const { rows } = await this.#db.query<{ id: string }>(
      `SELECT id FROM tickets
       WHERE status NOT IN ('resolved', 'closed', 'waiting')
         AND ((acknowledged_at IS NULL AND response_breached_at IS NULL AND response_due_at <= $1)
           OR (resolution_breached_at IS NULL AND resolution_due_at <= $1))
       ORDER BY id LIMIT 1000`,
      [now],
    );
    let escalations = 0;
    for (const { id } of rows) {
      escalations += await this.#run(async (q, w) => {
        const t = await ticketRow(q, id, true);
        if (!t || isFinal(t.status) || t.status === 'waiting') return 0;
        const checks = [
          {
            target: 'response' as const,
            due: t.response_due_at,
            applies: t.acknowledged_at === null && t.response_breached_at === null,
          },
          {
            target: 'resolution' as const,
            due: t.resolution_due_at,
            applies: t.resolution_breached_at === null,
          },
        ];
        let priority = t.priority;
        const breached: Record<string, Date | null> = { response: null, resolution: null };
        let n = 0;
        for (const c of checks) {
          if (!c.applies || c.due.getTime() > w.now) continue;
          const eventId = await this.#event(
            q,
            w,
            t.id,
            'sla.breached',
            SYSTEM_ACTOR,
            { target: c.target, dueAt: c.due.toISOString(), priority, cycle: t.cycle },
            `sla.${c.target}:${t.cycle}`,
          );
          if (!eventId) continue;
          breached[c.target] = w.at;
          const raised = raiseOneBand(priority);
          if (raised !== priority) {
            await this.#event(q, w, t.id, 'priority.changed', SYSTEM_ACTOR, {
              from: priority,
              to: raised,
              reason: `sla.${c.target}`,
            });
            priority = raised;
          }
          w.notifications.push({
            topic: 'team_lead',
            ticketId: t.id,
            eventId,
            reason: `${c.target} target missed (due ${c.due.toISOString()})`,
          });
          this.#observer.escalated?.(c.target);
          n++;
        }
        if (n > 0) {
          await q.query(
            `UPDATE tickets SET response_breached_at = coalesce($2, response_breached_at),
               resolution_breached_at = coalesce($3, resolution_breached_at), priority = $4, updated_at = $5
             WHERE id = $1`,
            [t.id, breached.response, breached.resolution, priority, w.at],
          );
        }
        return n;
      });
    }
    const incidentsClosed = await this.#run(async (q, w) => {
      const { rows: closed } = await q.query<{ id: string }>(
        `UPDATE fleet_incidents f SET status = 'closed', closed_at = $1, updated_at = $1
         WHERE status = 'open' AND last_linked_at < $2
           AND NOT EXISTS (SELECT 1 FROM ticket_links l JOIN tickets t ON t.id = l.ticket_id
                           WHERE l.kind = 'fleet_incident' AND l.ref = f.id::text
                             AND t.status NOT IN ('resolved', 'closed'))
         RETURNING id`,
        [w.at, new Date(w.now - this.#config.fleet.windowMinutes * MINUTE)],
      );
      for (const r of closed) w.incidents.push({ id: r.id, kind: 'incident.closed' });
      return closed.length;
    });
    return { escalations, incidentsClosed };
  }

  /**
   * Links a ticket that opened or fired again to its fleet incident (opening one when it reaches
   * the threshold), after its own transaction committed and outside the rule-event limiter: the
   * per-rule lock below serialises the fleet checks of one rule, and a ticket opening must not wait
   * behind them. Tickets of one rule that arrive while a check runs wait here and go together in
   * the next one, so a burst takes a few lock turns instead of one per ticket. Resolves when this
   * ticket's check committed.
   */
  #linkFleet(ticketId: string, ruleId: string): Promise<void> {
    if (!this.#config.fleet.enabled) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const entry = { ticketId, resolve, reject };
      const queue = this.#fleetQueue.get(ruleId);
      if (queue) {
        queue.push(entry);
        return;
      }
      this.#fleetQueue.set(ruleId, [entry]);
      void this.#drainFleet(ruleId);
    });
  }

  /** Runs the queued fleet checks of one rule, a batch at a time, until none is left. */
  async #drainFleet(ruleId: string): Promise<void> {
    const queue = this.#fleetQueue.get(ruleId)!;
    while (queue.length > 0) {
      const batch = queue.splice(0, FLEET_BATCH);
      await this.#fleetSlots.run(async () => {
        try {
          await this.#untilDbAnswers(() => this.#checkFleet(batch.map((b) => b.ticketId)));
          for (const b of batch) b.resolve();
        } catch (err) {
          if (batch.length === 1) {
            batch[0]!.reject(err);
            return;
          }
          // One ticket's failure must not fail the others: each alone, once more.
          for (const b of batch) {
            await this.#untilDbAnswers(() => this.#checkFleet([b.ticketId])).then(b.resolve, b.reject);
          }
        }
      });
    }
    this.#fleetQueue.delete(ruleId);
  }

  /**
   * Fleet incidents: once `threshold` devices of one model (or batch) have fired one rule within
   * the window, one incident opens and links their tickets; later tickets of that rule and model
   * link to it while it is open. Runs after the tickets' own transactions committed, under a
   * per-rule advisory lock, so concurrent tickets (in this process or another) are counted one
   * after another, in id order, and the threshold is seen crossed exactly when it is.
   */
  async #checkFleet(ticketIds: string[]): Promise<void> {
    const fleet = this.#config.fleet;
    if (!fleet.enabled) return;
    await this.#run(async (q, w) => {
      const tickets: TicketRow[] = [];
      for (const id of [...ticketIds].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))) {
        const t = await ticketRow(q, id);
        if (t) tickets.push(t);
      }
      // Locks in one order everywhere, so two processes' batches cannot deadlock.
      for (const key of [...new Set(tickets.map((t) => fleetLockKey(t.rule_id)))].sort()) {
        await q.query('SELECT pg_advisory_xact_lock($1::bigint)', [key]);
      }
      for (const t of tickets) await this.#fleetLink(q, w, t);
    });
  }

  async #fleetLink(q: Queryable, w: Work, t: TicketRow): Promise<void> {
    const fleet = this.#config.fleet;
    const code = t.code ?? '';
    for (const scope of fleet.scopes) {
      const value = scope === 'model' ? t.model : t.batch;
      if (!value) continue;
      const found = await q.query<IncidentRow>(
        `SELECT * FROM fleet_incidents
         WHERE status = 'open' AND rule_id = $1 AND code = $2 AND scope = $3 AND scope_value = $4 FOR UPDATE`,
        [t.rule_id, code, scope, value],
      );
      let incident = found.rows[0] ?? null;
      let candidates: string[];
      if (incident) {
        candidates = [t.id];
      } else {
        const { rows } = await q.query<{ id: string; device_id: string }>(
          `SELECT id, device_id FROM tickets
           WHERE rule_id = $1 AND coalesce(code, '') = $2 AND ${scope === 'model' ? 'model' : 'batch'} = $3
             AND last_fired_at >= $4
           ORDER BY id`,
          [t.rule_id, code, value, new Date(w.now - fleet.windowMinutes * MINUTE)],
        );
        if (new Set(rows.map((r) => r.device_id)).size < fleet.threshold) continue;
        const inserted = await q.query<IncidentRow>(
          `INSERT INTO fleet_incidents (status, rule_id, code, scope, scope_value, model, title, severity,
             category, safety, team, priority, priority_score, affected_devices, affected_customers,
             opened_at, last_linked_at, updated_at)
           VALUES ('open', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'P4', 1, 0, 0, $11, $11, $11)
           RETURNING *`,
          [
            t.rule_id,
            code,
            scope,
            value,
            t.model,
            `${t.rule_id}${code ? ` ${code}` : ''} on ${scope === 'model' ? 'model' : 'batch'} ${value}`,
            t.severity,
            t.category,
            t.safety,
            fleet.team,
            w.at,
          ],
        );
        incident = inserted.rows[0]!;
        candidates = rows.map((r) => r.id);
        w.incidents.push({ id: incident.id, kind: 'incident.opened' });
      }
      let linked = 0;
      for (const id of candidates) {
        const { rows } = await q.query(
          `INSERT INTO ticket_links (ticket_id, kind, ref, data, at) VALUES ($1, 'fleet_incident', $2, $3, $4)
           ON CONFLICT (ticket_id, kind, ref) DO NOTHING RETURNING id`,
          [id, incident.id, JSON.stringify({ scope, value }), w.at],
        );
        if (rows.length === 0) continue;
        linked++;
        await this.#event(q, w, id, 'fleet.linked', SYSTEM_ACTOR, {
          incidentId: incident.id,
          scope,
          value,
        });
      }
      if (linked > 0) await this.#recountIncident(q, w, incident);
    }
  }

  async #recountIncident(q: Queryable, w: Work, incident: IncidentRow): Promise<void> {
    const { rows } = await q.query<{
      devices: number;
      customers: number;
      safety: boolean;
      severities: Severity[];
    }>(
      `SELECT count(DISTINCT t.device_id)::int AS devices,
              count(DISTINCT coalesce(t.owner_id, 'device:' || t.device_id))::int AS customers,
              coalesce(bool_or(t.safety), false) AS safety,
              array_agg(DISTINCT t.severity) AS severities
       FROM ticket_links l JOIN tickets t ON t.id = l.ticket_id
       WHERE l.kind = 'fleet_incident' AND l.ref = $1`,
      [incident.id],
    );
    const c = rows[0]!;
    const severity = c.severities.reduce<Severity>(
      (max, s) => (severityRank(s) > severityRank(max) ? s : max),
      incident.severity,
    );
    const p = priorityOf(
      { severity, category: incident.category, customers: c.customers, safety: c.safety },
      this.#config.priority,
    );
    await q.query(
      `UPDATE fleet_incidents SET affected_devices = $2, affected_customers = $3, safety = $4, severity = $5,
         priority = $6, priority_score = $7, last_linked_at = $8, updated_at = $8
       WHERE id = $1`,
      [incident.id, c.devices, c.customers, c.safety, severity, p.priority, p.score, w.at],
    );
    const opened = w.incidents.some((i) => i.id === incident.id);
    if (!opened && p.priority !== incident.priority)
      w.incidents.push({ id: incident.id, kind: 'incident.updated' });
  }

  // ---------------------------------------------------------------- reads

  async get(id: string): Promise<Ticket | null> {
    const row = await ticketRow(this.#db, id);
    return row ? toTicket(row, this.#now()) : null;
  }

  async detail(id: string): Promise<TicketDetail | null> {
    return ticketDetail(this.#db, id, this.#now());
  }

  /** The unresolved ticket of a fingerprint, if any (for features that start from a rule event). */
  async findOpen(fingerprint: string): Promise<Ticket | null> {
    const { rows } = await this.#db.query<TicketRow>(
      `SELECT * FROM tickets WHERE fingerprint = $1 AND status NOT IN ('resolved', 'closed')`,
      [fingerprint],
    );
    return rows[0] ? toTicket(rows[0], this.#now()) : null;
  }

  /**
   * Timeline entries after `afterEventId`, oldest first, for a live screen resuming its stream
   * (SSE Last-Event-ID). Each carries the ticket as it is now, not as it was then. Ids are not
   * commit order (see committedChangesSince): this is for a best-effort resume, not a consumer
   * that must see every entry.
   */
  async changesSince(afterEventId: string, limit = 1_000): Promise<TicketChange[]> {
    const { rows } = await this.#db.query<TimelineRow>(
      'SELECT id, ticket_id, at, actor, kind, data FROM ticket_events WHERE id > $1 ORDER BY id LIMIT $2',
      [afterEventId, limit],
    );
    return this.#changes(rows);
  }

  /**
   * Timeline entries after `after`, for consumers that must see each entry exactly once across
   * restarts (the owner push). Timeline ids come from a sequence, so on PostgreSQL an entry with a
   * lower id can commit after one with a higher id was read. Entries are therefore returned in
   * (writing transaction, id) order and only when their transaction is older than every transaction
   * still running (pg_snapshot_xmin): every later commit sorts after them, so a cursor at the last
   * one returned never passes over an entry. `held` says that committed entries are waiting for an
   * older transaction to finish (ask again soon).
   */
  async committedChangesSince(
    after: TimelinePosition,
    limit = 1_000,
  ): Promise<{ changes: PositionedChange[]; held: boolean }> {
    const { rows } = await this.#db.query<TimelineRow & { tx: string; final: boolean }>(
      `SELECT id, ticket_id, at, actor, kind, data, tx::text AS tx,
              tx < pg_snapshot_xmin(pg_current_snapshot()) AS final
       FROM ticket_events WHERE (tx, id) > ($1::xid8, $2::bigint) ORDER BY tx, id LIMIT $3`,
      [after.tx, after.id, limit],
    );
    // Final entries sort first (their tx is below the horizon, every other one's is not).
    const final = rows.filter((r) => r.final);
    const changes = await this.#changes(final);
    return {
      changes: changes.map((c, i) => ({ ...c, position: { tx: final[i]!.tx, id: final[i]!.id } })),
      held: final.length < rows.length,
    };
  }

  /** The position before every entry a transaction still running (or not yet begun) can write. */
  async timelineHorizon(): Promise<TimelinePosition> {
    const { rows } = await this.#db.query<{ tx: string }>(
      'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS tx',
    );
    return { tx: rows[0]!.tx, id: '0' };
  }

  async #changes(rows: TimelineRow[]): Promise<TicketChange[]> {
    if (rows.length === 0) return [];
    const now = this.#now();
    const tickets = await this.#db.query<TicketRow>('SELECT * FROM tickets WHERE id = ANY($1::bigint[])', [
      [...new Set(rows.map((r) => r.ticket_id))],
    ]);
    const byId = new Map(tickets.rows.map((t) => [t.id, toTicket(t, now)]));
    return rows.map((r) => ({
      eventId: r.id,
      kind: r.kind,
      at: r.at.toISOString(),
      actor: r.actor,
      data: r.data,
      ticket: byId.get(r.ticket_id)!,
    }));
  }

  async list(query: TicketListQuery = {}): Promise<{ items: Ticket[]; nextCursor: string | null }> {
    return listTickets(this.#db, query, this.#now());
  }

  async incidents(
    query: IncidentListQuery = {},
  ): Promise<{ items: FleetIncident[]; nextCursor: string | null }> {
    return listIncidents(this.#db, query);
  }

  async incident(id: string): Promise<(FleetIncident & { tickets: Ticket[] }) | null> {
    const row = await incidentRow(this.#db, id);
    if (!row) return null;
    return { ...toIncident(row), tickets: await incidentTickets(this.#db, id, this.#now()) };
  }

  /** Open tickets by rule, model, team and priority; medians and rates over tickets opened since `since`. */
  async stats(since?: Date): Promise<TicketStats> {
    return ticketStats(this.#db, since ?? new Date(this.#now() - 30 * 24 * 60 * MINUTE));
  }

  async openGroups(): Promise<OpenTicketGroup[]> {
    return openTicketGroups(this.#db);
  }

  // ---------------------------------------------------------------- plumbing

  async #event(
    q: Queryable,
    w: Work,
    ticketId: string,
    kind: TicketEventKind,
    actor: string,
    data: Record<string, unknown>,
    dedupKey?: string,
  ): Promise<string | null> {
    const { rows } = await q.query<{ id: string }>(
      dedupKey
        ? `INSERT INTO ticket_events (ticket_id, at, actor, kind, data, dedup_key) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (ticket_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id`
        : `INSERT INTO ticket_events (ticket_id, at, actor, kind, data) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
      [ticketId, w.at, actor, kind, JSON.stringify(data), ...(dedupKey ? [dedupKey] : [])],
    );
    const id = rows[0]?.id;
    if (!id) return null;
    const list = w.events.get(ticketId) ?? [];
    list.push({ id, kind, actor, data });
    w.events.set(ticketId, list);
    return id;
  }

  #receivers(topic: ReceiverTopic, kind?: string): ReceiverConfig[] {
    if (!this.#outbox) return [];
    return this.#config.receivers.filter(
      (r) =>
        r.topics.includes(topic) &&
        (topic !== 'tickets' || !r.events || kind === undefined || r.events.includes(kind)),
    );
  }

  /** Runs fn in a transaction, retrying races; the outbox rows are written before COMMIT. */
  async #run<T>(fn: (q: Queryable, w: Work) => Promise<T>, retry = true): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const w = new Work(this.#now());
      try {
        const result = await this.#db.tx(async (q) => {
          const r = await fn(q, w);
          await this.#flush(q, w);
          return r;
        });
        this.#publish(w);
        return result;
      } catch (err) {
        if (retry && attempt < MAX_TX_ATTEMPTS && isRetryable(err)) continue;
        throw err;
      }
    }
  }

  async #flush(q: Queryable, w: Work): Promise<void> {
    const links = new Map<string, TicketLink[]>();
    const fingerprints = new Map<string, string>();
    for (const [ticketId, events] of w.events) {
      const row = (await ticketRow(q, ticketId))!;
      const ticket = toTicket(row, w.now);
      w.snapshots.set(ticketId, ticket);
      fingerprints.set(ticketId, row.fingerprint);
      const ticketLinks = await linksOf(q, ticketId);
      links.set(ticketId, ticketLinks);
      for (const ev of events) {
        const change: TicketChange = {
          eventId: ev.id,
          kind: ev.kind,
          at: w.at.toISOString(),
          actor: ev.actor,
          data: ev.data,
          ticket,
        };
        w.stream.push({ type: 'ticket', change });
        const receivers = this.#receivers('tickets', ev.kind).map((r) => r.name);
        if (receivers.length === 0) continue;
        await this.#outbox!.enqueue(q, {
          topic: 'tickets',
          kind: ev.kind,
          key: `${row.fingerprint}:${ev.id}`,
          payload: JSON.stringify(ticketWebhookBody(change, ticketLinks)),
          receivers,
        });
      }
    }
    for (const n of w.notifications) {
      const receivers = this.#receivers(n.topic).map((r) => r.name);
      if (receivers.length === 0) continue;
      const ticket = w.snapshots.get(n.ticketId)!;
      await this.#outbox!.enqueue(q, {
        topic: n.topic,
        kind: n.topic === 'on_call' ? 'notify.on_call' : 'notify.team_lead',
        key: `${fingerprints.get(n.ticketId)}:${n.eventId}:${n.topic}`,
        payload: JSON.stringify({
          event: n.topic === 'on_call' ? 'notify.on_call' : 'notify.team_lead',
          channel: n.topic,
          reason: n.reason,
          text: notificationText(n.topic, ticket, n.reason),
          occurredAt: w.at.toISOString(),
          ticket: ticketWebhookTicket(ticket, links.get(n.ticketId) ?? []),
        }),
        receivers,
      });
    }
    for (const inc of w.incidents) {
      const row = (await incidentRow(q, inc.id))!;
      const incident = toIncident(row);
      w.stream.push({ type: 'incident', kind: inc.kind, at: w.at.toISOString(), incident });
      const receivers = this.#receivers('tickets', inc.kind).map((r) => r.name);
      if (receivers.length === 0) continue;
      await this.#outbox!.enqueue(q, {
        topic: 'tickets',
        kind: inc.kind,
        key: `fleet-incident:${incident.id}:${inc.kind}:${w.now}`,
        payload: JSON.stringify({ event: inc.kind, occurredAt: w.at.toISOString(), incident }),
        receivers,
      });
    }
  }

  #publish(w: Work): void {
    if (w.stream.length > 0 && this.#outbox) this.#outbox.wake();
    for (const e of w.stream) {
      for (const fn of this.#listeners) {
        try {
          fn(e);
        } catch (err) {
          this.#log?.warn({ err }, 'a ticket stream listener failed');
        }
      }
    }
  }
}

/** The ticket as helpdesk adapters (Zendesk, Jira, ServiceNow) need it. */
export function ticketWebhookTicket(t: Ticket, links: TicketLink[]) {
  return {
    id: t.id,
    externalKey: t.fingerprint,
    url: `/api/v1/tickets/${t.id}`,
    title: t.title,
    description: t.description,
    status: t.status,
    priority: t.priority,
    priorityScore: t.priorityScore,
    severity: t.severity,
    category: t.category,
    safety: t.safety,
    team: t.team,
    assignee: t.assignee,
    rule: { id: t.ruleId, version: t.ruleVersion, code: t.code },
    device: t.device,
    owner: t.owner,
    occurrences: t.occurrences,
    cycle: t.cycle,
    links: {
      previousTicketId: t.previousTicketId,
      fleetIncidentIds: links.filter((l) => l.kind === 'fleet_incident').map((l) => l.ref),
      guides: links.filter((l) => l.kind === 'guide_push').map((l) => l.ref),
      other: links
        .filter((l) => !['fleet_incident', 'guide_push', 'previous_ticket'].includes(l.kind))
        .map((l) => ({ kind: l.kind, ref: l.ref })),
    },
    openedAt: t.openedAt,
    acknowledgedAt: t.acknowledgedAt,
    recoveredAt: t.recoveredAt,
    resolvedAt: t.resolvedAt,
    closedAt: t.closedAt,
    updatedAt: t.updatedAt,
    sla: {
      responseDueAt: t.sla.responseDueAt,
      resolutionDueAt: t.sla.resolutionDueAt,
      responseBreachedAt: t.sla.responseBreachedAt,
      resolutionBreachedAt: t.sla.resolutionBreachedAt,
    },
  };
}

export function ticketWebhookBody(change: TicketChange, links: TicketLink[]) {
  return {
    event: change.kind,
    eventId: change.eventId,
    occurredAt: change.at,
    actor: change.actor,
    change: change.data,
    ticket: ticketWebhookTicket(change.ticket, links),
  };
}

function notificationText(topic: 'on_call' | 'team_lead', t: Ticket, reason: string): string {
  const head = topic === 'on_call' ? `[${t.priority}] ${t.title}` : `[${t.priority}] SLA: ${t.title}`;
  return `${head} - device ${t.device.id} (${t.device.model}), team ${t.team}: ${reason}`;
}
