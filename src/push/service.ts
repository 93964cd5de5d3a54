/**
 * Guides and surveys pushed to owners' apps.
 *
 * Triggers: the ticket timeline (ticket.opened / ticket.reopened push a guide, a
 * resolution asks for a rating), read from a cursor kept in the database so a
 * restart neither skips nor repeats; and rule.fired events that want a guide
 * but no ticket. Each trigger makes at most one notification, keyed by the
 * trigger, so handling it twice (a replay, two processes) changes nothing.
 *
 * A notification is sent when the policy allows (quiet hours, per-owner rate,
 * one per incident; DANGER bypasses all): it is published to the app over MQTT
 * (QoS 1) and, with a gateway configured, enqueued in the transactional outbox
 * for the push gateway with its id as idempotency key; the send is put on the
 * ticket timeline. Until the app says "delivered", it is re-sent whenever the
 * app connects, within the TTL; the app drops repeats by id.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Db, Queryable } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';
import type { GuideLibrary } from '../guides/library.js';
import type { Guide, SignalWord } from '../guides/model.js';
import type { Logger } from '../log/logger.js';
import type { OwnerContact, OwnerStore } from '../owners/store.js';
import type { RuleFired, RuleUpdated } from '../rules/types.js';
import type { Ticket, TicketChange, TimelinePosition } from '../tickets/model.js';
import { ENGINE_ACTOR } from '../tickets/service.js';
import type { Outbox } from '../webhooks/outbox.js';
import { GATEWAY_RECEIVER, type PushConfig } from './config.js';
import { signGuideLink } from './links.js';
import { decide, parseQuietHours } from './policy.js';
import { surveyText } from './texts.js';
import type { TicketPort } from './tickets-port.js';

const HOUR = 3_600_000;
/** FCM and APNs refuse payloads over 4 KB; the gateway body stays under it. */
export const MAX_GATEWAY_BYTES = 4096;
const CURSOR = 'push';
const CHANGE_BATCH = 500;
/** First re-read when timeline entries wait for an older transaction; doubles up to pollMs. */
const HELD_FIRST_MS = 5;
const DISPATCH_BATCH = 100;
/** Rule events remembered for "does this incident want a guide": far more than are ever open. */
const INCIDENT_MEMORY = 50_000;

export const RECEIPT_STATUSES = ['delivered', 'opened', 'fixed', 'not_fixed', 'survey'] as const;
export type ReceiptStatus = (typeof RECEIPT_STATUSES)[number];

/** What the app sends, over MQTT (owners/{id}/receipts) or HTTP. Unknown keys are ignored. */
export const receiptSchema = z.object({
  notification: z.string().min(1).max(64),
  status: z.enum(RECEIPT_STATUSES),
  score: z.number().int().min(1).max(5).optional().describe('survey: 1 (poor) to 5 (excellent)'),
  text: z.string().max(2_000).optional().describe('survey: a comment'),
});
export type Receipt = z.infer<typeof receiptSchema>;

/** Where notifications reach the app; the embedded broker or an external one. */
export interface InAppChannel {
  publish(ownerId: string, payload: string): Promise<void>;
}

export interface PushObserver {
  notification?(kind: string, outcome: string): void;
  receipt?(status: string): void;
}

export interface PushServiceOptions {
  db: Db;
  config: PushConfig;
  guides: GuideLibrary;
  owners: OwnerStore;
  /** null when tickets are off: guides then follow rule events directly. */
  tickets: TicketPort | null;
  outbox: Outbox | null;
  linkKey: string;
  now?: () => number;
  log?: Logger;
  observer?: PushObserver;
  /** Whether the rule engine still sees the fault; a "fixed" receipt then does not recover the ticket. */
  stillFiring?: (ruleId: string, deviceId: string, code: string | null) => boolean;
}

interface NotificationRow {
  id: string;
  owner_id: string | null;
  kind: 'guide' | 'survey';
  ticket_id: string | null;
  device_id: string | null;
  rule_id: string | null;
  collapse_key: string;
  guide_id: string | null;
  locale: string | null;
  signal: SignalWord | null;
  severity: string | null;
  body: InAppMessage | null;
  status: 'scheduled' | 'sent' | 'superseded' | 'expired' | 'cancelled';
  held: string | null;
  send_at: Date;
  expires_at: Date;
  created_at: Date;
  sent_at: Date | null;
  channels: string[] | null;
  timeline_at: Date | null;
  delivered_at: Date | null;
  opened_at: Date | null;
  outcome: 'fixed' | 'not_fixed' | null;
  outcome_at: Date | null;
  survey_score: number | null;
  survey_text: string | null;
  answered_at: Date | null;
}

