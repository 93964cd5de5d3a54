import { afterAll, beforeAll, expect, it } from 'vitest';
import { ticketsConfig } from '../../src/tickets/config.js';
import { TicketService } from '../../src/tickets/service.js';
import { webhookTransport } from '../../src/webhooks/http.js';
import { backoffMs, Outbox } from '../../src/webhooks/outbox.js';
import { SIGNATURE_HEADER, verify } from '../../src/webhooks/signature.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { until } from '../helpers/net.js';
import { clock, count, fired, T0 } from '../tickets/fixtures.js';
import { type Receiver, startReceiver } from './receiver.js';

const SECRETS = { flaky: 'flaky-secret-0123456789', steady: 'steady-secret-0123456789' };

let rx: Receiver;
beforeAll(async () => {
  rx = await startReceiver();
});
afterAll(() => rx.close());

describeBackends('webhook outbox', (backend) => {
  const t = freshDbPerTest(backend);

  function setup(
    test: string,
    options: { maxAttempts?: number; initialBackoffMs?: number; maxBackoffMs?: number } = {},
  ) {
    const c = clock();
    const path = (name: 'flaky' | 'steady') => `/${backend.name}/${test}/${name}`;
    const receivers = (['flaky', 'steady'] as const).map((name) => ({
      name,
      url: rx.url(path(name)),
      secret: SECRETS[name],
      timeoutMs: 5_000,
    }));
    const config = ticketsConfig({ receivers });
    // random 0.5: each backoff is exactly 3/4 of its nominal delay.
    const outbox = new Outbox(t().db, { now: c.now, random: () => 0.5, ...options });
    for (const r of config.receivers) outbox.setTransport(r.name, webhookTransport(r, c.now));
    const service = new TicketService({ db: t().db, config, outbox, now: c.now });
    return { c, outbox, service, path };
  }

  it('retries a failing receiver with backoff, never resends to one that succeeded, and signs every request', async () => {
    const { c, outbox, service, path } = setup('retry', { initialBackoffMs: 5_000 });
    rx.answer(path('flaky'), [503]);
    const { ticketId } = await service.handleFired(fired());

    expect(await outbox.dispatchDue()).toEqual({ attempted: 2, delivered: 1, retrying: 1, dead: 0 });
    expect(rx.on(path('steady'))).toHaveLength(1);
    expect(rx.on(path('flaky'))).toHaveLength(1);
    const [pending] = (await outbox.list({ receiver: 'flaky' })).items;
    expect(pending).toMatchObject({ status: 'pending', attempts: 1, lastStatus: 503 });
    expect(pending!.nextAttemptAt).toBe(new Date(T0 + 3_750).toISOString());

    // Not due yet: nothing is sent.
    c.advance(3_749);
    expect((await outbox.dispatchDue()).attempted).toBe(0);
    c.advance(1);
    expect(await outbox.dispatchDue()).toEqual({ attempted: 1, delivered: 1, retrying: 0, dead: 0 });

    // Whatever happens later, neither receiver gets the message again.
    c.advance(24 * 3_600_000);
    expect((await outbox.dispatchDue()).attempted).toBe(0);
    const flaky = rx.on(path('flaky'));
    const steady = rx.on(path('steady'));
    expect(flaky).toHaveLength(2);
    expect(steady).toHaveLength(1);

    const ticket = (await service.detail(ticketId!))!;
    const opened = ticket.timeline.find((e) => e.kind === 'ticket.opened')!;
    for (const [req, secret] of [
      [flaky[0]!, SECRETS.flaky],
      [flaky[1]!, SECRETS.flaky],
      [steady[0]!, SECRETS.steady],
    ] as const) {
      expect(req.headers['content-type']).toBe('application/json');
      expect(req.headers['idempotency-key']).toBe(`${ticket.fingerprint}:${opened.id}`);
      expect(req.headers['x-faultline-event']).toBe('ticket.opened');
      const signature = req.headers[SIGNATURE_HEADER] as string;
      expect(signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      // Verified as the receiver would on arrival (within the 5-minute tolerance of both attempts).
      const arrival = T0 + 3_750;
      expect(verify(secret, signature, req.body, { now: arrival })).toBe(true);
      expect(verify('another-secret-0123456789', signature, req.body, { now: arrival })).toBe(false);
    }
    // A retry sends the same bytes under the same key, so a receiver can drop the repeat.
    expect(flaky[1]!.body).toBe(flaky[0]!.body);
    const body = JSON.parse(steady[0]!.body);
    expect(body).toMatchObject({
      event: 'ticket.opened',
      eventId: opened.id,
      ticket: {
        id: ticketId,
        externalKey: 'ac-compressor-overheat:ac-0001',
        title: ticket.title,
        description: ticket.description,
        priority: 'P2',
        severity: 'major',
        status: 'open',
        device: { id: 'ac-0001', model: 'AC-9000' },
        owner: { id: 'owner-ac-0001' },
        links: { previousTicketId: null, fleetIncidentIds: [], guides: [] },
        openedAt: new Date(T0).toISOString(),
      },
    });

    const log = (await outbox.list({ receiver: 'flaky' })).items[0]!;
    expect(log).toMatchObject({ status: 'delivered', attempts: 2, kind: 'ticket.opened', topic: 'tickets' });
    expect(log.attemptLog.map((a) => a.status)).toEqual([503, 200]);
  });

  it('backs off exponentially up to the cap, then dead-letters; a dead delivery can be retried', async () => {
    const { c, outbox, service, path } = setup('dead', {
      maxAttempts: 4,
      initialBackoffMs: 1_000,
      maxBackoffMs: 2_500,
    });
    rx.answer(path('flaky'), [500, 500, 500, 500]);
    await service.handleFired(fired());
    const waits: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      await outbox.dispatchDue();
      const d = (await outbox.list({ receiver: 'flaky' })).items[0]!;
      if (d.status === 'dead') break;
      const wait = Date.parse(d.nextAttemptAt!) - c.now();
      waits.push(wait);
      c.advance(wait);
    }
    // Nominal 1 s, 2 s, then capped at 2.5 s; three quarters of each with the pinned jitter.
    expect(waits).toEqual([750, 1_500, 1_875]);
    const dead = (await outbox.list({ receiver: 'flaky', status: 'dead' })).items;
    expect(dead).toHaveLength(1);
    expect(dead[0]!.attempts).toBe(4);
    expect(rx.on(path('flaky'))).toHaveLength(4);
    c.advance(3_600_000);
    expect((await outbox.dispatchDue()).attempted).toBe(0);

    await outbox.retry(dead[0]!.id);
    expect(await outbox.dispatchDue()).toMatchObject({ delivered: 1 });
    expect(rx.on(path('flaky'))).toHaveLength(5);
    expect(rx.on(path('steady'))).toHaveLength(1);
  });

  it('writes nothing when the transaction that enqueued rolls back', async () => {
    const outbox = new Outbox(t().db);
    const msg = { topic: 'test', kind: 'x', key: 'k1', payload: '{}', receivers: ['a', 'b'] };
    await expect(
      t().db.tx(async (q) => {
        await outbox.enqueue(q, msg);
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    expect(await count(t().db, 'SELECT count(*) FROM outbox_messages')).toBe(0);
    await t().db.tx((q) => outbox.enqueue(q, msg));
    expect(await count(t().db, 'SELECT count(*) FROM outbox_deliveries')).toBe(2);
    expect(await t().db.tx((q) => outbox.enqueue(q, { ...msg, receivers: [] }))).toBeNull();
  });

  it('records a transport that throws or a receiver that is not configured as a failed attempt', async () => {
    const c = clock();
    const outbox = new Outbox(t().db, { now: c.now, random: () => 0 });
    outbox.setTransport('boom', async () => {
      throw new Error('socket hang up');
    });
    await t().db.tx((q) =>
      outbox.enqueue(q, { topic: 'test', kind: 'x', key: 'k', payload: '{}', receivers: ['boom', 'gone'] }),
    );
    expect(await outbox.dispatchDue()).toMatchObject({ attempted: 2, retrying: 2 });
    const errors = (await outbox.list()).items.map((d) => [d.receiver, d.lastError]).sort();
    expect(errors).toEqual([
      ['boom', 'socket hang up'],
      ['gone', 'no receiver named gone is configured'],
    ]);
  });

  it('delivers in the background soon after a change commits', async () => {
    const receivers = [
      { name: 'steady', url: rx.url(`/${backend.name}/bg`), secret: SECRETS.steady, timeoutMs: 5_000 },
    ];
    const config = ticketsConfig({ receivers });
    const outbox = new Outbox(t().db, { pollMs: 60_000 });
    outbox.setTransport('steady', webhookTransport(config.receivers[0]!));
    const service = new TicketService({ db: t().db, config, outbox });
    outbox.start();
    try {
      await service.handleFired(fired());
      // The poll interval is a minute: only the wake-up after commit can deliver this soon.
      await until('the background delivery', () => rx.on(`/${backend.name}/bg`).length === 1, 10_000);
    } finally {
      await outbox.stop();
    }
    expect(await count(t().db, `SELECT count(*) FROM outbox_deliveries WHERE status = 'delivered'`)).toBe(1);
  });
});

it('computes capped exponential backoff with equal jitter', () => {
  expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, 1_000, 5_000, () => 0))).toEqual([
    500, 1_000, 2_000, 2_500, 2_500,
  ]);
  expect([1, 2, 3].map((n) => backoffMs(n, 1_000, 5_000, () => 0.999_999))).toEqual([999, 1_999, 3_999]);
});
