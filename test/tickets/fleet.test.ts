import { expect, it } from 'vitest';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { count, fired, MINUTE, rig, STAFF } from './fixtures.js';

const FLEET = { threshold: 20, windowMinutes: 60, scopes: ['model' as const, 'batch' as const] };

describeBackends('fleet incidents', (backend) => {
  const t = freshDbPerTest(backend);

  it('opens one incident when the 20th device of a model fires the rule within the window, and not before', async () => {
    const { service, clock } = rig(t().db, { fleet: FLEET });
    // Two devices share an owner, so 20 devices are 19 customers.
    const owner = (i: number) => (i === 1 ? 'owner-0' : `owner-${i}`);
    for (let i = 0; i < 19; i++) {
      await service.handleFired(fired({ deviceId: `ac-${i}`, owner: owner(i), batch: `B${i}` }));
      clock.advance(MINUTE);
    }
    expect(await count(t().db, 'SELECT count(*) FROM fleet_incidents')).toBe(0);
    // The same devices firing again do not count twice.
    await service.handleFired(fired({ deviceId: 'ac-3', firingSince: clock.now() }));
    expect(await count(t().db, 'SELECT count(*) FROM fleet_incidents')).toBe(0);

    const twentieth = await service.handleFired(fired({ deviceId: 'ac-19', batch: 'B19' }));
    const { items } = await service.incidents();
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({
      status: 'open',
      ruleId: 'ac-compressor-overheat',
      scope: 'model',
      scopeValue: 'AC-9000',
      team: 'hardware',
      affectedDevices: 20,
      affectedCustomers: 19,
      // 19 customers score 3: 0.3*3 + 0.4*4 + 0.3*4 = 3.7, P2 (a single device is 3.1)
      priorityScore: 3.7,
      priority: 'P2',
    });
    const incident = (await service.incident(items[0]!.id))!;
    expect(incident.tickets).toHaveLength(20);
    const linked = (await service.detail(twentieth.ticketId!))!;
    expect(linked.links).toEqual([expect.objectContaining({ kind: 'fleet_incident', ref: incident.id })]);
    expect(linked.timeline.map((x) => x.kind)).toContain('fleet.linked');

    // A later ticket of the same rule and model joins it.
    await service.handleFired(fired({ deviceId: 'ac-20', batch: 'B20' }));
    expect((await service.incident(incident.id))!).toMatchObject({
      affectedDevices: 21,
      affectedCustomers: 20,
    });
    expect(await count(t().db, 'SELECT count(*) FROM fleet_incidents')).toBe(1);
  });

  it('counts only devices that fired within the window', async () => {
    const { service, clock } = rig(t().db, { fleet: { ...FLEET, threshold: 3, scopes: ['model'] } });
    await service.handleFired(fired({ deviceId: 'ac-0' }));
    clock.advance(61 * MINUTE);
    await service.handleFired(fired({ deviceId: 'ac-1' }));
    await service.handleFired(fired({ deviceId: 'ac-2' }));
    expect(await count(t().db, 'SELECT count(*) FROM fleet_incidents')).toBe(0);
    await service.handleFired(fired({ deviceId: 'ac-3' }));
    expect((await service.incidents()).items[0]).toMatchObject({ affectedDevices: 3 });
  });

  it('groups by production batch across models, and keeps other models and rules apart', async () => {
    const { service } = rig(t().db, { fleet: { ...FLEET, threshold: 3 } });
    await service.handleFired(fired({ deviceId: 'a', model: 'AC-9000', batch: 'B7' }));
    await service.handleFired(fired({ deviceId: 'b', model: 'AC-12', batch: 'B7' }));
    await service.handleFired(fired({ deviceId: 'c', model: 'AC-12', batch: 'B8', ruleId: 'other-rule' }));
    expect(await count(t().db, 'SELECT count(*) FROM fleet_incidents')).toBe(0);
    await service.handleFired(fired({ deviceId: 'd', model: 'AC-7', batch: 'B7' }));
    const { items } = await service.incidents();
    expect(items.map((i) => [i.scope, i.scopeValue, i.affectedDevices])).toEqual([['batch', 'B7', 3]]);
  });

  it('closes an incident once its tickets are resolved and no device joined for a window', async () => {
    const { service, clock } = rig(t().db, { fleet: { ...FLEET, threshold: 2, scopes: ['model'] } });
    const a = await service.handleFired(fired({ deviceId: 'a' }));
    const b = await service.handleFired(fired({ deviceId: 'b' }));
    clock.advance(2 * 60 * MINUTE);
    expect((await service.checkSla()).incidentsClosed).toBe(0);
    await service.setStatus(a.ticketId!, 'resolved', STAFF);
    await service.setStatus(b.ticketId!, 'resolved', STAFF);
    expect((await service.checkSla()).incidentsClosed).toBe(1);
    expect((await service.incidents()).items[0]).toMatchObject({ status: 'closed' });
    // The next burst is a new incident.
    clock.advance(2 * 60 * MINUTE);
    await service.handleFired(fired({ deviceId: 'c' }));
    await service.handleFired(fired({ deviceId: 'd' }));
    expect((await service.incidents({ status: 'open' })).items).toHaveLength(1);
  });

  it('makes a fleet incident P1 when its tickets are safety faults', async () => {
    const { service } = rig(t().db, { fleet: { ...FLEET, threshold: 2, scopes: ['model'] } });
    await service.handleFired(fired({ deviceId: 'a', description: 'sparks from the outdoor unit' }));
    await service.handleFired(fired({ deviceId: 'b' }));
    expect((await service.incidents()).items[0]).toMatchObject({ safety: true, priority: 'P1' });
  });
});
