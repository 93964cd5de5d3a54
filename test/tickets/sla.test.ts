import { expect, it } from 'vitest';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { count, fired, HOUR, MINUTE, rig, STAFF, T0 } from './fixtures.js';

const LEADS = {
  name: 'leads',
  url: 'http://127.0.0.1:9/leads',
  secret: 'leads-secret-0123456789',
  topics: ['team_lead' as const],
};

describeBackends('SLA breaches and escalation', (backend) => {
  const t = freshDbPerTest(backend);

  it('breaches the response target at its due time, not before, and escalates once', async () => {
    const { service, clock } = rig(t().db, { receivers: [LEADS] });
    // major hardware fault: P2, respond within 4 h, resolve within 24 h
    const { ticketId } = await service.handleFired(fired());
    const id = ticketId!;

    clock.set(T0 + 4 * HOUR - 1);
    expect(await service.checkSla()).toEqual({ escalations: 0, incidentsClosed: 0 });
    expect((await service.get(id))!.sla.responseBreachedAt).toBeNull();

    clock.set(T0 + 4 * HOUR);
    expect((await service.checkSla()).escalations).toBe(1);
    let tk = (await service.detail(id))!;
    expect(tk.sla.responseBreachedAt).toBe(new Date(T0 + 4 * HOUR).toISOString());
    expect(tk.priority).toBe('P1');
    expect(tk.timeline.map((x) => [x.kind, x.data.target ?? x.data.reason ?? null])).toEqual([
      ['ticket.opened', null],
      ['sla.breached', 'response'],
      ['priority.changed', 'sla.response'],
    ]);

    // The job runs every minute, and maybe in two bridges at once: still one escalation.
    clock.advance(MINUTE);
    await Promise.all([service.checkSla(), service.checkSla(), service.checkSla()]);
    tk = (await service.detail(id))!;
    expect(tk.timeline.filter((x) => x.kind === 'sla.breached')).toHaveLength(1);
    expect(tk.priority).toBe('P1');
    expect(
      await count(
        t().db,
        `SELECT count(*) FROM outbox_deliveries d JOIN outbox_messages m ON m.id = d.message_id
         WHERE m.topic = 'team_lead' AND d.receiver = 'leads'`,
      ),
    ).toBe(1);
  });

  it('does not breach the response target once acknowledged, but still the resolution target', async () => {
    const { service, clock } = rig(t().db);
    const { ticketId } = await service.handleFired(fired());
    clock.set(T0 + HOUR);
    await service.acknowledge(ticketId!, STAFF);
    clock.set(T0 + 23 * HOUR);
    expect((await service.checkSla()).escalations).toBe(0);
    clock.set(T0 + 24 * HOUR);
    expect((await service.checkSla()).escalations).toBe(1);
    const tk = (await service.get(ticketId!))!;
    expect(tk.sla).toMatchObject({
      responseBreachedAt: null,
      resolutionBreachedAt: new Date(T0 + 24 * HOUR).toISOString(),
      responseMs: HOUR,
    });
    expect(tk.priority).toBe('P1');
  });

  it('pauses the clock while waiting and moves the due times by the wait', async () => {
    const { service, clock } = rig(t().db);
    const { ticketId } = await service.handleFired(fired());
    const id = ticketId!;
    clock.set(T0 + HOUR);
    await service.setStatus(id, 'waiting', STAFF, { waitingOn: 'parts' });
    // Far past every target while waiting: nothing breaches.
    clock.set(T0 + 31 * HOUR);
    expect((await service.checkSla()).escalations).toBe(0);
    const waiting = (await service.detail(id))!;
    expect(waiting).toMatchObject({ status: 'waiting', waitingOn: 'parts' });
    expect(waiting.sla.pausedMs).toBe(30 * HOUR);
    expect(waiting.pauses).toEqual([
      { startedAt: new Date(T0 + HOUR).toISOString(), endedAt: null, reason: 'parts' },
    ]);

    await service.setStatus(id, 'in_progress', STAFF);
    const back = (await service.detail(id))!;
    expect(back.sla.resolutionDueAt).toBe(new Date(T0 + 54 * HOUR).toISOString());
    expect(back.pauses[0]!.endedAt).toBe(new Date(T0 + 31 * HOUR).toISOString());

    clock.set(T0 + 54 * HOUR - 1);
    expect((await service.checkSla()).escalations).toBe(0);
    clock.set(T0 + 54 * HOUR);
    expect((await service.checkSla()).escalations).toBe(1);

    clock.set(T0 + 55 * HOUR);
    const done = await service.setStatus(id, 'resolved', STAFF);
    // 55 h on the wall, 30 h of it waiting.
    expect(done.sla.resolutionMs).toBe(25 * HOUR);
    expect(done.sla.responseMs).toBe(HOUR);
  });

  it('escalates again in a new cycle after a reopen, and P1 stays P1', async () => {
    const { service, clock } = rig(t().db);
    const { ticketId } = await service.handleFired(fired({ safety: true }));
    const id = ticketId!;
    clock.set(T0 + 30 * MINUTE);
    await service.checkSla();
    await service.setStatus(id, 'resolved', STAFF);
    clock.advance(MINUTE);
    await service.reopen(id, STAFF);
    clock.advance(30 * MINUTE);
    await service.checkSla();
    const tk = (await service.detail(id))!;
    expect(tk.cycle).toBe(1);
    expect(tk.priority).toBe('P1');
    expect(tk.timeline.filter((x) => x.kind === 'sla.breached').map((x) => x.data.cycle)).toEqual([0, 1]);
    expect(tk.timeline.filter((x) => x.kind === 'priority.changed')).toHaveLength(0);
  });

  it('reports response and resolution medians, the breach rate and the resolution rate', async () => {
    const { service, clock } = rig(t().db);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++)
      ids.push((await service.handleFired(fired({ deviceId: `ac-${i}` }))).ticketId!);
    clock.set(T0 + HOUR);
    await service.acknowledge(ids[0]!, STAFF);
    clock.set(T0 + 3 * HOUR);
    await service.acknowledge(ids[1]!, STAFF);
    await service.setStatus(ids[1]!, 'resolved', STAFF);
    clock.set(T0 + 5 * HOUR);
    await service.checkSla(); // ids 2 and 3 miss the 4 h response target
    const s = await service.stats(new Date(T0 - HOUR));
    expect(s.open).toMatchObject({
      total: 3,
      byRule: { 'ac-compressor-overheat': 3 },
      byModel: { 'AC-9000': 3 },
      byTeam: { 'service-desk': 3 },
    });
    expect(s.window).toMatchObject({
      opened: 4,
      medianResponseMs: 2 * HOUR,
      medianResolutionMs: 3 * HOUR,
      slaBreachRate: 0.5,
      resolutionRate: 0.25,
    });
  });
});
