/**
 * What the push feature needs from tickets, behind one interface: read the
 * timeline from a cursor, put sends and receipts on it, mark a ticket recovered
 * when the owner fixed it, raise its priority when the owner could not.
 *
 * The ticket service has no "recovered by a person" or "raise priority" call
 * yet. Until it does: recovery goes through its own resolve path (the rule
 * engine's, with reason owner_fixed), and the priority raise is one transaction
 * here that mirrors what an SLA escalation writes (band, due times, timeline
 * entry). The receipt's link entry, written after it through the service, is
 * what carries the new priority to webhooks and the live stream.
 */
import type { Db } from '../db/db.js';
import type { ResolveReason, RuleResolved } from '../rules/types.js';
import type { Priority } from '../tickets/config.js';
import type { PositionedChange, Ticket, TimelinePosition } from '../tickets/model.js';
import { raiseOneBand } from '../tickets/priority.js';
import type { TicketService } from '../tickets/service.js';

export interface TicketPort {
  /** Where a reader starting now begins: after every entry already committed, before any still to come. */
  horizon(): Promise<TimelinePosition>;
  /** Entries after a position, each once, in an order no later commit can go behind (see TicketService). */
  committedChangesSince(
    after: TimelinePosition,
    limit: number,
  ): Promise<{ changes: PositionedChange[]; held: boolean }>;
  /** Called after every committed ticket change. */
  subscribe(fn: () => void): () => void;
  get(ticketId: string): Promise<Ticket | null>;
  /** Idempotent per (ticket, kind, ref); false when it was there already or the ticket is gone. */
  addLink(
    ticketId: string,
    kind: string,
    ref: string,
    options: { actor: string; data: Record<string, unknown> },
  ): Promise<boolean>;
  /** Marks an unresolved ticket recovered; false when it was not in a state to be. */
  markRecovered(ticket: Ticket, reason: string): Promise<boolean>;
  /** One band up, once per dedupKey; null when nothing changed (already P1, final, done before). */
  raisePriority(
    ticketId: string,
    actor: string,
    reason: string,
    dedupKey: string,
  ): Promise<{ from: Priority; to: Priority } | null>;
}

const MINUTE = 60_000;

export function ticketPort(service: TicketService, db: Db): TicketPort {
  return {
    horizon: () => service.timelineHorizon(),
    committedChangesSince: (after, limit) => service.committedChangesSince(after, limit),
    subscribe: (fn) => service.subscribe(() => fn()),
    get: (id) => service.get(id),
    async addLink(ticketId, kind, ref, options) {
      try {
        return (await service.addLink(ticketId, kind, ref, options)).added;
      } catch (err) {
        if ((err as { code?: unknown }).code === 'FL_NOT_FOUND') return false;
        throw err;
      }
    },
    async markRecovered(t, reason) {
      const now = service.now();
      const opened = Date.parse(t.openedAt);
      const e: RuleResolved = {
        type: 'rule.resolved',
        reason: reason as ResolveReason,
        resolvedAt: now,
        durationMs: Math.max(0, now - opened),
        ruleId: t.ruleId,
        ruleVersion: t.ruleVersion,
        ruleFile: null,
        fingerprint: t.fingerprint,
        incidentId: t.incidentId,
        title: t.title,
        description: t.description,
        severity: t.severity,
        category: t.category,
        safety: t.safety,
        actions: { ticket: true, guide: null, autoClose: false },
        labels: t.labels,
        device: {
          id: t.device.id,
          model: t.device.model,
          firmware: t.device.firmware,
          region: t.device.region,
          batch: t.device.batch,
          ownerId: t.owner.id,
          ownerLocale: t.owner.locale,
        },
        deviceTime: now,
        serverTime: now,
        pendingSince: null,
        firingSince: opened,
        metric: null,
        value: null,
        threshold: null,
        params: {},
        occurrences: null,
        code: t.code,
        flapCount: 0,
        evidence: { samples: [], faults: [], windows: [], truncated: false },
        late: false,
        stale: false,
      };
      const outcome = await service.handleResolved(e);
      return outcome.action === 'recovered';
    },
    async raisePriority(ticketId, actor, reason, dedupKey) {
      const sla = service.config.sla;
      return db.tx(async (q) => {
        const { rows } = await q.query<{
          status: string;
          priority: Priority;
          cycle_started_at: Date;
          paused_ms: string;
          acknowledged_at: Date | null;
          response_due_at: Date;
          resolution_due_at: Date;
        }>(
          `SELECT status, priority, cycle_started_at, paused_ms, acknowledged_at, response_due_at, resolution_due_at
           FROM tickets WHERE id = $1 FOR NO KEY UPDATE`,
          [ticketId],
        );
        const t = rows[0];
        if (!t || t.status === 'resolved' || t.status === 'closed') return null;
        const to = raiseOneBand(t.priority);
        if (to === t.priority) return null;
        const at = new Date(service.now());
        const inserted = await q.query(
          `INSERT INTO ticket_events (ticket_id, at, actor, kind, data, dedup_key)
           VALUES ($1, $2, $3, 'priority.changed', $4, $5)
           ON CONFLICT (ticket_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id`,
          [ticketId, at, actor, JSON.stringify({ from: t.priority, to, reason }), dedupKey],
        );
        if (inserted.rows.length === 0) return null;
        // As an SLA escalation does: the tighter targets of the new band, never later ones.
        const start = t.cycle_started_at.getTime() + Number(t.paused_ms);
        const response = Math.min(t.response_due_at.getTime(), start + sla[to].responseMinutes * MINUTE);
        const resolution = Math.min(
          t.resolution_due_at.getTime(),
          start + sla[to].resolutionMinutes * MINUTE,
        );
        await q.query(
          `UPDATE tickets SET priority = $2, response_due_at = $3, resolution_due_at = $4, updated_at = $5
           WHERE id = $1`,
          [
            ticketId,
            to,
            t.acknowledged_at ? t.response_due_at : new Date(response),
            new Date(resolution),
            at,
          ],
        );
        return { from: t.priority, to };
      });
    },
  };
}
