/**
 * An owner's data out (export) and gone (erase).
 *
 * Erase removes the credential, the push token and every text sent to or
 * written by the owner: notification bodies, survey comments (also where they
 * were copied to the ticket timeline and to pending gateway messages). What
 * stays is pseudonymous fact: tickets keep the owner id they were opened with,
 * and the notification rows keep their timestamps, receipts and scores with no
 * owner id, so delivery and satisfaction figures do not change after the fact.
 */
import type { Db } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';

export type OwnerExport = {
  exportedAt: string;
  owner: {
    id: string;
    locale: string;
    timezone: string | null;
    quietHours: string | null;
    pushChannel: string | null;
    pushToken: string | null;
    disabled: boolean;
    createdAt: string;
    updatedAt: string | null;
  };
  devices: Array<{ id: string; model: string; locale: string | null }>;
  tickets: Array<{ id: string; status: string; title: string; deviceId: string; openedAt: string }>;
  notifications: Array<{
    id: string;
    kind: string;
    ticketId: string | null;
    status: string;
    createdAt: string;
    sentAt: string | null;
    deliveredAt: string | null;
    openedAt: string | null;
    outcome: string | null;
    survey: { score: number; text: string | null } | null;
    message: unknown;
  }>;
};

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

export async function exportOwner(db: Db, ownerId: string, now = Date.now()): Promise<OwnerExport> {
  const owner = await db.query<{
    id: string;
    locale: string;
    timezone: string | null;
    quiet_hours: string | null;
    push_channel: string | null;
    push_token: string | null;
    disabled: boolean;
    created_at: Date;
    updated_at: Date | null;
  }>(
    `SELECT id, locale, timezone, quiet_hours, push_channel, push_token, disabled, created_at, updated_at
     FROM owners WHERE id = $1`,
    [ownerId],
  );
  const o = owner.rows[0];
  if (!o) throw new FaultlineError('FL_NOT_FOUND', `no owner ${ownerId}`, { id: ownerId });
  const devices = await db.query<{ id: string; model: string; owner_locale: string | null }>(
    'SELECT id, model, owner_locale FROM devices WHERE owner_id = $1 ORDER BY id',
    [ownerId],
  );
  const tickets = await db.query<{
    id: string;
    status: string;
    title: string;
    device_id: string;
    opened_at: Date;
  }>('SELECT id, status, title, device_id, opened_at FROM tickets WHERE owner_id = $1 ORDER BY id', [
    ownerId,
  ]);
  const notes = await db.query<{
    id: string;
    kind: string;
    ticket_id: string | null;
    status: string;
    created_at: Date;
    sent_at: Date | null;
    delivered_at: Date | null;
    opened_at: Date | null;
    outcome: string | null;
    survey_score: number | null;
    survey_text: string | null;
    body: unknown;
  }>(
    `SELECT id, kind, ticket_id, status, created_at, sent_at, delivered_at, opened_at, outcome, survey_score,
            survey_text, body
     FROM owner_notifications WHERE owner_id = $1 ORDER BY seq`,
    [ownerId],
  );
  return {
    exportedAt: new Date(now).toISOString(),
    owner: {
      id: o.id,
      locale: o.locale,
      timezone: o.timezone,
      quietHours: o.quiet_hours,
      pushChannel: o.push_channel,
      pushToken: o.push_token,
      disabled: o.disabled,
      createdAt: o.created_at.toISOString(),
      updatedAt: iso(o.updated_at),
    },
    devices: devices.rows.map((d) => ({ id: d.id, model: d.model, locale: d.owner_locale })),
    tickets: tickets.rows.map((t) => ({
      id: t.id,
      status: t.status,
      title: t.title,
      deviceId: t.device_id,
      openedAt: t.opened_at.toISOString(),
    })),
    notifications: notes.rows.map((n) => ({
      id: n.id,
      kind: n.kind,
      ticketId: n.ticket_id,
      status: n.status,
      createdAt: n.created_at.toISOString(),
      sentAt: iso(n.sent_at),
      deliveredAt: iso(n.delivered_at),
      openedAt: iso(n.opened_at),
      outcome: n.outcome,
      survey: n.survey_score === null ? null : { score: n.survey_score, text: n.survey_text },
      message: n.body,
    })),
  };
}

export type EraseResult = {
  ownerId: string;
  notifications: number;
  gatewayMessagesErased: number;
  surveyCommentsErased: number;
};

export async function eraseOwner(db: Db, ownerId: string): Promise<EraseResult> {
  return db.tx(async (q) => {
    const gone = await q.query('DELETE FROM owners WHERE id = $1 RETURNING id', [ownerId]);
    if (gone.rows.length === 0)
      throw new FaultlineError('FL_NOT_FOUND', `no owner ${ownerId}`, { id: ownerId });
    const { rows } = await q.query<{
      id: string;
      outbox_message_id: string | null;
      survey_text: string | null;
    }>('SELECT id, outbox_message_id, survey_text FROM owner_notifications WHERE owner_id = $1', [ownerId]);
    const messages = rows.map((r) => r.outbox_message_id).filter((id): id is string => id !== null);
    if (messages.length > 0) {
      // The gateway body holds the token and the texts; a delivery not yet made is not made.
      await q.query(
        `UPDATE outbox_deliveries SET status = 'dead', next_attempt_at = NULL, last_error = 'owner erased'
         WHERE message_id = ANY($1::bigint[]) AND status = 'pending'`,
        [messages],
      );
      await q.query(`UPDATE outbox_messages SET payload = '{"erased":true}' WHERE id = ANY($1::bigint[])`, [
        messages,
      ]);
    }
    const surveyRefs = rows.filter((r) => r.survey_text !== null).map((r) => `${r.id}:survey`);
    if (surveyRefs.length > 0) {
      // The score stays on the ticket; the owner's own words go.
      await q.query(
        `UPDATE ticket_links SET data = data - 'text' WHERE kind = 'owner_survey' AND ref = ANY($1::text[])`,
        [surveyRefs],
      );
      await q.query(
        `UPDATE ticket_events SET data = data - 'text'
         WHERE kind = 'link.added' AND data->>'kind' = 'owner_survey' AND data->>'ref' = ANY($1::text[])`,
        [surveyRefs],
      );
    }
    await q.query(
      `UPDATE owner_notifications SET owner_id = NULL, body = NULL, survey_text = NULL,
         status = CASE WHEN status = 'scheduled' THEN 'cancelled' ELSE status END
       WHERE owner_id = $1`,
      [ownerId],
    );
    return {
      ownerId,
      notifications: rows.length,
      gatewayMessagesErased: messages.length,
      surveyCommentsErased: surveyRefs.length,
    };
  });
}
