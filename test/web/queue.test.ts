/**
 * The desk's queue and trend reads, on PGlite and PostgreSQL: priority first,
 * then SLA time left (the running clock: response until acknowledged, then
 * resolution; frozen while waiting), counts per status, filters, pages.
 */
import { describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/db.js';
import { deskFacets, deskQueue, deskTrend } from '../../src/web/desk.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { clock, fired, HOUR, MINUTE, rig, STAFF, T0 } from '../tickets/fixtures.js';

async function seed(db: Db) {
  const c = clock(T0);
  const { service } = rig(db, { fleet: { enabled: false } }, c);
  const open = async (at: number, o: Parameters<typeof fired>[0]) => {
    c.set(at);
    const r = await service.handleFired(fired(o));
    if (!r.ticketId) throw new Error(`no ticket for ${JSON.stringify(o)}`);
    return r.ticketId;
  };
  const ids = {
    a: await open(T0, { deviceId: 'ac-0001' }), // P2, response due T0+4h
    b: await open(T0 + HOUR, { deviceId: 'ac-0002' }), // P2, due T0+5h
    c: await open(T0 + 2 * HOUR, { deviceId: 'ac-0003', safety: true }), // P1, due T0+2h30
    d: await open(T0, {
      deviceId: 'rv-0001',
      model: 'RV-3',
      region: 'eu',
      severity: 'minor',
      category: 'performance',
    }), // P3
    e: await open(T0, { deviceId: 'ac-0005' }), // P2, acknowledged: resolution due T0+24h
    f: await open(T0, { deviceId: 'ac-0006' }), // P2, resolved
    g: await open(T0 + 30 * MINUTE, { deviceId: 'ac-0007' }), // P2, resolution due T0+24h30, waiting from T0+1h
  };
  c.set(T0 + 10 * MINUTE);
  await service.acknowledge(ids.e, STAFF);
  await service.setStatus(ids.f, 'resolved', STAFF);
  c.set(T0 + HOUR);
  await service.setStatus(ids.g, 'waiting', STAFF, { waitingOn: 'parts' });
  return { ids, service, clock: c };
}

describeBackends('desk queue', (backend) => {
  const fresh = freshDbPerTest(backend);

  it('orders by priority, then by the running SLA clock, and counts every status', async () => {
    const { db } = fresh();
    const { ids } = await seed(db);
    const now = T0 + 3 * HOUR;
    const q = await deskQueue(db, {}, now);
    expect(q.items.map((i) => i.id)).toEqual([ids.c, ids.a, ids.b, ids.e, ids.g, ids.d]);
    expect(q.total).toBe(6);
    expect(q.counts).toEqual({
      open: 4,
      acknowledged: 1,
      in_progress: 0,
      waiting: 1,
      recovered: 0,
      resolved: 1,
      closed: 0,
    });
    const byId = Object.fromEntries(q.items.map((i) => [i.id, i]));
    expect(byId[ids.c]!).toMatchObject({ priority: 'P1', safety: true });
    expect(byId[ids.c]!.sla).toMatchObject({ target: 'response', leftMs: -30 * MINUTE, paused: false });
    expect(byId[ids.a]!.sla).toMatchObject({ target: 'response', leftMs: HOUR, paused: false });
    // Going to waiting answered it (acknowledgedAt), so the resolution clock runs: due T0+24h30,
    // paused since T0+1h, so 23h30 left however long it waits.
    expect(byId[ids.g]!.sla).toMatchObject({ target: 'resolution', leftMs: 23.5 * HOUR, paused: true });
    expect(byId[ids.e]!.sla).toMatchObject({ target: 'resolution', leftMs: 21 * HOUR });
    expect(byId[ids.d]!).toMatchObject({
      priority: 'P3',
      device: { id: 'rv-0001', model: 'RV-3', region: 'eu' },
    });
    expect(await deskFacets(db)).toEqual({
      team: ['service-desk'],
      model: ['AC-9000', 'RV-3'],
      rule: ['ac-compressor-overheat'],
      region: ['cn-east', 'eu'],
    });
  });

  it('filters by status, model, region and text, and pages through the order', async () => {
    const { db } = fresh();
    const { ids } = await seed(db);
    const now = T0 + 3 * HOUR;
    const resolved = await deskQueue(db, { status: ['resolved'] }, now);
    expect(resolved.items.map((i) => i.id)).toEqual([ids.f]);
    expect(resolved.items[0]!.sla).toEqual({ target: null, dueAt: null, leftMs: null, paused: false });
    expect((await deskQueue(db, { model: 'RV-3' }, now)).items.map((i) => i.id)).toEqual([ids.d]);
    const eu = await deskQueue(db, { region: 'eu' }, now);
    expect(eu.counts.open).toBe(1);
    expect(eu.total).toBe(1);
    expect((await deskQueue(db, { q: 'ac-0002' }, now)).items.map((i) => i.id)).toEqual([ids.b]);
    // LIKE wildcards in the search are literal characters.
    expect((await deskQueue(db, { q: 'ac_000' }, now)).items).toEqual([]);
    expect((await deskQueue(db, { q: 'OVERHEATING on rv' }, now)).items.map((i) => i.id)).toEqual([ids.d]);
    const page2 = await deskQueue(db, { offset: 2, limit: 2 }, now);
    expect(page2).toMatchObject({ offset: 2, limit: 2, total: 6 });
    expect(page2.items.map((i) => i.id)).toEqual([ids.b, ids.e]);
  });

  it('finds breached tickets once the SLA check escalated them', async () => {
    const { db } = fresh();
    const { ids, service, clock: c } = await seed(db);
    expect((await deskQueue(db, { breached: true }, c.now())).items).toEqual([]);
    c.set(T0 + 4 * HOUR + MINUTE);
    await service.checkSla();
    const breached = await deskQueue(db, { breached: true }, c.now());
    // c (P1, due T0+2h30) and a (P2, due T0+4h) missed their response targets; g is waiting.
    expect(breached.items.map((i) => i.id).sort()).toEqual([ids.a, ids.c].sort());
    expect(breached.items.every((i) => i.breached)).toBe(true);
    const notBreached = await deskQueue(db, { breached: false }, c.now());
    expect(notBreached.items.map((i) => i.id)).not.toContain(ids.a);
  });

  it('counts tickets opened per hour and per local day, by rule and model', async () => {
    const { db } = fresh();
    await seed(db);
    const hourly = await deskTrend(db, { hours: 24, tzOffsetMinutes: 0 }, T0 + 3 * HOUR);
    expect(hourly.bucketMs).toBe(HOUR);
    expect(hourly.buckets).toHaveLength(24);
    expect(hourly.buckets.at(-1)).toBe(T0 + 3 * HOUR);
    const at = (h: number) => hourly.buckets.indexOf(T0 + h * HOUR);
    const rule = hourly.byRule['ac-compressor-overheat']!;
    expect([rule[at(0)], rule[at(1)], rule[at(2)], rule[at(3)]]).toEqual([5, 1, 1, 0]);
    expect(rule.reduce((a, b) => a + b, 0)).toBe(7);
    expect(hourly.byModel['RV-3']![at(0)]).toBe(1);

    // UTC+8 (getTimezoneOffset -480): days start at 16:00 UTC.
    const daily = await deskTrend(db, { hours: 72, tzOffsetMinutes: -480 }, T0 + 3 * HOUR);
    expect(daily.bucketMs).toBe(24 * HOUR);
    expect(daily.buckets).toHaveLength(3);
    expect(daily.buckets.every((b) => new Date(b).getUTCHours() === 16)).toBe(true);
    expect(daily.byRule['ac-compressor-overheat']).toEqual([0, 0, 7]);
  });
});

describe('desk queue limits', () => {
  it('keeps the page size within 1..500', async () => {
    const calls: unknown[][] = [];
    const db = {
      query: async (_sql: string, params: unknown[] = []) => {
        calls.push(params);
        return { rows: [], affectedRows: 0 };
      },
    };
    await deskQueue(db, { limit: 10_000, offset: -5 }, T0);
    expect(calls[0]!.slice(-2)).toEqual([500, 0]);
  });
});
