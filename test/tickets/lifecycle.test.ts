import { expect, it } from 'vitest';
import { isFaultlineError } from '../../src/errors/catalogue.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import {
  ADMIN,
  count,
  ENGINEER,
  fired,
  HOUR,
  MINUTE,
  resolved,
  rig,
  STAFF,
  T0,
  updated,
} from './fixtures.js';

async function refusal(p: Promise<unknown>): Promise<{ code: string; details: unknown }> {
  try {
    await p;
  } catch (err) {
    if (isFaultlineError(err)) return { code: err.code, details: err.details };
    throw err;
  }
  throw new Error('expected a refusal');
}

describeBackends('ticket lifecycle', (backend) => {
  const t = freshDbPerTest(backend);

  it('opens a ticket carrying the device, owner, evidence, team and SLA targets', async () => {
    const { service } = rig(t().db, {
      routing: [
        { match: { category: 'feature_request' }, team: 'product' },
        { match: { model: 'AC-*', region: 'cn-east' }, team: 'ac-east' },
      ],
    });
    const e = fired();
    const out = await service.handleFired(e);
    expect(out.action).toBe('opened');
    const d = (await service.detail(out.ticketId!))!;
    expect(d).toMatchObject({
      fingerprint: 'ac-compressor-overheat:ac-0001',
      status: 'open',
      title: 'Compressor overheating on ac-0001',
      description: e.description,
      ruleId: 'ac-compressor-overheat',
      ruleVersion: 'v1-3f2a',
      device: { id: 'ac-0001', model: 'AC-9000', firmware: '2.4.1', batch: 'B2025-11', region: 'cn-east' },
      owner: { id: 'owner-ac-0001', locale: 'zh-CN' },
      severity: 'major',
      category: 'hardware_fault',
      team: 'ac-east',
      // 0.3*1 + 0.4*4 + 0.3*4 = 3.1: P2
      priority: 'P2',
      priorityScore: 3.1,
      occurrences: 1,
      openedAt: new Date(T0).toISOString(),
      sla: {
        responseDueAt: new Date(T0 + 4 * HOUR).toISOString(),
        resolutionDueAt: new Date(T0 + 24 * HOUR).toISOString(),
        responseBreachedAt: null,
      },
    });
    expect(d.occurrenceList).toHaveLength(1);
    expect(d.occurrenceList[0]!.evidence.samples.map((s) => s.metrics.compressor_temp)).toEqual([
      93.1, 94.8, 95.4,
    ]);
    expect(d.timeline.map((x) => [x.kind, x.actor])).toEqual([['ticket.opened', 'rule-engine']]);
    expect(d.timeline[0]!.data).toMatchObject({
      priority: 'P2',
      scores: { customers: 1, severity: 4, urgency: 4 },
    });
  });

  it('adds an occurrence to the open ticket for the same fingerprint, and ignores a repeated event', async () => {
    const { service } = rig(t().db);
    const first = fired();
    const a = await service.handleFired(first);
    const b = await service.handleFired(fired({ firingSince: T0 }));
    expect(b).toEqual({ action: 'appended', ticketId: a.ticketId });
    // The same incident delivered again (a replay after restart) is not a second occurrence.
    expect(await service.handleFired(first)).toEqual({ action: 'duplicate', ticketId: a.ticketId });
    const other = await service.handleFired(fired({ deviceId: 'ac-0002' }));
    expect(other.ticketId).not.toBe(a.ticketId);
    expect((await service.get(a.ticketId!))!.occurrences).toBe(2);
    expect(await count(t().db, 'SELECT count(*) FROM tickets')).toBe(2);
  });

  it('does nothing for a rule whose actions say no ticket', async () => {
    const { service } = rig(t().db);
    const e = fired();
    const out = await service.handleFired({ ...e, actions: { ...e.actions, ticket: false } });
    expect(out).toEqual({ action: 'no_ticket', ticketId: null });
    expect(await count(t().db, 'SELECT count(*) FROM tickets')).toBe(0);
  });

  it('escalates severity and priority on rule.updated without counting an occurrence', async () => {
    const { service } = rig(t().db);
    const e = fired({ severity: 'minor' });
    const { ticketId } = await service.handleFired(e);
    expect((await service.get(ticketId!))!.priority).toBe('P3');
    await service.handleUpdated(
      updated({
        incidentId: e.incidentId,
        severity: 'critical',
        reason: 'escalated',
        previousSeverity: 'minor',
      }),
    );
    const after = (await service.detail(ticketId!))!;
    expect(after).toMatchObject({ severity: 'critical', priority: 'P2', occurrences: 1 });
    // The tighter P2 target applies from the ticket's opening.
    expect(after.sla.responseDueAt).toBe(new Date(T0 + 4 * HOUR).toISOString());
    expect(after.timeline.map((x) => x.kind)).toEqual([
      'ticket.opened',
      'severity.changed',
      'priority.changed',
    ]);
    await service.handleUpdated(
      updated({ incidentId: e.incidentId, reason: 'occurrence', severity: 'critical' }),
    );
    expect((await service.get(ticketId!))!.occurrences).toBe(2);
  });

  it('marks a ticket recovered on rule.resolved and back to work when the fault recurs', async () => {
    const { service, clock } = rig(t().db);
    const e = fired();
    const { ticketId } = await service.handleFired(e);
    await service.acknowledge(ticketId!, STAFF);
    clock.advance(30 * MINUTE);
    expect(await service.handleResolved(resolved(e))).toEqual({ action: 'recovered', ticketId });
    let tk = (await service.get(ticketId!))!;
    expect(tk).toMatchObject({ status: 'recovered', recoveredAt: new Date(T0 + 30 * MINUTE).toISOString() });
    expect(tk.resolvedAt).toBeNull();

    clock.advance(MINUTE);
    const again = fired({ firingSince: T0 + 31 * MINUTE });
    expect(await service.handleFired(again)).toEqual({ action: 'appended', ticketId });
    tk = (await service.get(ticketId!))!;
    expect(tk).toMatchObject({
      status: 'acknowledged',
      recoveredAt: null,
      occurrences: 2,
      incidentId: again.incidentId,
    });
    // A late resolve of the first episode does not recover the ticket the second one reopened.
    expect((await service.handleResolved(resolved(e))).action).toBe('ignored');
    expect((await service.get(ticketId!))!.status).toBe('acknowledged');
  });

  it('closes on recovery when the rule says autoClose, and reopens the ticket on a recurrence within the window', async () => {
    const { service, clock } = rig(t().db, { reopenWindowMinutes: 60 });
    const e = fired({ actions: { ticket: true, guide: null, autoClose: true } });
    const { ticketId } = await service.handleFired(e);
    clock.advance(20 * MINUTE);
    expect((await service.handleResolved(resolved(e))).action).toBe('closed');
    const closed = (await service.detail(ticketId!))!;
    expect(closed).toMatchObject({ status: 'closed', resolvedAt: new Date(T0 + 20 * MINUTE).toISOString() });
    expect(closed.sla.resolutionMs).toBe(20 * MINUTE);
    expect(closed.timeline.filter((x) => x.kind === 'status.changed').map((x) => x.data.to)).toEqual([
      'recovered',
      'closed',
    ]);

    clock.advance(60 * MINUTE); // exactly at the end of the window: still a reopen
    const out = await service.handleFired(fired({ firingSince: clock.now() }));
    expect(out).toEqual({ action: 'reopened', ticketId });
    const reopened = (await service.get(ticketId!))!;
    expect(reopened).toMatchObject({
      status: 'open',
      cycle: 1,
      occurrences: 2,
      resolvedAt: null,
      closedAt: null,
    });
    // Fresh SLA clocks from the reopening.
    expect(reopened.sla.responseDueAt).toBe(new Date(clock.now() + 4 * HOUR).toISOString());
    expect(await count(t().db, 'SELECT count(*) FROM tickets')).toBe(1);
  });

  it('opens a new ticket linked to the old one when the recurrence comes after the window', async () => {
    const { service, clock } = rig(t().db, { reopenWindowMinutes: 60 });
    const { ticketId: first } = await service.handleFired(fired());
    await service.setStatus(first!, 'resolved', STAFF);
    clock.advance(60 * MINUTE + 1);
    const out = await service.handleFired(fired({ firingSince: clock.now() }));
    expect(out.action).toBe('opened');
    expect(out.ticketId).not.toBe(first);
    const d = (await service.detail(out.ticketId!))!;
    expect(d.previousTicketId).toBe(first);
    expect(d.links).toEqual([expect.objectContaining({ kind: 'previous_ticket', ref: first })]);
    expect((await service.get(first!))!.status).toBe('resolved');
  });

  it('treats an update with no open ticket as a recurrence', async () => {
    const { service, clock } = rig(t().db, { reopenWindowMinutes: 60 });
    const e = fired();
    const { ticketId } = await service.handleFired(e);
    await service.setStatus(ticketId!, 'resolved', STAFF);
    clock.advance(MINUTE);
    const out = await service.handleUpdated(updated({ incidentId: e.incidentId, reason: 'retriggered' }));
    expect(out).toEqual({ action: 'reopened', ticketId });
  });

  it('makes a safety fault P1 at once and pages on-call once per cycle', async () => {
    const { service } = rig(t().db, {
      receivers: [
        {
          name: 'pager',
          url: 'http://127.0.0.1:9/x',
          secret: 'pager-secret-0123456789',
          topics: ['on_call'],
        },
      ],
    });
    const e = fired({
      severity: 'minor',
      category: 'performance',
      description: '室内机冒烟, compressor hot',
    });
    const { ticketId } = await service.handleFired(e);
    const d = (await service.detail(ticketId!))!;
    expect(d).toMatchObject({ priority: 'P1', safety: true });
    expect(d.timeline[0]!.data).toMatchObject({ safetyKeyword: '冒烟' });
    expect(d.timeline.map((x) => x.kind)).toEqual(['ticket.opened', 'oncall.paged']);
    await service.handleFired(fired({ firingSince: T0 + MINUTE, description: '冒烟' }));
    const pages = (await service.detail(ticketId!))!.timeline.filter((x) => x.kind === 'oncall.paged');
    expect(pages).toHaveLength(1);
    expect(
      await count(
        t().db,
        `SELECT count(*) FROM outbox_deliveries d JOIN outbox_messages m ON m.id = d.message_id
         WHERE m.topic = 'on_call' AND d.receiver = 'pager'`,
      ),
    ).toBe(1);
  });

  it('records a stale event without paging', async () => {
    const { service } = rig(t().db);
    const { ticketId } = await service.handleFired(fired({ safety: true, stale: true }));
    const d = (await service.detail(ticketId!))!;
    expect(d).toMatchObject({ priority: 'P1', stale: true, occurrences: 1 });
    expect(d.timeline.map((x) => x.kind)).toEqual(['ticket.opened']);
    // A fresh occurrence of the same problem pages, and the ticket is no longer all-stale.
    await service.handleFired(fired({ safety: true, firingSince: T0 + MINUTE }));
    const after = (await service.detail(ticketId!))!;
    expect(after.stale).toBe(false);
    expect(after.timeline.filter((x) => x.kind === 'oncall.paged')).toHaveLength(1);
  });

  it('follows the transition table and refuses anything else with FL_INVALID_TRANSITION', async () => {
    const { service } = rig(t().db);
    const { ticketId } = await service.handleFired(fired());
    const id = ticketId!;
    expect((await service.acknowledge(id, STAFF)).status).toBe('acknowledged');
    expect(await refusal(service.acknowledge(id, STAFF))).toMatchObject({ code: 'FL_INVALID_TRANSITION' });
    expect(await refusal(service.setStatus(id, 'recovered', ADMIN))).toMatchObject({
      code: 'FL_INVALID_TRANSITION',
      details: { from: 'acknowledged', to: 'recovered' },
    });
    expect(await refusal(service.setStatus(id, 'open', STAFF))).toMatchObject({
      code: 'FL_INVALID_TRANSITION',
    });
    // Closing an unresolved ticket is an admin's call; engineers do not change status at all.
    expect(await refusal(service.setStatus(id, 'closed', STAFF))).toMatchObject({ code: 'FL_FORBIDDEN' });
    expect(await refusal(service.setStatus(id, 'in_progress', ENGINEER))).toMatchObject({
      code: 'FL_FORBIDDEN',
    });
    await service.setStatus(id, 'in_progress', STAFF);
    await service.setStatus(id, 'resolved', STAFF, { reason: 'replaced the fan capacitor' });
    expect((await service.setStatus(id, 'closed', STAFF)).status).toBe('closed');
    const reopened = await service.reopen(id, STAFF, 'owner says it is back');
    expect(reopened).toMatchObject({ status: 'open', cycle: 1 });
    const d = (await service.detail(id))!;
    expect(d.timeline.map((x) => [x.kind, x.actor, x.data.to ?? x.data.reason ?? null])).toEqual([
      ['ticket.opened', 'rule-engine', null],
      ['status.changed', 'service-desk', 'acknowledged'],
      ['status.changed', 'service-desk', 'in_progress'],
      ['status.changed', 'service-desk', 'resolved'],
      ['status.changed', 'service-desk', 'closed'],
      ['ticket.reopened', 'service-desk', 'owner says it is back'],
    ]);
    expect(await refusal(service.setStatus('999999', 'resolved', STAFF))).toMatchObject({
      code: 'FL_NOT_FOUND',
    });
  });

  it('refuses to reopen a ticket when a newer one for the same problem is open', async () => {
    const { service, clock } = rig(t().db, { reopenWindowMinutes: 1 });
    const { ticketId: old } = await service.handleFired(fired());
    await service.setStatus(old!, 'resolved', STAFF);
    clock.advance(2 * MINUTE);
    await service.handleFired(fired({ firingSince: clock.now() }));
    expect(await refusal(service.reopen(old!, STAFF))).toMatchObject({ code: 'FL_CONFLICT' });
    expect((await service.get(old!))!.status).toBe('resolved');
  });

  it('keeps comments, the assignee and links on the timeline; a guide push shows as guide.sent once', async () => {
    const { service } = rig(t().db);
    const { ticketId } = await service.handleFired(fired());
    const id = ticketId!;
    await service.assign(id, 'li.wei', STAFF);
    await service.assign(id, 'li.wei', STAFF); // no change, no entry
    await service.comment(id, 'Owner reports a burning smell? No: dust on the filter.', ENGINEER);
    expect(
      (
        await service.addLink(id, 'guide_push', 'push-77', {
          actor: 'guides',
          data: { guide: 'ac-overheat' },
        })
      ).added,
    ).toBe(true);
    expect((await service.addLink(id, 'guide_push', 'push-77')).added).toBe(false);
    const d = (await service.detail(id))!;
    expect(d.assignee).toBe('li.wei');
    expect(d.comments).toEqual([
      expect.objectContaining({
        actor: 'field-engineers',
        text: expect.stringContaining('dust on the filter'),
      }),
    ]);
    expect(d.timeline.map((x) => x.kind)).toEqual([
      'ticket.opened',
      'assignee.changed',
      'comment.added',
      'guide.sent',
    ]);
    expect(d.links).toEqual([expect.objectContaining({ kind: 'guide_push', ref: 'push-77' })]);
  });

  it('lists with filters and a cursor, newest first', async () => {
    const { service } = rig(t().db);
    for (let i = 0; i < 7; i++) {
      await service.handleFired(
        fired({
          deviceId: `ac-${i}`,
          model: i % 2 ? 'AC-9000' : 'AC-12',
          region: i < 3 ? 'cn-east' : 'cn-north',
        }),
      );
    }
    const p1 = await service.list({ limit: 3 });
    expect(p1.items.map((x) => x.device.id)).toEqual(['ac-6', 'ac-5', 'ac-4']);
    const p2 = await service.list({ limit: 3, cursor: p1.nextCursor! });
    const p3 = await service.list({ limit: 3, cursor: p2.nextCursor! });
    expect([...p2.items, ...p3.items].map((x) => x.device.id)).toEqual(['ac-3', 'ac-2', 'ac-1', 'ac-0']);
    expect(p3.nextCursor).toBeNull();
    expect((await service.list({ model: 'AC-12', region: 'cn-east' })).items.map((x) => x.device.id)).toEqual(
      ['ac-2', 'ac-0'],
    );
    expect((await service.list({ breached: true })).items).toEqual([]);
    expect((await service.list({ status: ['open'], priority: ['P2'] })).items).toHaveLength(7);
  });
});
