/**
 * The push service on both database backends, over a real ticket service and
 * outbox: what is sent, when (quiet hours, rate and incident limits, DANGER),
 * through which channel (in-app; a signed gateway webhook to a loopback
 * receiver, with retries), what receipts do to tickets, surveys, and erasure.
 * Time is the rig's clock; nothing here waits on the wall clock.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eraseOwner, exportOwner } from '../../src/owners/privacy.js';
import { GATEWAY_RECEIVER } from '../../src/push/config.js';
import { gatewayBody, MAX_GATEWAY_BYTES } from '../../src/push/service.js';
import { verify } from '../../src/webhooks/signature.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { count, HOUR, MINUTE, STAFF } from '../tickets/fixtures.js';
import { type Receiver, startReceiver } from '../webhooks/receiver.js';
import { GATEWAY_SECRET, ownerSecret, pushRig, ruleEvent } from './rig.js';

let rx: Receiver;
beforeAll(async () => {
  rx = await startReceiver();
});
afterAll(async () => {
  await rx?.close();
});

describeBackends('owner push', (backend) => {
  const t = freshDbPerTest(backend);
  /** Receiver paths per backend: both runs share one receiver. */
  const at = (path: string) => `${path}-${backend.name}`;

  async function withOwner(id: string, extra: Record<string, unknown> = {}) {
    const rig = await pushRig(t().db, extra as Parameters<typeof pushRig>[1]);
    await rig.owners.add({ id, secret: ownerSecret(id), locale: 'zh-CN' });
    return rig;
  }

  it("sends the guide of a new ticket once, in the owner's locale, and puts the send on the timeline", async () => {
    const rig = await withOwner('o-en');
    await rig.owners.add({ id: 'o-zh', secret: ownerSecret('o-zh'), locale: 'zh-CN' });
    const ticketId = await rig.fire(ruleEvent('rv-brush-overcurrent', 'rv-1', 'o-en', { locale: 'en' }));
    await rig.fire(ruleEvent('rv-brush-overcurrent', 'rv-2', 'o-zh', { locale: 'zh-CN' }));
    await rig.push.runOnce();

    expect(rig.published.map((p) => [p.ownerId, p.message.guide?.locale, p.message.title])).toEqual([
      ['o-en', 'en', 'Main brush is tangled'],
      ['o-zh', 'zh-CN', '主刷被缠绕'],
    ]);
    const m = rig.published[0]!.message;
    expect(m).toMatchObject({
      kind: 'guide',
      ticketId,
      deviceId: 'rv-1',
      collapseKey: 'rv-brush-overcurrent:rv-1',
      signal: 'CAUTION',
      guide: {
        id: 'rv-brush-overcurrent',
        steps: expect.arrayContaining([expect.stringContaining('scissors')]),
      },
    });
    expect(m.guide?.url).toMatch(
      /^\/app\/v1\/guides\/rv-brush-overcurrent\?locale=en&owner=o-en&exp=\d+&sig=/,
    );

    const d = (await rig.tickets.detail(ticketId!))!;
    const sent = d.timeline.filter((e) => e.kind === 'guide.sent');
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      actor: 'push',
      data: { ref: m.id, guideId: 'rv-brush-overcurrent', locale: 'en', channels: ['app'] },
    });
    expect(d.links.filter((l) => l.kind === 'guide_push').map((l) => l.ref)).toEqual([m.id]);

    // Another pass, and the same timeline read again from the start (a replay): nothing new.
    await rig.push.runOnce();
    await t().db.query("UPDATE push_cursors SET tx = '0', event_id = 0");
    await rig.push.runOnce();
    expect(rig.published).toHaveLength(2);
    expect(await count(t().db, 'SELECT count(*) FROM owner_notifications')).toBe(2);
  });

  it('pushes nothing when the rule turns guides off or the owner is not registered; a ticketless rule still gets its guide', async () => {
    const rig = await withOwner('o-1');
    await rig.fire(ruleEvent('ac-refrigerant-low', 'ac-1', 'o-1', { guide: null }));
    await rig.fire(ruleEvent('ac-fan-stall', 'ac-2', 'nobody'));
    await rig.push.runOnce();
    expect(rig.published).toEqual([]);

    const e = ruleEvent('ac-fan-stall', 'ac-3', 'o-1');
    e.actions.ticket = false;
    await rig.fire(e);
    await rig.push.runOnce();
    expect(rig.published.map((p) => [p.message.ticketId, p.message.guide?.id])).toEqual([
      [null, 'ac-fan-stall'],
    ]);
  });

  it('signs the gateway webhook, keeps it under 4 KB, retries with backoff and never delivers twice', async () => {
    const path = at('/gateway-retry');
    const rig = await withOwner('o-1', { gatewayUrl: rx.url(path) });
    await rig.owners.update('o-1', { pushChannel: 'hms', pushToken: 'x'.repeat(1_024) });
    rx.answer(path, [503, 503]);
    const ticketId = await rig.fire(ruleEvent('rv-battery-overheat', 'rv-9', 'o-1', { safety: true }));
    await rig.push.runOnce();
    const id = rig.published[0]!.message.id;

    const first = await rig.outbox.dispatchDue();
    expect(first).toMatchObject({ attempted: 1, retrying: 1 });
    // Backoff 1 s (jitter pinned to 0.75 s), then 2 s (1.5 s): nothing is sent before it is due.
    expect((await rig.outbox.dispatchDue()).attempted).toBe(0);
    rig.clock.advance(749);
    expect((await rig.outbox.dispatchDue()).attempted).toBe(0);
    rig.clock.advance(1);
    expect(await rig.outbox.dispatchDue()).toMatchObject({ attempted: 1, retrying: 1 });
    rig.clock.advance(1_499);
    expect((await rig.outbox.dispatchDue()).attempted).toBe(0);
    rig.clock.advance(1);
    expect(await rig.outbox.dispatchDue()).toMatchObject({ attempted: 1, delivered: 1 });
    const deliveredAt = rig.clock.now();
    rig.clock.advance(HOUR);
    expect((await rig.outbox.dispatchDue()).attempted).toBe(0);
    await rig.push.runOnce();
    expect((await rig.outbox.dispatchDue()).attempted).toBe(0);

    const requests = rx.on(path);
    expect(requests).toHaveLength(3);
    expect(new Set(requests.map((r) => r.body)).size).toBe(1);
    expect(requests.map((r) => r.headers['idempotency-key'])).toEqual([id, id, id]);
    const body = requests[2]!.body;
    expect(Buffer.byteLength(body)).toBeLessThan(MAX_GATEWAY_BYTES + 1);
    expect(
      verify(GATEWAY_SECRET, requests[2]!.headers['x-faultline-signature'] as string, body, {
        now: deliveredAt,
      }),
    ).toBe(true);
    expect(
      verify('another-secret-0123456789', requests[2]!.headers['x-faultline-signature'] as string, body, {
        now: deliveredAt,
      }),
    ).toBe(false);
    const payload = JSON.parse(body);
    expect(payload).toMatchObject({
      event: 'owner.guide',
      id,
      to: { ownerId: 'o-1', channel: 'hms' },
      title: '电池过热 - 请立即停止使用',
      severity: 'minor',
      signal: 'DANGER',
      priority: 'high',
      collapseKey: 'rv-battery-overheat:rv-9',
      ticketId,
      link: expect.stringMatching(
        /^\/app\/v1\/guides\/rv-battery-overheat\?locale=zh-CN&owner=o-1&exp=\d+&sig=/,
      ),
    });
    expect(payload.summary).toBe(
      '危险：扫地机器人电池过热。请立即停止运行，将它从充电座上移开，并远离易燃物。',
    );
    const sent = (await rig.tickets.detail(ticketId!))!.timeline.find((e) => e.kind === 'guide.sent');
    expect(sent?.data).toMatchObject({ channels: ['app', 'gateway'] });
  });

  it('cuts the summary, then the title, rather than send a gateway body over 4 KB', () => {
    const m = {
      id: 'n-1',
      kind: 'guide' as const,
      ticketId: '1',
      deviceId: 'd',
      collapseKey: 'r:d',
      severity: 'major',
      signal: 'CAUTION' as const,
      title: '标题'.repeat(100),
      summary: '摘要'.repeat(2_000),
      locale: 'zh-CN',
      createdAt: new Date(0).toISOString(),
      expiresAt: new Date(0).toISOString(),
    };
    const owner = { id: 'o', pushChannel: 'fcm', pushToken: 't'.repeat(1_024) };
    const body = gatewayBody(m, owner, { urgent: false, ttlSeconds: 60 });
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_GATEWAY_BYTES);
    const parsed = JSON.parse(body);
    expect(parsed.title).toBe(m.title);
    expect(parsed.summary).toMatch(/^(摘要)+摘?…$/);
    const huge = gatewayBody(
      { ...m, title: '标'.repeat(2_000) },
      { ...owner, pushToken: 't'.repeat(2_000) },
      {
        urgent: false,
        ttlSeconds: 60,
      },
    );
    expect(Buffer.byteLength(huge)).toBeLessThanOrEqual(MAX_GATEWAY_BYTES);
    expect(JSON.parse(huge)).toMatchObject({ summary: '', title: expect.stringMatching(/…$/) });
  });

  it('holds the fourth guide in an hour until the rate allows, and says so on its timeline', async () => {
    const rig = await withOwner('o-1');
    const ids: string[] = [];
    for (let i = 1; i <= 4; i++) ids.push((await rig.fire(ruleEvent('ac-fan-stall', `ac-${i}`, 'o-1')))!);
    await rig.push.runOnce();
    expect(rig.published.map((p) => p.message.deviceId)).toEqual(['ac-1', 'ac-2', 'ac-3']);
    rig.clock.advance(HOUR - MINUTE);
    await rig.push.runOnce();
    expect(rig.published).toHaveLength(3);
    rig.clock.advance(MINUTE);
    await rig.push.runOnce();
    expect(rig.published.map((p) => p.message.deviceId)).toEqual(['ac-1', 'ac-2', 'ac-3', 'ac-4']);
    const sent = (await rig.tickets.detail(ids[3]!))!.timeline.find((e) => e.kind === 'guide.sent');
    expect(sent?.data).toMatchObject({ heldFor: ['rate_limit'] });
  });

  it("holds a guide through the owner's quiet hours, while DANGER goes out at once", async () => {
    const rig = await withOwner('o-1', { gatewayUrl: rx.url(at('/gateway-quiet')) });
    await rig.owners.update('o-1', {
      timezone: 'Asia/Shanghai',
      quietHours: '22:00-07:00',
      pushToken: 'tok',
    });
    rig.clock.set(Date.UTC(2026, 0, 5, 15, 30)); // 23:30 in Shanghai
    await rig.fire(ruleEvent('rv-brush-overcurrent', 'rv-1', 'o-1'));
    await rig.fire(ruleEvent('rv-battery-overheat', 'rv-2', 'o-1', { safety: true }));
    await rig.push.runOnce();
    expect(rig.published.map((p) => p.message.signal)).toEqual(['DANGER']);
    await rig.outbox.dispatchDue();
    expect(rx.on(at('/gateway-quiet')).map((r) => JSON.parse(r.body).signal)).toEqual(['DANGER']);

    rig.clock.set(Date.UTC(2026, 0, 5, 22, 59)); // 06:59
    await rig.push.runOnce();
    expect(rig.published).toHaveLength(1);
    rig.clock.set(Date.UTC(2026, 0, 5, 23, 0)); // 07:00
    await rig.push.runOnce();
    await rig.outbox.dispatchDue();
    expect(rig.published.map((p) => p.message.signal)).toEqual(['DANGER', 'CAUTION']);
    expect(rx.on(at('/gateway-quiet')).map((r) => JSON.parse(r.body).priority)).toEqual(['high', 'normal']);
  });

  it('sends one guide per incident within the window: a newer update replaces one still held', async () => {
    const rig = await withOwner('o-1', { push: { survey: { enabled: false } } });
    const first = ruleEvent('ac-fan-stall', 'ac-1', 'o-1');
    const ticketId = (await rig.fire(first))!;
    await rig.push.runOnce();
    for (const step of [1, 2]) {
      rig.clock.advance(10 * MINUTE);
      await rig.tickets.setStatus(ticketId, 'resolved', STAFF);
      rig.clock.advance(MINUTE);
      await rig.fire(ruleEvent('ac-fan-stall', 'ac-1', 'o-1', { firingSince: rig.clock.now() + step }));
      await rig.push.runOnce();
    }
    expect(rig.published).toHaveLength(1);
    const { rows } = await t().db.query<{ status: string; held: string | null }>(
      'SELECT status, held FROM owner_notifications ORDER BY created_at',
    );
    expect(rows).toEqual([
      { status: 'sent', held: null },
      { status: 'superseded', held: 'incident_limit' },
      { status: 'scheduled', held: 'incident_limit' },
    ]);
    rig.clock.set(Date.parse(rig.published[0]!.message.createdAt) + HOUR);
    await rig.push.runOnce();
    expect(rig.published.map((p) => p.message.collapseKey)).toEqual([
      'ac-fan-stall:ac-1',
      'ac-fan-stall:ac-1',
    ]);
  });

  it('sends nothing when staff reopen a ticket, or for an owner who is disabled', async () => {
    const rig = await withOwner('o-1', { push: { survey: { enabled: false } } });
    const ticketId = (await rig.fire(ruleEvent('ac-fan-stall', 'ac-1', 'o-1')))!;
    await rig.push.runOnce();
    await rig.tickets.setStatus(ticketId, 'resolved', STAFF);
    await rig.tickets.reopen(ticketId, STAFF, 'customer called back');
    await rig.push.runOnce();
    expect(rig.published).toHaveLength(1);

    await rig.owners.update('o-1', { disabled: true });
    await rig.fire(ruleEvent('ac-fan-stall', 'ac-2', 'o-1'));
    await rig.push.runOnce();
    expect(rig.published).toHaveLength(1);
  });

  it('drops a notification held past its TTL instead of sending it late', async () => {
    const rig = await withOwner('o-1', { push: { ttlHours: 2, quietHours: '00:00-23:00' } });
    await rig.fire(ruleEvent('ac-fan-stall', 'ac-1', 'o-1'));
    await rig.push.runOnce();
    rig.clock.advance(2 * HOUR);
    await rig.push.runOnce();
    expect(rig.published).toEqual([]);
    expect((await rig.push.list({ ownerId: 'o-1' }))[0]).toMatchObject({
      status: 'expired',
      held: ['quiet_hours'],
    });
  });

  it('records receipts on the ticket once each; "fixed" recovers an owner-fixable ticket', async () => {
    const rig = await withOwner('o-1');
    const ticketId = (await rig.fire(ruleEvent('rv-brush-overcurrent', 'rv-1', 'o-1')))!;
    await rig.push.runOnce();
    const id = rig.published[0]!.message.id;
    expect((await rig.push.pending('o-1')).map((n) => n.id)).toEqual([id]);

    await rig.push.receipt('o-1', Buffer.from(JSON.stringify({ notification: id, status: 'delivered' })));
    await rig.push.receipt('o-1', { notification: id, status: 'delivered' });
    expect(await rig.push.pending('o-1')).toEqual([]);
    expect(await rig.push.connected('o-1')).toBe(0);
    await rig.push.receipt('o-1', { notification: id, status: 'opened' });
    await rig.push.receipt('o-1', { notification: id, status: 'fixed' });

    const d = (await rig.tickets.detail(ticketId))!;
    expect(d.status).toBe('recovered');
    const receipts = d.timeline.filter((e) => e.kind === 'link.added' && e.data.kind === 'owner_receipt');
    expect(receipts.map((e) => [e.actor, e.data.receipt])).toEqual([
      ['owner:o-1', 'delivered'],
      ['owner:o-1', 'opened'],
      ['owner:o-1', 'fixed'],
    ]);
    expect(receipts[2]!.data).toMatchObject({ effect: 'ticket recovered' });
    expect(d.timeline.at(-1)).toMatchObject({
      kind: 'status.changed',
      data: { to: 'recovered', reason: 'owner_fixed' },
    });

    await expect(rig.push.receipt('o-2', { notification: id, status: 'opened' })).rejects.toMatchObject({
      code: 'FL_NOT_FOUND',
    });
    await expect(rig.push.receipt('o-1', { notification: id, status: 'maybe' })).rejects.toMatchObject({
      code: 'FL_VALIDATION',
    });
  });

  it('keeps "fixed" a record when the rule says so or the device still reports the fault', async () => {
    const rig = await withOwner('o-1', { push: { fixedRecovers: { 'ac-fan-stall': false } } });
    const a = (await rig.fire(ruleEvent('ac-fan-stall', 'ac-1', 'o-1')))!;
    const b = (await rig.fire(ruleEvent('rv-brush-overcurrent', 'rv-1', 'o-1')))!;
    const c = (await rig.fire(ruleEvent('ac-fault-e05-repeat', 'ac-2', 'o-1')))!;
    rig.firing.add('rv-brush-overcurrent:rv-1');
    await rig.push.runOnce();
    for (const p of rig.published)
      await rig.push.receipt('o-1', { notification: p.message.id, status: 'fixed' });
    const effect = async (ticketId: string) => {
      const d = (await rig.tickets.detail(ticketId))!;
      return [d.status, d.timeline.find((e) => e.data.receipt === 'fixed')?.data.effect];
    };
    expect(await effect(a)).toEqual(['open', 'recorded: this rule does not let owners recover tickets']);
    expect(await effect(b)).toEqual(['open', 'recorded: the device still reports the fault']);
    // E05 needs a technician: its guide is not owner-fixable, so the default is a record only.
    expect(await effect(c)).toEqual(['open', 'recorded: this rule does not let owners recover tickets']);
  });

  it('raises the priority one band when the guide did not fix it, once per notification', async () => {
    const rig = await withOwner('o-1');
    const ticketId = (await rig.fire(ruleEvent('rv-wheel-stuck-repeat', 'rv-1', 'o-1')))!;
    await rig.push.runOnce();
    const before = (await rig.tickets.get(ticketId))!;
    const id = rig.published[0]!.message.id;
    await rig.push.receipt('o-1', { notification: id, status: 'not_fixed' });
    await rig.push.receipt('o-1', { notification: id, status: 'not_fixed' });
    const d = (await rig.tickets.detail(ticketId))!;
    expect([before.priority, d.priority]).toEqual(['P4', 'P3']);
    expect(Date.parse(d.sla.responseDueAt)).toBeLessThan(Date.parse(before.sla.responseDueAt));
    expect(d.timeline.filter((e) => e.kind === 'priority.changed').map((e) => [e.actor, e.data])).toEqual([
      ['owner:o-1', { from: 'P4', to: 'P3', reason: 'owner reports the guide did not fix it' }],
    ]);
    expect(d.timeline.find((e) => e.data.receipt === 'not_fixed')?.data.effect).toBe('priority P4 → P3');
  });

  it('asks for a rating after the ticket is resolved, stores the answer on the ticket and counts it', async () => {
    const rig = await withOwner('o-1');
    const ticketId = (await rig.fire(ruleEvent('ac-fan-stall', 'ac-1', 'o-1')))!;
    await rig.push.runOnce();
    rig.clock.advance(2 * HOUR);
    await rig.tickets.setStatus(ticketId, 'resolved', STAFF);
    await rig.push.runOnce();
    const survey = rig.published[1]!.message;
    expect(survey).toMatchObject({
      kind: 'survey',
      ticketId,
      collapseKey: 'ac-fan-stall:ac-1',
      title: '维修服务评价',
      survey: { scale: [1, 5], comment: true },
    });
    await expect(
      rig.push.receipt('o-1', { notification: survey.id, status: 'survey' }),
    ).rejects.toMatchObject({
      code: 'FL_VALIDATION',
    });
    await rig.push.receipt('o-1', {
      notification: survey.id,
      status: 'survey',
      score: 4,
      text: '师傅很准时',
    });
    await rig.push.receipt('o-1', { notification: survey.id, status: 'survey', score: 1 });
    const answer = (await rig.tickets.detail(ticketId))!.timeline.find((e) => e.data.kind === 'owner_survey');
    expect(answer).toMatchObject({ actor: 'owner:o-1', data: { score: 4, text: '师傅很准时' } });
    expect((await rig.push.get(survey.id))?.survey).toMatchObject({ score: 4, text: '师傅很准时' });
    const stats = await rig.push.stats(new Date(0));
    expect(stats.surveys).toEqual({
      sent: 1,
      answered: 1,
      averageScore: 4,
      scores: { 1: 0, 2: 0, 3: 0, 4: 1, 5: 0 },
    });
    expect(stats.receipts).toMatchObject({ delivered: 1 });
  });

  it("exports an owner's data, and erasing it leaves only pseudonymous facts", async () => {
    const rig = await withOwner('o-1', { gatewayUrl: rx.url(at('/gateway-erase')) });
    await rig.owners.update('o-1', { pushChannel: 'fcm', pushToken: 'token-abc' });
    const ticketId = (await rig.fire(ruleEvent('ac-fan-stall', 'ac-1', 'o-1')))!;
    await rig.push.runOnce();
    rig.clock.advance(2 * HOUR);
    await rig.tickets.setStatus(ticketId, 'resolved', STAFF);
    await rig.push.runOnce();
    const survey = rig.published[1]!.message;
    await rig.push.receipt('o-1', {
      notification: survey.id,
      status: 'survey',
      score: 2,
      text: 'call me on 555-0100',
    });

    const exported = await exportOwner(t().db, 'o-1');
    expect(exported.owner).toMatchObject({ id: 'o-1', pushToken: 'token-abc', locale: 'zh-CN' });
    expect(exported.tickets.map((x) => x.id)).toEqual([ticketId]);
    expect(exported.notifications.map((n) => [n.kind, n.survey?.text ?? null])).toEqual([
      ['guide', null],
      ['survey', 'call me on 555-0100'],
    ]);
    expect(JSON.stringify(exported)).not.toContain('secret');

    const erased = await eraseOwner(t().db, 'o-1');
    expect(erased).toMatchObject({ notifications: 2, gatewayMessagesErased: 2, surveyCommentsErased: 1 });
    expect(await rig.owners.authenticate('o-1', ownerSecret('o-1'))).toBe('unknown_owner');
    await expect(exportOwner(t().db, 'o-1')).rejects.toMatchObject({ code: 'FL_NOT_FOUND' });
    const dump = JSON.stringify([
      (await t().db.query('SELECT * FROM owner_notifications')).rows,
      (await t().db.query('SELECT * FROM outbox_messages')).rows,
      (await t().db.query('SELECT * FROM ticket_events')).rows,
      (await t().db.query('SELECT * FROM ticket_links')).rows,
    ]);
    for (const gone of ['555-0100', 'token-abc', '维修服务评价', 'Indoor fan', '室内风扇停转'])
      expect(dump).not.toContain(gone);
    const d = (await rig.tickets.detail(ticketId))!;
    expect(d.owner.id).toBe('o-1');
    expect(d.timeline.find((e) => e.data.kind === 'owner_survey')?.data).toMatchObject({ score: 2 });
    expect(await count(t().db, "SELECT count(*) FROM outbox_deliveries WHERE status = 'pending'")).toBe(0);
    expect(
      await count(t().db, `SELECT count(*) FROM outbox_deliveries WHERE receiver = '${GATEWAY_RECEIVER}'`),
    ).toBe(2);
    expect((await rig.push.stats(new Date(0))).surveys).toMatchObject({ answered: 1, averageScore: 2 });
  });
});
