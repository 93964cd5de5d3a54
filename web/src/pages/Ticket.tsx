/**
 * One ticket: who and what is affected, the chart that proves it, what has
 * happened, the guide the owner got and what they answered, and the actions the
 * caller's role allows. Live events for this ticket refetch it.
 */
import { useCallback, useState } from 'preact/hooks';
import {
  ApiError,
  api,
  type Device,
  type Notification,
  post,
  type TicketDetail,
  type TimelineEntry,
} from '../api.js';
import {
  ErrorBox,
  Field,
  PriorityBadge,
  SlaClock,
  StatusBadge,
  useLoad,
  useNow,
  useThrottled,
} from '../components/common.js';
import { chartInputs, EvidenceChart } from '../components/EvidenceChart.js';
import { type I18n, useI18n } from '../i18n/index.js';
import { type LiveEvent, useLive } from '../live.js';
import {
  allowedTargets,
  COMMENT_ROLES,
  isFinal,
  type TicketStatus,
  WAITING_ON,
  WORK_ROLES,
} from '../model.js';
import { useSession } from '../session.js';

interface Loaded {
  ticket: TicketDetail | null;
  device: Device | null;
  notifications: Notification[] | null;
}

/** Extras are best effort: a device removed since, or a bridge without the guides feature, still shows the ticket. */
async function loadTicket(id: string): Promise<Loaded> {
  let ticket: TicketDetail;
  try {
    ticket = await api<TicketDetail>(`/api/v1/tickets/${id}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404)
      return { ticket: null, device: null, notifications: null };
    throw err;
  }
  const [device, notifications] = await Promise.all([
    api<Device>(`/api/v1/devices/${encodeURIComponent(ticket.device.id)}`).catch(() => null),
    api<{ items: Notification[] }>(`/api/v1/notifications?ticketId=${id}`).then(
      (r) => r.items,
      () => null,
    ),
  ]);
  return { ticket, device, notifications };
}

export function TicketPage({ id }: { id: string }) {
  const { t } = useI18n();
  const loaded = useLoad<Loaded>(id, () => loadTicket(id));
  const refresh = useThrottled(loaded.reload, 300);
  useLive(
    useCallback(
      (e: LiveEvent) => {
        if (e.ticketId === id) refresh();
      },
      [id, refresh],
    ),
  );

  if (loaded.error && !loaded.data) return <ErrorBox error={loaded.error} onRetry={loaded.reload} />;
  if (!loaded.data) return <p class="loading">{t('common.loading')}</p>;
  const { ticket, device, notifications } = loaded.data;
  if (!ticket)
    return (
      <p>
        {t('ticket.notFound', { id })} <a href="/desk/">{t('common.backToQueue')}</a>
      </p>
    );
  return (
    <TicketView ticket={ticket} device={device} notifications={notifications} onChanged={loaded.reload} />
  );
}

function TicketView(props: {
  ticket: TicketDetail;
  device: Device | null;
  notifications: Notification[] | null;
  onChanged: () => void;
}) {
  const i18n = useI18n();
  const { t, tx, dateTime } = i18n;
  const { ticket, device } = props;
  const inputs = chartInputs(ticket);
  const now = useNow();
  return (
    <article class="ticket" data-testid="ticket" data-ticket={ticket.id} data-status={ticket.status}>
      <p>
        <a href="/desk/">{t('common.backToQueue')}</a>
      </p>
      <div class="ticket-head">
        <PriorityBadge priority={ticket.priority} />
        <h1>{ticket.title}</h1>
        <StatusBadge status={ticket.status} />
        {ticket.safety && <span class="tag tag-safety">{t('ticket.safety')}</span>}
        {ticket.stale && <span class="tag">{t('ticket.stale')}</span>}
      </div>
      <p class="muted">
        {t('ticket.title', { id: ticket.id })} · {ticket.description}
      </p>

      <div class="cards">
        <section class="card">
          <h2>{t('ticket.device')}</h2>
          <dl>
            <Field label={t('ticket.field.id')}>
              <span class="mono">{ticket.device.id}</span>
            </Field>
            <Field label={t('ticket.field.model')}>{ticket.device.model}</Field>
            <Field label={t('ticket.field.firmware')}>{ticket.device.firmware ?? t('common.none')}</Field>
            <Field label={t('ticket.field.batch')}>{ticket.device.batch ?? t('common.none')}</Field>
            <Field label={t('ticket.field.region')}>{ticket.device.region ?? t('common.none')}</Field>
            {device && (
              <>
                <Field label={t('ticket.field.connection')}>
                  {device.disabled
                    ? t('ticket.disabled')
                    : device.online
                      ? t('ticket.online')
                      : t('ticket.offline')}
                </Field>
                <Field label={t('ticket.field.lastSeen')}>
                  {device.lastSeenAt ? dateTime(device.lastSeenAt) : t('common.none')}
                </Field>
              </>
            )}
          </dl>
        </section>
        <section class="card">
          <h2>{t('ticket.owner')}</h2>
          <dl>
            <Field label={t('ticket.field.id')}>
              <span class="mono">{ticket.owner.id ?? t('common.none')}</span>
            </Field>
            <Field label={t('ticket.field.locale')}>{ticket.owner.locale ?? t('common.none')}</Field>
          </dl>
        </section>
        <section class="card">
          <h2>{t('ticket.details')}</h2>
          <dl>
            <Field label={t('ticket.field.rule')}>
              <span class="mono">
                {ticket.ruleId} @{ticket.ruleVersion}
                {ticket.code ? ` (${ticket.code})` : ''}
              </span>
            </Field>
            <Field label={t('ticket.field.team')}>{ticket.team}</Field>
            <Field label={t('ticket.field.severity')}>
              {tx('severity', ticket.severity)} · {tx('category', ticket.category)}
            </Field>
            <Field label={t('ticket.field.occurrences')}>{ticket.occurrences}</Field>
            <Field label={t('ticket.field.opened')}>{dateTime(ticket.openedAt)}</Field>
            <Field label={t('ticket.field.assignee')} testid="assignee">
              {ticket.assignee ?? <span class="muted">{t('ticket.unassigned')}</span>}
            </Field>
            {ticket.waitingOn && (
              <Field label={t('ticket.field.waitingOn')}>{tx('waitingOn', ticket.waitingOn)}</Field>
            )}
            <Field label={t('ticket.field.responseSla')}>
              <SlaLine
                i18n={i18n}
                due={ticket.sla.responseDueAt}
                breached={ticket.sla.responseBreachedAt}
                tookMs={ticket.sla.responseMs}
                running={!ticket.acknowledgedAt && !isFinal(ticket.status)}
                paused={ticket.status === 'waiting'}
                now={now}
              />
            </Field>
            <Field label={t('ticket.field.resolutionSla')}>
              <SlaLine
                i18n={i18n}
                due={ticket.sla.resolutionDueAt}
                breached={ticket.sla.resolutionBreachedAt}
                tookMs={ticket.sla.resolutionMs}
                running={!isFinal(ticket.status)}
                paused={ticket.status === 'waiting'}
                now={now}
              />
            </Field>
          </dl>
        </section>
      </div>

      <section class="card wide">
        <h2>{inputs ? t('chart.title', { metric: inputs.metric }) : t('chart.title', { metric: '' })}</h2>
        {inputs ? (
          <EvidenceChart detail={ticket} inputs={inputs} />
        ) : (
          <p class="muted">{t('chart.noMetric')}</p>
        )}
      </section>

      <div class="columns">
        <section class="card">
          <h2>{t('timeline.title')}</h2>
          <Timeline entries={ticket.timeline} />
        </section>
        <div class="side">
          <Actions ticket={ticket} onChanged={props.onChanged} />
          <Guide ticket={ticket} notifications={props.notifications} />
          <section class="card">
            <h2>{t('comments.title')}</h2>
            {ticket.comments.length === 0 ? (
              <p class="muted">{t('comments.empty')}</p>
            ) : (
              <ul class="comments" data-testid="comments">
                {[...ticket.comments].reverse().map((c) => (
                  <li key={c.id}>
                    <div class="sub">
                      {c.actor} · {dateTime(c.at)}
                    </div>
                    <p>{c.text}</p>
                  </li>
                ))}
              </ul>
            )}
          </section>
        </div>
      </div>
    </article>
  );
}

function SlaLine(props: {
  i18n: I18n;
  due: string;
  breached: string | null;
  tookMs: number | null;
  running: boolean;
  paused: boolean;
  now: number;
}) {
  const { t, duration, dateTime } = props.i18n;
  if (props.tookMs !== null && !props.running) {
    return (
      <span class={props.breached ? 'sla-over' : 'sla-ok'}>
        {props.breached
          ? t('sla.breachedAt', { at: dateTime(props.breached) })
          : t('sla.met', { d: duration(props.tookMs) })}
      </span>
    );
  }
  return (
    <span>
      {props.running && !props.paused ? (
        <SlaClock dueAt={props.due} leftMs={null} paused={false} now={props.now} skewMs={0} />
      ) : (
        t('sla.dueAt', { at: dateTime(props.due) })
      )}
      {props.breached && (
        <span class="tag tag-breached">{t('sla.breachedAt', { at: dateTime(props.breached) })}</span>
      )}
    </span>
  );
}

export function describeEntry(e: TimelineEntry, i18n: I18n): string {
  const { tx, t, duration } = i18n;
  const d = e.data;
  const s = (v: unknown) => (v === null || v === undefined || v === '' ? t('common.none') : String(v));
  switch (e.kind) {
    case 'status.changed':
      return [
        `${tx('status', s(d.from))} → ${tx('status', s(d.to))}`,
        d.waitingOn ? tx('waitingOn', s(d.waitingOn)) : '',
        d.reason ? `(${s(d.reason)})` : '',
      ]
        .filter(Boolean)
        .join(' ');
    case 'priority.changed':
    case 'severity.changed':
      return `${s(d.from)} → ${s(d.to)}${d.reason ? ` (${s(d.reason)})` : ''}`;
    case 'assignee.changed':
      return `${s(d.from)} → ${s(d.to)}`;
    case 'comment.added':
      return s(d.text);
    case 'ticket.opened':
      return [s(d.priority), d.severity ? tx('severity', s(d.severity)) : '', s(d.team)]
        .filter(Boolean)
        .join(' · ');
    case 'ticket.reopened':
      return [d.reason ? s(d.reason) : '', d.priority ? s(d.priority) : ''].filter(Boolean).join(' · ');
    case 'occurrence.added':
      return [`#${s(d.occurrences)}`, d.reason ? s(d.reason) : ''].filter(Boolean).join(' · ');
    case 'rule.resolved':
      return [s(d.reason), typeof d.durationMs === 'number' ? duration(d.durationMs) : '']
        .filter(Boolean)
        .join(' · ');
    case 'guide.sent':
      return [
        s(d.guideId ?? d.ref),
        d.locale ? s(d.locale) : '',
        Array.isArray(d.channels) ? d.channels.join(', ') : '',
      ]
        .filter(Boolean)
        .join(' · ');
    case 'link.added': {
      // The push feature says what a receipt did to the ticket ("priority P2 → P1") in its own words.
      const effect = d.effect ? ` (${s(d.effect)})` : '';
      if (d.kind === 'owner_receipt')
        return t('link.ownerReceipt', { receipt: tx('receipt', s(d.receipt)) }) + effect;
      if (d.kind === 'owner_survey')
        return t('link.ownerSurvey', { score: s(d.score) }) + (d.text ? `: ${s(d.text)}` : '');
      if (d.kind === 'owner_survey_request') return t('link.surveyRequest');
      if (d.kind === 'previous_ticket') return t('link.previous', { ref: s(d.ref) });
      return t('link.other', { kind: s(d.kind), ref: s(d.ref) });
    }
    default: {
      const text = Object.entries(d)
        .filter(([, v]) => typeof v !== 'object' || v === null)
        .map(([k, v]) => `${k}: ${s(v)}`)
        .join(', ');
      return text.length > 200 ? `${text.slice(0, 199)}…` : text;
    }
  }
}

function Timeline({ entries }: { entries: TimelineEntry[] }) {
  const i18n = useI18n();
  if (entries.length === 0) return <p class="muted">{i18n.t('timeline.empty')}</p>;
  return (
    <ol class="timeline" data-testid="timeline">
      {[...entries].reverse().map((e) => (
        <li key={e.id} data-kind={e.kind}>
          <div class="when">{i18n.dateTime(e.at)}</div>
          <div>
            <strong>{i18n.tx('kind', e.kind)}</strong> <span class="muted">· {e.actor}</span>
            <div class="what">{describeEntry(e, i18n)}</div>
          </div>
        </li>
      ))}
    </ol>
  );
}

const GUIDE_LINKS = ['guide_push', 'owner_receipt', 'owner_survey', 'owner_survey_request'];

function Guide(props: { ticket: TicketDetail; notifications: Notification[] | null }) {
  const i18n = useI18n();
  const { t, tx, dateTime } = i18n;
  const links = props.ticket.links.filter((l) => GUIDE_LINKS.includes(l.kind));
  const sent = (props.notifications ?? []).filter((n) => n.sentAt || n.status === 'sent');
  const entries = props.ticket.timeline.filter(
    (e) => e.kind === 'guide.sent' || (e.kind === 'link.added' && GUIDE_LINKS.includes(String(e.data.kind))),
  );
  const when = (at: string | null | undefined) => (at ? dateTime(at) : t('common.none'));
  return (
    <section class="card" data-testid="guide">
      <h2>{t('guide.title')}</h2>
      {sent.length > 0 ? (
        <ul class="guides">
          {sent.map((n) => (
            <li key={n.id}>
              <strong>
                {n.message?.title ??
                  t('guide.notification', { guide: n.guideId ?? n.kind, locale: n.locale ?? '' })}
              </strong>
              <dl>
                <Field label={t('guide.sent')}>{when(n.sentAt)}</Field>
                <Field label={t('guide.delivered')}>{when(n.deliveredAt)}</Field>
                <Field label={t('guide.opened')}>{when(n.openedAt)}</Field>
                {n.channels && n.channels.length > 0 && (
                  <Field label={t('guide.channels')}>{n.channels.join(', ')}</Field>
                )}
                {n.outcome && <Field label={t('guide.outcome')}>{tx('guide.outcome', n.outcome)}</Field>}
                {n.survey && (
                  <Field
                    label={t('guide.survey')}
                  >{`${n.survey.score} / 5${n.survey.text ? ` · ${n.survey.text}` : ''}`}</Field>
                )}
              </dl>
            </li>
          ))}
        </ul>
      ) : links.length === 0 && entries.length === 0 ? (
        <p class="muted">{t('guide.none')}</p>
      ) : null}
      {sent.length === 0 && entries.length > 0 && (
        <>
          <p class="muted">{t('guide.fromTimeline')}</p>
          <ul class="guides">
            {entries.map((e) => (
              <li key={e.id}>
                {dateTime(e.at)} · {tx('kind', e.kind)} · {describeEntry(e, i18n)}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

function Actions(props: { ticket: TicketDetail; onChanged: () => void }) {
  const { t, tx } = useI18n();
  const me = useSession();
  const { ticket } = props;
  const canWork = WORK_ROLES.includes(me.role);
  const canComment = COMMENT_ROLES.includes(me.role);
  const targets = canWork ? allowedTargets(ticket.status, me.role) : [];
  const [to, setTo] = useState<TicketStatus | ''>('');
  const [waitingOn, setWaitingOn] = useState<string>('owner');
  const [reason, setReason] = useState('');
  const [assignee, setAssignee] = useState(ticket.assignee ?? '');
  const [comment, setComment] = useState('');
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);

  const run = async (fn: () => Promise<unknown>, after?: () => void) => {
    setBusy(true);
    setOutcome(null);
    try {
      await fn();
      after?.();
      setOutcome({ ok: true, text: t('actions.done') });
      props.onChanged();
    } catch (err) {
      setOutcome({ ok: false, text: t('actions.failed', { message: (err as Error).message }) });
    } finally {
      setBusy(false);
    }
  };
  const base = `/api/v1/tickets/${ticket.id}`;
  const statusChoice = to && targets.includes(to) ? to : '';

  return (
    <section class="card actions" data-testid="actions">
      <h2>{t('actions.title')}</h2>
      {!canWork && <p class="muted">{t('actions.readOnly', { role: tx('role', me.role) })}</p>}
      {canWork && targets.includes('acknowledged') && (
        <button
          type="button"
          class="primary"
          disabled={busy}
          data-testid="action-acknowledge"
          onClick={() => run(() => post(`${base}/acknowledge`))}
        >
          {t('actions.acknowledge')}
        </button>
      )}
      {canWork &&
        (targets.length === 0 ? (
          <p class="muted">{t('actions.noStatusChange')}</p>
        ) : (
          <form
            class="stack"
            onSubmit={(e) => {
              e.preventDefault();
              if (!statusChoice) return;
              void run(
                () =>
                  post(`${base}/status`, {
                    status: statusChoice,
                    ...(reason.trim() ? { reason: reason.trim() } : {}),
                    ...(statusChoice === 'waiting' ? { waitingOn } : {}),
                  }),
                () => {
                  setTo('');
                  setReason('');
                },
              );
            }}
          >
            <label>
              {t('actions.status')}
              <select
                value={statusChoice}
                onChange={(e) => setTo((e.target as HTMLSelectElement).value as TicketStatus)}
                data-testid="action-status"
              >
                <option value="">{t('actions.statusTo')}</option>
                {targets.map((s) => (
                  <option key={s} value={s}>
                    {tx('status', s)}
                  </option>
                ))}
              </select>
            </label>
            {statusChoice === 'waiting' && (
              <label>
                {t('actions.waitingOn')}
                <select
                  value={waitingOn}
                  onChange={(e) => setWaitingOn((e.target as HTMLSelectElement).value)}
                >
                  {WAITING_ON.map((w) => (
                    <option key={w} value={w}>
                      {tx('waitingOn', w)}
                    </option>
                  ))}
                </select>
              </label>
            )}
            <label>
              {t('actions.reason')}
              <input
                value={reason}
                maxLength={2000}
                onInput={(e) => setReason((e.target as HTMLInputElement).value)}
              />
            </label>
            <button type="submit" disabled={busy || !statusChoice} data-testid="action-status-apply">
              {t('actions.apply')}
            </button>
          </form>
        ))}
      {canWork && ticket.status !== 'closed' && (
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            const name = assignee.trim();
            if (name) void run(() => post(`${base}/assign`, { assignee: name }));
          }}
        >
          <label>
            {t('actions.assignee')}
            <input
              value={assignee}
              maxLength={128}
              onInput={(e) => setAssignee((e.target as HTMLInputElement).value)}
              data-testid="action-assignee"
            />
          </label>
          <div class="row">
            <button type="submit" disabled={busy || !assignee.trim()} data-testid="action-assign">
              {t('actions.assign')}
            </button>
            <button
              type="button"
              class="ghost"
              disabled={busy || ticket.assignee === me.name}
              onClick={() =>
                run(
                  () => post(`${base}/assign`, { assignee: me.name }),
                  () => setAssignee(me.name),
                )
              }
            >
              {t('actions.assignMe')}
            </button>
            {ticket.assignee && (
              <button
                type="button"
                class="ghost"
                disabled={busy}
                onClick={() =>
                  run(
                    () => post(`${base}/assign`, { assignee: null }),
                    () => setAssignee(''),
                  )
                }
              >
                {t('actions.unassign')}
              </button>
            )}
          </div>
        </form>
      )}
      {canComment && (
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            const text = comment.trim();
            if (text)
              void run(
                () => post(`${base}/comments`, { text }),
                () => setComment(''),
              );
          }}
        >
          <label>
            {t('actions.comment')}
            <textarea
              rows={3}
              maxLength={10_000}
              placeholder={t('actions.commentPlaceholder')}
              value={comment}
              onInput={(e) => setComment((e.target as HTMLTextAreaElement).value)}
              data-testid="action-comment"
            />
          </label>
          <button type="submit" disabled={busy || !comment.trim()} data-testid="action-comment-add">
            {t('actions.addComment')}
          </button>
        </form>
      )}
      <p
        class={outcome ? (outcome.ok ? 'ok' : 'error') : 'hidden'}
        role="status"
        data-testid="action-outcome"
      >
        {busy ? t('actions.busy') : (outcome?.text ?? '')}
      </p>
    </section>
  );
}