/** What the app receives on owners/{id}/notifications. */
export type InAppMessage = {
  id: string;
  kind: 'guide' | 'survey';
  ticketId: string | null;
  deviceId: string | null;
  collapseKey: string;
  severity: string | null;
  signal: SignalWord;
  title: string;
  summary: string;
  locale: string;
  guide?: {
    id: string;
    locale: string;
    url: string;
    title: string;
    signal: SignalWord;
    steps: string[];
    stopAndCall: string;
    body: string;
  };
  survey?: { scale: [1, 5]; comment: boolean };
  createdAt: string;
  expiresAt: string;
};

export type Notification = {
  id: string;
  ownerId: string | null;
  kind: 'guide' | 'survey';
  ticketId: string | null;
  deviceId: string | null;
  ruleId: string | null;
  collapseKey: string;
  guideId: string | null;
  locale: string | null;
  signal: SignalWord | null;
  status: NotificationRow['status'];
  held: string[];
  sendAt: string;
  expiresAt: string;
  createdAt: string;
  sentAt: string | null;
  channels: string[];
  deliveredAt: string | null;
  openedAt: string | null;
  outcome: 'fixed' | 'not_fixed' | null;
  survey: { score: number; text: string | null; answeredAt: string } | null;
  message: InAppMessage | null;
};

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

function toNotification(r: NotificationRow): Notification {
  return {
    id: r.id,
    ownerId: r.owner_id,
    kind: r.kind,
    ticketId: r.ticket_id,
    deviceId: r.device_id,
    ruleId: r.rule_id,
    collapseKey: r.collapse_key,
    guideId: r.guide_id,
    locale: r.locale,
    signal: r.signal,
    status: r.status,
    held: r.held ? r.held.split(',') : [],
    sendAt: r.send_at.toISOString(),
    expiresAt: r.expires_at.toISOString(),
    createdAt: r.created_at.toISOString(),
    sentAt: iso(r.sent_at),
    channels: r.channels ?? [],
    deliveredAt: iso(r.delivered_at),
    openedAt: iso(r.opened_at),
    outcome: r.outcome,
    survey:
      r.survey_score !== null && r.answered_at
        ? { score: r.survey_score, text: r.survey_text, answeredAt: r.answered_at.toISOString() }
        : null,
    message: r.body,
  };
}

/** Deterministic, so the same trigger gives the same id in every process. */
export function notificationId(trigger: string): string {
  return `n-${createHash('sha256').update(trigger).digest('base64url').slice(0, 22)}`;
}

/** The longest prefix of text (whole code points, then "…") whose JSON string body fits in maxBytes. */
function truncateBytes(text: string, maxBytes: number): string {
  const bytes = (t: string) => Buffer.byteLength(JSON.stringify(t)) - 2;
  if (bytes(text) <= maxBytes) return text;
  const budget = maxBytes - bytes('…');
  let out = '';
  for (const cp of text) {
    if (bytes(out + cp) > budget) break;
    out += cp;
  }
  return out.length > 0 ? `${out}…` : '';
}

/**
 * The push-gateway body: what FCM/APNs/a vendor service needs to show the notification and
 * nothing more. The summary (then the title) is shortened until the body fits MAX_GATEWAY_BYTES.
 */
export function gatewayBody(
  m: InAppMessage,
  owner: Pick<OwnerContact, 'id' | 'pushChannel' | 'pushToken'>,
  options: { urgent: boolean; ttlSeconds: number },
): string {
  const build = (title: string, summary: string) =>
    JSON.stringify({
      event: `owner.${m.kind}`,
      id: m.id,
      kind: m.kind,
      to: { ownerId: owner.id, channel: owner.pushChannel, token: owner.pushToken },
      title,
      summary,
      severity: m.severity,
      signal: m.signal,
      collapseKey: m.collapseKey,
      priority: options.urgent ? 'high' : 'normal',
      ttlSeconds: options.ttlSeconds,
      locale: m.locale,
      ticketId: m.ticketId,
      link: m.guide?.url ?? null,
      createdAt: m.createdAt,
    });
  const bytes = (t: string) => Buffer.byteLength(JSON.stringify(t)) - 2;
  let body = build(m.title, m.summary);
  const excess = Buffer.byteLength(body) - MAX_GATEWAY_BYTES;
  if (excess <= 0) return body;
  const summary = truncateBytes(m.summary, bytes(m.summary) - excess);
  body = build(m.title, summary);
  const still = Buffer.byteLength(body) - MAX_GATEWAY_BYTES;
  if (still > 0) body = build(truncateBytes(m.title, bytes(m.title) - still), summary);
  return body;
}

export interface TriggerOutcome {
  outcome: 'created' | 'exists' | 'no_owner' | 'no_guide' | 'guide_off' | 'ignored';
  id?: string;
}

export class PushService {
  readonly #o: PushServiceOptions;
  readonly #now: () => number;
  readonly #incidentGuides = new Map<string, string | null>();
  #inApp: InAppChannel | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #heldDelay = 0;
  #started = false;
  #unsubscribe: (() => void) | null = null;
  readonly #failures = new Map<string, number>();

