import { expect, it } from 'vitest';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { fired, rig, T0 } from './fixtures.js';

describeBackends('ticket.opened names when the engine decided', (backend) => {
  const t = freshDbPerTest(backend);

  it('carries the rule event time beside openedAt, which is when the ticket was written', async () => {
    const { service, clock } = rig(t().db);
    // The engine fired at T0; the event waited 250 ms (queue, busy database) before its transaction.
    clock.set(T0 + 250);
    const out = await service.handleFired(fired({ serverTime: T0 }));
    const d = (await service.detail(out.ticketId!))!;
    expect(d.openedAt).toBe(new Date(T0 + 250).toISOString());
    expect(d.timeline[0]).toMatchObject({
      kind: 'ticket.opened',
      data: { ruleEventAt: new Date(T0).toISOString() },
    });
  });
});