  constructor(options: PushServiceOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  get config(): PushConfig {
    return this.#o.config;
  }

  setInApp(channel: InAppChannel | null): void {
    this.#inApp = channel;
  }

  // ---------------------------------------------------------------- triggers

  /**
   * Remembers whether an incident's rule wants a guide (and which); a rule event that wants one
   * but opens no ticket gets its guide here, keyed by the incident.
   */
  async noteRuleEvent(e: RuleFired | RuleUpdated): Promise<TriggerOutcome> {
    this.#incidentGuides.delete(e.incidentId);
    this.#incidentGuides.set(e.incidentId, e.actions.guide);
    if (this.#incidentGuides.size > INCIDENT_MEMORY) {
      const oldest = this.#incidentGuides.keys().next().value;
      if (oldest !== undefined) this.#incidentGuides.delete(oldest);
    }
    if (e.type !== 'rule.fired' || !e.actions.guide || (e.actions.ticket && this.#o.tickets)) {
      return { outcome: 'ignored' };
    }
    const ownerId = e.device.ownerId;
    if (!ownerId) return this.#count('guide', { outcome: 'no_owner' });
    const owner = await this.#o.owners.contact(ownerId);
    if (!owner || owner.disabled) return this.#count('guide', { outcome: 'no_owner' });
    const locale = e.device.ownerLocale ?? owner.locale;
    const choice = this.#o.guides.select(
      {
        guideId: e.actions.guide,
        ruleId: e.ruleId,
        code: e.code,
        model: e.device.model,
        firmware: e.device.firmware,
      },
      locale,
    );
    if (!choice) return this.#count('guide', { outcome: 'no_guide' });
    const r = await this.#create({
      trigger: `rule:${e.incidentId}`,
      owner,
      ticketId: null,
      deviceId: e.device.id,
      ruleId: e.ruleId,
      collapseKey: e.fingerprint,
      severity: e.severity,
      guide: choice.guide,
    });
    this.wake();
    return r;
  }

  /** One ticket timeline entry: a guide for an opened or reopened ticket, a survey for a resolved one. */
  async handleChange(c: TicketChange): Promise<TriggerOutcome> {
    // A reopen by staff is their call, not news for the owner; a recurrence is.
    if (c.kind === 'ticket.opened' || (c.kind === 'ticket.reopened' && c.actor === ENGINE_ACTOR)) {
      return this.#guideForTicket(c.ticket, c.eventId);
    }
    if (c.kind === 'status.changed' && c.data.to === 'resolved' && this.#o.config.survey.enabled) {
      return this.#surveyForTicket(c.ticket, c.eventId);
    }
    return { outcome: 'ignored' };
  }

  async #guideForTicket(t: Ticket, eventId: string): Promise<TriggerOutcome> {
    const wanted = this.#incidentGuides.get(t.incidentId);
    if (wanted === null) return this.#count('guide', { outcome: 'guide_off' });
    if (!t.owner.id) return this.#count('guide', { outcome: 'no_owner' });
    const owner = await this.#o.owners.contact(t.owner.id);
    if (!owner || owner.disabled) return this.#count('guide', { outcome: 'no_owner' });
    const choice = this.#o.guides.select(
      {
        guideId: wanted ?? null,
        ruleId: t.ruleId,
        code: t.code,
        model: t.device.model,
        firmware: t.device.firmware,
      },
      t.owner.locale ?? owner.locale,
    );
    if (!choice) return this.#count('guide', { outcome: 'no_guide' });
    return this.#create({
      trigger: `ticket-event:${eventId}`,
      owner,
      ticketId: t.id,
      deviceId: t.device.id,
      ruleId: t.ruleId,
      collapseKey: t.fingerprint,
      severity: t.severity,
      guide: choice.guide,
    });
  }

  async #surveyForTicket(t: Ticket, eventId: string): Promise<TriggerOutcome> {
    if (!t.owner.id) return this.#count('survey', { outcome: 'no_owner' });
    const owner = await this.#o.owners.contact(t.owner.id);
    if (!owner || owner.disabled) return this.#count('survey', { outcome: 'no_owner' });
    // Only owners who were told about the problem are asked how its repair went.
    const { rows } = await this.#o.db.query(
      "SELECT 1 FROM owner_notifications WHERE ticket_id = $1 AND kind = 'guide' AND status = 'sent' LIMIT 1",
      [t.id],
    );
    if (rows.length === 0) return { outcome: 'ignored' };
    return this.#create({
      trigger: `survey:${eventId}`,
      owner,
      ticketId: t.id,
      deviceId: t.device.id,
      ruleId: t.ruleId,
      collapseKey: t.fingerprint,
      severity: t.severity,
      survey: surveyText(t.owner.locale ?? owner.locale, t.device.model),
    });
  }

  async #create(n: {
    trigger: string;
    owner: OwnerContact;
    ticketId: string | null;
    deviceId: string;
    ruleId: string;
    collapseKey: string;
    severity: string;
    guide?: Guide;
    survey?: { locale: string; title: string; summary: string };
  }): Promise<TriggerOutcome> {
    const kind = n.guide ? 'guide' : 'survey';
    const id = notificationId(n.trigger);
    const now = this.#now();
    const expires = now + this.#o.config.ttlHours * HOUR;
    const locale = n.guide?.locale ?? n.survey!.locale;
    const signal: SignalWord = n.guide?.signal ?? 'NOTICE';
    const message: InAppMessage = {
      id,
      kind,
      ticketId: n.ticketId,
      deviceId: n.deviceId,
      collapseKey: n.collapseKey,
      severity: n.severity,
      signal,
      title: n.guide?.title ?? n.survey!.title,
      summary: n.guide?.summary ?? n.survey!.summary,
      locale,
      ...(n.guide
        ? {
            guide: {
              id: n.guide.id,
              locale: n.guide.locale,
              url: signGuideLink(
                this.#o.linkKey,
                {
                  guideId: n.guide.id,
                  locale: n.guide.locale,
                  ownerId: n.owner.id,
                  exp: Math.floor((now + this.#o.config.linkTtlHours * HOUR) / 1000),
                },
                this.#o.config.publicUrl,
              ),
              title: n.guide.title,
              signal: n.guide.signal,
              steps: n.guide.steps,
              stopAndCall: n.guide.stopAndCall,
              body: n.guide.body,
            },
          }
        : { survey: { scale: [1, 5] as [1, 5], comment: true } }),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(expires).toISOString(),
    };
    const created = await this.#o.db.tx(async (q) => {
      const { rows } = await q.query<{ id: string }>(
        `INSERT INTO owner_notifications (id, owner_id, kind, trigger_key, ticket_id, device_id, rule_id,
           collapse_key, guide_id, locale, signal, severity, body, status, send_at, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'scheduled', $14, $15, $14)
         ON CONFLICT (trigger_key) DO NOTHING RETURNING id`,
        [
          id,
          n.owner.id,
          kind,
          n.trigger,
          n.ticketId,
          n.deviceId,
          n.ruleId,
          n.collapseKey,
          n.guide?.id ?? null,
          locale,
          signal,
          n.severity,
          JSON.stringify(message),
          new Date(now),
          new Date(expires),
        ],
      );
      if (rows.length === 0) return false;
      // One per incident: an older one still waiting (quiet hours, limits) is replaced by this.
      await q.query(
        `UPDATE owner_notifications SET status = 'superseded'
         WHERE collapse_key = $1 AND owner_id = $2 AND status = 'scheduled' AND id <> $3`,
        [n.collapseKey, n.owner.id, id],
      );
      return true;
    });
    return this.#count(kind, { outcome: created ? 'created' : 'exists', id });
  }

  #count(kind: string, r: TriggerOutcome): TriggerOutcome {
    if (r.outcome !== 'exists' && r.outcome !== 'ignored') this.#o.observer?.notification?.(kind, r.outcome);
    return r;
  }

  // ---------------------------------------------------------------- the loop

  /**
   * Makes sure the timeline cursor exists before any ticket can open, so on the first start the
   * tickets that open from then on are all seen (the ones before are not: the feature was not there).
   */
  async init(): Promise<void> {
    if (this.#o.tickets) await this.#cursor();
  }

  /**
   * Reads the ticket timeline from the stored cursor and handles every entry. Entries wait until no
   * older transaction can still commit one before them (see TicketService.committedChangesSince);
   * `held` says some do, and the loop asks again shortly.
   */
  async pumpTimeline(): Promise<{ handled: number; held: boolean }> {
    const tickets = this.#o.tickets;
    if (!tickets) return { handled: 0, held: false };
    let cursor = await this.#cursor();
    let handled = 0;
    for (;;) {
      const { changes, held } = await tickets.committedChangesSince(cursor, CHANGE_BATCH);
      for (const c of changes) {
        try {
          await this.handleChange(c);
          this.#failures.delete(c.eventId);
        } catch (err) {
          // Retried on the next passes; a change that keeps failing is skipped, not a wedge.
          const n = (this.#failures.get(c.eventId) ?? 0) + 1;
          this.#failures.set(c.eventId, n);
          if (n < 3) {
            await this.#saveCursor(cursor);
            throw err;
          }
          this.#failures.delete(c.eventId);
          this.#o.observer?.notification?.(c.kind === 'status.changed' ? 'survey' : 'guide', 'failed');
          this.#o.log?.error({ err, eventId: c.eventId }, 'push: giving up on a ticket change after 3 tries');
        }
        cursor = c.position;
        handled++;
      }
      if (changes.length > 0) await this.#saveCursor(cursor);
      if (held || changes.length < CHANGE_BATCH) return { handled, held };
    }
  }

  async #cursor(): Promise<TimelinePosition> {
    const { rows } = await this.#o.db.query<{ tx: string; event_id: string }>(
      'SELECT tx::text AS tx, event_id::text AS event_id FROM push_cursors WHERE name = $1',
      [CURSOR],
    );
    if (rows[0]) return { tx: rows[0].tx, id: rows[0].event_id };
    // First start: tickets from before the feature existed get no push.
    const start = await this.#o.tickets!.horizon();
    await this.#o.db.query(
      `INSERT INTO push_cursors (name, tx, event_id, updated_at) VALUES ($1, $2::xid8, $3, $4)
       ON CONFLICT (name) DO NOTHING`,
      [CURSOR, start.tx, start.id, new Date(this.#now())],
    );
    return this.#cursor();
  }

  async #saveCursor(p: TimelinePosition): Promise<void> {
    // Only forward: two processes moving it never move it back.
    await this.#o.db.query(
      `UPDATE push_cursors SET tx = $2::xid8, event_id = $3, updated_at = $4
       WHERE name = $1 AND (tx, event_id) < ($2::xid8, $3::bigint)`,
      [CURSOR, p.tx, p.id, new Date(this.#now())],
    );
  }

  /**
   * Sends what is due and allowed; holds the rest to the time the policy names. Returns the
   * notifications sent in this pass.
   */
  async dispatchDue(): Promise<Notification[]> {
    const now = this.#now();
    const cfg = this.#o.config;
    const expired = await this.#o.db.query(
      `UPDATE owner_notifications SET status = 'expired' WHERE status = 'scheduled' AND expires_at <= $1 RETURNING kind`,
      [new Date(now)],
    );
    for (const r of expired.rows as Array<{ kind: string }>)
      this.#o.observer?.notification?.(r.kind, 'expired');

    const sent = await this.#o.db.tx(async (q) => {
      const { rows } = await q.query<NotificationRow & OwnerCols>(
        `SELECT n.*, o.timezone AS o_timezone, o.quiet_hours AS o_quiet_hours, o.push_channel AS o_push_channel,
                o.push_token AS o_push_token
         FROM owner_notifications n JOIN owners o ON o.id = n.owner_id
         WHERE n.status = 'scheduled' AND n.send_at <= $1 AND NOT o.disabled
         ORDER BY n.owner_id, n.seq LIMIT $2
         FOR UPDATE OF n SKIP LOCKED`,
        [new Date(now), DISPATCH_BATCH],
      );
      const out: NotificationRow[] = [];
      for (const r of rows) {
        const recent = await q.query<{ sent_at: Date }>(
          `SELECT sent_at FROM owner_notifications WHERE owner_id = $1 AND status = 'sent' AND sent_at > $2`,
          [r.owner_id, new Date(now - HOUR)],
        );
        const last = await q.query<{ at: Date | null }>(
          `SELECT max(sent_at) AS at FROM owner_notifications
           WHERE owner_id = $1 AND collapse_key = $2 AND status = 'sent'`,
          [r.owner_id, r.collapse_key],
        );
        const verdict = decide({
          now,
          signal: r.signal ?? 'NOTICE',
          bypass: cfg.bypass,
          quiet: parseQuietHours(r.o_quiet_hours ?? cfg.quietHours),
          timeZone: r.o_timezone ?? cfg.defaultTimezone,
          perHour: cfg.rateLimit.perHour,
          recentSends: recent.rows.map((x) => x.sent_at.getTime()),
          perIncidentMs: cfg.rateLimit.perIncidentMinutes * 60_000,
          lastSameIncident: last.rows[0]?.at?.getTime() ?? null,
        });
        if (!verdict.send) {
          const held = [...new Set([...(r.held ? r.held.split(',') : []), ...verdict.reasons])].join(',');
          await q.query('UPDATE owner_notifications SET send_at = $2, held = $3 WHERE id = $1', [
            r.id,
            new Date(verdict.until),
            held,
          ]);
          if (!r.held) this.#o.observer?.notification?.(r.kind, 'held');
          continue;
        }
        const channels = ['app'];
        let messageId: string | null = null;
        if (cfg.gateway && this.#o.outbox && r.o_push_token && r.body) {
          messageId = await this.#o.outbox.enqueue(q, {
            topic: 'push',
            kind: `owner.${r.kind}`,
            key: r.id,
            payload: gatewayBody(
              r.body,
              { id: r.owner_id!, pushChannel: r.o_push_channel, pushToken: r.o_push_token },
              {
                urgent: verdict.bypassed,
                ttlSeconds: Math.max(60, Math.floor((r.expires_at.getTime() - now) / 1000)),
              },
            ),
            receivers: [GATEWAY_RECEIVER],
          });
          channels.push('gateway');
        }
        await q.query(
          `UPDATE owner_notifications SET status = 'sent', sent_at = $2, channels = $3, outbox_message_id = $4
           WHERE id = $1`,
          [r.id, new Date(now), JSON.stringify(channels), messageId],
        );
        out.push({ ...r, status: 'sent', sent_at: new Date(now), channels });
      }
      return out;
    });
    if (sent.some((r) => r.channels?.includes('gateway'))) this.#o.outbox?.wake();
    for (const r of sent) {
      this.#o.observer?.notification?.(r.kind, 'sent');
      if (r.owner_id && r.body) await this.#publish(r.owner_id, r.body);
    }
    await this.#syncTimeline(sent);
    return sent.map(toNotification);
  }

  async #publish(ownerId: string, message: InAppMessage): Promise<void> {
    if (!this.#inApp) return;
    try {
      await this.#inApp.publish(ownerId, JSON.stringify(message));
    } catch (err) {
      // The app gets it when it next connects (connected() re-sends undelivered notifications).
      this.#o.log?.warn({ err, ownerId, notification: message.id }, 'in-app publish failed');
    }
  }

  /** Puts sends on their tickets' timelines; retries ones a previous pass could not. */
  async #syncTimeline(justSent: NotificationRow[]): Promise<void> {
    const tickets = this.#o.tickets;
    if (!tickets) return;
    const { rows: lagging } = await this.#o.db.query<NotificationRow>(
      `SELECT * FROM owner_notifications
       WHERE status = 'sent' AND ticket_id IS NOT NULL AND timeline_at IS NULL AND sent_at > $1
       ORDER BY seq LIMIT 50`,
      [new Date(this.#now() - 24 * HOUR)],
    );
    const seen = new Set<string>();
    for (const r of [...justSent, ...lagging]) {
      if (!r.ticket_id || seen.has(r.id)) continue;
      seen.add(r.id);
      try {
        await tickets.addLink(r.ticket_id, r.kind === 'guide' ? 'guide_push' : 'owner_survey_request', r.id, {
          actor: 'push',
          data: {
            notificationId: r.id,
            ...(r.guide_id ? { guideId: r.guide_id } : {}),
            locale: r.locale,
            signal: r.signal,
            channels: r.channels ?? [],
            ...(r.held ? { heldFor: r.held.split(','), createdAt: r.created_at.toISOString() } : {}),
          },
        });
        await this.#o.db.query('UPDATE owner_notifications SET timeline_at = $2 WHERE id = $1', [
          r.id,
          new Date(this.#now()),
        ]);
      } catch (err) {
        this.#o.log?.warn(
          { err, notification: r.id },
          'could not put a push on the ticket timeline; retrying',
        );
      }
    }
  }

  /** The app connected: re-send what it has not confirmed, newest last, within the TTL. */
  async connected(ownerId: string): Promise<number> {
    const pending = await this.pending(ownerId);
    for (const n of pending) if (n.message) await this.#publish(ownerId, n.message);
    return pending.length;
  }

  /** Sent and not yet confirmed delivered, unexpired: what the app should have. */
  async pending(ownerId: string): Promise<Notification[]> {
    const { rows } = await this.#o.db.query<NotificationRow>(
      `SELECT * FROM owner_notifications
       WHERE owner_id = $1 AND status = 'sent' AND delivered_at IS NULL AND expires_at > $2
       ORDER BY sent_at, seq`,
      [ownerId, new Date(this.#now())],
    );
    return rows.map(toNotification);
  }

  // ---------------------------------------------------------------- receipts

  /** A receipt from the app (MQTT payload bytes or a parsed HTTP body). Throws for a bad one. */
  async receipt(ownerId: string, input: unknown): Promise<Notification> {
    let raw = input;
    if (Buffer.isBuffer(input)) {
      try {
        raw = JSON.parse(input.toString('utf8'));
      } catch {
        throw new FaultlineError('FL_VALIDATION', 'a receipt is JSON: {"notification", "status"}');
      }
    }
    const parsed = receiptSchema.safeParse(raw);
    if (!parsed.success) {
      throw new FaultlineError(
        'FL_VALIDATION',
        `invalid receipt: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`,
      );
    }
    const r = parsed.data;
    if (r.status === 'survey' && r.score === undefined) {
      throw new FaultlineError('FL_VALIDATION', 'a survey answer needs a score from 1 to 5');
    }
    const at = new Date(this.#now());
    const change = await this.#o.db.tx(async (q) => {
      const { rows } = await q.query<NotificationRow>(
        'SELECT * FROM owner_notifications WHERE id = $1 AND owner_id = $2 FOR UPDATE',
        [r.notification, ownerId],
      );
      const n = rows[0];
      // Another owner's notification is "not found" too: its existence is not theirs to learn.
      if (!n) throw new FaultlineError('FL_NOT_FOUND', `no notification ${r.notification}`);
      if (r.status === 'survey' && n.kind !== 'survey') {
        throw new FaultlineError('FL_VALIDATION', `notification ${n.id} is not a survey`);
      }
      const sets = ['delivered_at = coalesce(delivered_at, $2)'];
      const params: unknown[] = [n.id, at];
      let changed = n.delivered_at === null;
      if (r.status === 'opened' || r.status === 'fixed' || r.status === 'not_fixed') {
        sets.push('opened_at = coalesce(opened_at, $2)');
        changed ||= r.status === 'opened' && n.opened_at === null;
      }
      if (r.status === 'fixed' || r.status === 'not_fixed') {
        if (n.outcome !== r.status) {
          params.push(r.status);
          sets.push(`outcome = $${params.length}, outcome_at = $2`);
          changed = true;
        }
      }
      if (r.status === 'survey') {
        if (n.answered_at !== null) return { n, changed: false };
        params.push(r.score, r.text ?? null);
        sets.push(`survey_score = $${params.length - 1}, survey_text = $${params.length}, answered_at = $2`);
        changed = true;
      }
      const updated = await q.query<NotificationRow>(
        `UPDATE owner_notifications SET ${sets.join(', ')} WHERE id = $1 RETURNING *`,
        params,
      );
      return { n: updated.rows[0]!, changed };
    });
    this.#o.observer?.receipt?.(r.status);
    if (change.changed && change.n.ticket_id) await this.#onTicket(ownerId, change.n, r);
    return toNotification(change.n);
  }

  /** The receipt on the ticket timeline, and what "fixed" / "not fixed" do to the ticket. */
  async #onTicket(ownerId: string, n: NotificationRow, r: Receipt): Promise<void> {
    const tickets = this.#o.tickets;
    if (!tickets || !n.ticket_id) return;
    const actor = `owner:${ownerId}`;
    const data: Record<string, unknown> = { notificationId: n.id, receipt: r.status };
    if (r.status === 'survey') {
      data.score = r.score;
      if (r.text) data.text = r.text;
      await tickets.addLink(n.ticket_id, 'owner_survey', `${n.id}:survey`, { actor, data });
      return;
    }
    if (r.status === 'not_fixed') {
      const raised = await tickets.raisePriority(
        n.ticket_id,
        actor,
        'owner reports the guide did not fix it',
        `owner.not_fixed:${n.id}`,
      );
      data.effect = raised ? `priority ${raised.from} → ${raised.to}` : 'priority unchanged';
      await tickets.addLink(n.ticket_id, 'owner_receipt', `${n.id}:${r.status}`, { actor, data });
      return;
    }
    if (r.status !== 'fixed') {
      await tickets.addLink(n.ticket_id, 'owner_receipt', `${n.id}:${r.status}`, { actor, data });
      return;
    }
    const ticket = await tickets.get(n.ticket_id);
    const guide = n.guide_id ? this.#o.guides.get(n.guide_id, n.locale) : null;
    const allowed =
      (n.rule_id ? this.#o.config.fixedRecovers[n.rule_id] : undefined) ?? guide?.ownerFixable ?? false;
    let recover = false;
    if (!ticket || ['resolved', 'closed', 'recovered'].includes(ticket.status))
      data.effect = 'none: ticket not open';
    else if (!allowed) data.effect = 'recorded: this rule does not let owners recover tickets';
    else if (n.rule_id && n.device_id && this.#o.stillFiring?.(n.rule_id, n.device_id, ticket.code)) {
      data.effect = 'recorded: the device still reports the fault';
    } else {
      data.effect = 'ticket recovered';
      recover = true;
    }
    await tickets.addLink(n.ticket_id, 'owner_receipt', `${n.id}:${r.status}`, { actor, data });
    if (recover && ticket) await tickets.markRecovered(ticket, 'owner_fixed');
  }

  // ---------------------------------------------------------------- reads

  async get(id: string): Promise<Notification | null> {
    const { rows } = await this.#o.db.query<NotificationRow>(
      'SELECT * FROM owner_notifications WHERE id = $1',
      [id],
    );
    return rows[0] ? toNotification(rows[0]) : null;
  }

  async list(query: {
    ownerId?: string | undefined;
    ticketId?: string | undefined;
    limit?: number | undefined;
  }): Promise<Notification[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.ownerId) {
      params.push(query.ownerId);
      where.push(`owner_id = $${params.length}`);
    }
    if (query.ticketId) {
      params.push(query.ticketId);
      where.push(`ticket_id = $${params.length}`);
    }
    params.push(Math.min(Math.max(query.limit ?? 100, 1), 1000));
    const { rows } = await this.#o.db.query<NotificationRow>(
      `SELECT * FROM owner_notifications ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY seq DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(toNotification);
  }

  /** Delivery, receipts and satisfaction over notifications created since `since`. */
  async stats(since: Date): Promise<FeedbackStats> {
    const { rows } = await this.#o.db.query<Record<string, number | string | null>>(
      `SELECT
         count(*) FILTER (WHERE kind = 'guide')::int AS guides,
         count(*) FILTER (WHERE kind = 'guide' AND status = 'sent')::int AS guides_sent,
         count(*) FILTER (WHERE held IS NOT NULL)::int AS held,
         count(*) FILTER (WHERE status = 'superseded')::int AS superseded,
         count(*) FILTER (WHERE status = 'expired')::int AS expired,
         count(*) FILTER (WHERE delivered_at IS NOT NULL)::int AS delivered,
         count(*) FILTER (WHERE opened_at IS NOT NULL)::int AS opened,
         count(*) FILTER (WHERE outcome = 'fixed')::int AS fixed,
         count(*) FILTER (WHERE outcome = 'not_fixed')::int AS not_fixed,
         count(*) FILTER (WHERE kind = 'survey' AND status = 'sent')::int AS surveys_sent,
         count(*) FILTER (WHERE answered_at IS NOT NULL)::int AS answered,
         avg(survey_score)::float8 AS average,
         count(*) FILTER (WHERE survey_score = 1)::int AS s1,
         count(*) FILTER (WHERE survey_score = 2)::int AS s2,
         count(*) FILTER (WHERE survey_score = 3)::int AS s3,
         count(*) FILTER (WHERE survey_score = 4)::int AS s4,
         count(*) FILTER (WHERE survey_score = 5)::int AS s5
       FROM owner_notifications WHERE created_at >= $1`,
      [since],
    );
    const c = rows[0]!;
    const n = (k: string) => Number(c[k] ?? 0);
    return {
      since: since.toISOString(),
      guides: {
        created: n('guides'),
        sent: n('guides_sent'),
        held: n('held'),
        superseded: n('superseded'),
        expired: n('expired'),
      },
      receipts: {
        delivered: n('delivered'),
        opened: n('opened'),
        fixed: n('fixed'),
        notFixed: n('not_fixed'),
      },
      surveys: {
        sent: n('surveys_sent'),
        answered: n('answered'),
        averageScore: c.average === null ? null : Math.round(Number(c.average) * 100) / 100,
        scores: { 1: n('s1'), 2: n('s2'), 3: n('s3'), 4: n('s4'), 5: n('s5') },
      },
    };
  }

  // ---------------------------------------------------------------- lifecycle

  /** Starts the loop: a pass every pollMs and soon after wake(). */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#unsubscribe = this.#o.tickets?.subscribe(() => this.wake()) ?? null;
    this.#schedule(0);
  }

  wake(): void {
    if (!this.#started) return;
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    this.#schedule(0);
  }

  /** One pass now (tests with a controlled clock call this directly). */
  async runOnce(): Promise<void> {
    await this.#pass();
  }

  /** One pass; true when timeline entries wait for an older transaction to finish. */
  async #pass(): Promise<boolean> {
    const { handled, held } = await this.pumpTimeline();
    await this.dispatchDue();
    // Progress: the next held entry is as new as any, so ask again soon rather than back off.
    if (held && handled > 0) this.#heldDelay = 0;
    return held;
  }

  async stop(): Promise<void> {
    this.#started = false;
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  #schedule(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#pass()
        .catch((err: unknown) => {
          this.#o.log?.warn({ err }, 'push pass failed; retrying at the next poll');
          return false;
        })
        .then((held) => {
          this.#running = null;
          // Entries held for an older transaction (any on the server, usually a few ms long) are
          // asked for again soon, backing off to the poll interval while that transaction lasts.
          this.#heldDelay = held ? Math.min(this.#heldDelay * 2 || HELD_FIRST_MS, this.#o.config.pollMs) : 0;
          if (this.#started) this.#schedule(this.#again ? 0 : this.#heldDelay || this.#o.config.pollMs);
          this.#again = false;
        });
    }, ms);
    this.#timer.unref();
  }
}

interface OwnerCols {
  o_timezone: string | null;
  o_quiet_hours: string | null;
  o_push_channel: string | null;
  o_push_token: string | null;
}

export type FeedbackStats = {
  since: string;
  guides: { created: number; sent: number; held: number; superseded: number; expired: number };
  receipts: { delivered: number; opened: number; fixed: number; notFixed: number };
  surveys: {
    sent: number;
    answered: number;
    averageScore: number | null;
    scores: Record<1 | 2 | 3 | 4 | 5, number>;
  };
};

export type { Queryable };
