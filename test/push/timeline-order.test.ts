/**
 * The push consumer reads the ticket timeline from a cursor. On PostgreSQL, ticket transactions
 * run side by side: one can take a lower timeline id and commit after another took a higher id
 * and committed. A cursor that moved past the higher id must still see the lower one once it
 * commits, or that owner never gets a guide. Reproduced here step by step with a real ticket
 * service on a real PostgreSQL: transaction A is stopped right after it wrote its timeline entry,
 * B opens another ticket and commits, a push pass runs, then A commits.
 *
 * PostgreSQL only: PGlite is one connection, so a second transaction cannot start while A is open
 * (and the interleaving cannot happen there).
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Db, Queryable } from '../../src/db/db.js';
import { postgresBackend, stopSharedPostgres, type TestDb } from '../helpers/db.js';
import { count } from '../tickets/fixtures.js';
import { ownerSecret, pushRig, ruleEvent } from './rig.js';

/** A Db whose next transaction that writes a timeline entry stops right after that INSERT until released. */
function gatedDb(db: Db) {
  let armed = false;
  let reached: () => void = () => {};
  let release: () => void = () => {};
  const wrap = (q: Queryable): Queryable => ({
    async query(sql, params) {
      const r = await q.query(sql, params);
      if (armed && /INSERT INTO ticket_events/.test(sql)) {
        armed = false;
        const go = new Promise<void>((resolve) => {
          release = resolve;
        });
        reached();
        await go;
      }
      return r as never;
    },
  });
  const gated: Db = {
    kind: db.kind,
    query: (sql, params) => db.query(sql, params),
    tx: (fn) => db.tx((q) => fn(wrap(q))),
    close: () => db.close(),
  };
  return {
    db: gated,
    /** Arms the gate; resolves when a transaction is held at it. */
    arm(): Promise<void> {
      armed = true;
      return new Promise<void>((resolve) => {
        reached = resolve;
      });
    },
    release: () => release(),
  };
}

describe('push reads the ticket timeline in commit order [postgres]', () => {
  let t: TestDb | null = null;
  afterAll(async () => {
    await t?.dispose();
    await stopSharedPostgres();
  });

  it('sends the guide of a ticket whose lower timeline id committed after a higher one was read', async () => {
    t = await postgresBackend.open();
    const gate = gatedDb(t.db);
    const rig = await pushRig(gate.db);
    for (const id of ['o-a', 'o-b']) await rig.owners.add({ id, secret: ownerSecret(id), locale: 'en' });

    // A: opens a ticket, takes the lower timeline id, and stays open.
    const held = gate.arm();
    const a = rig.fire(ruleEvent('rv-brush-overcurrent', 'rv-a', 'o-a', { locale: 'en' }));
    await held;
    // B: opens another ticket, takes a higher id, and commits.
    const b = await rig.fire(ruleEvent('rv-brush-overcurrent', 'rv-b', 'o-b', { locale: 'en' }));
    const ids = await t.db.query<{ id: string; ticket_id: string }>(
      "SELECT id, ticket_id FROM ticket_events WHERE kind = 'ticket.opened'",
    );
    expect(ids.rows.map((r) => r.ticket_id)).toEqual([b]); // A's entry is not visible yet
    await rig.push.runOnce();

    // A commits; the next pass must send its guide.
    gate.release();
    const ticketA = await a;
    const opened = await t.db.query<{ id: string; ticket_id: string }>(
      "SELECT id::text, ticket_id::text FROM ticket_events WHERE kind = 'ticket.opened' ORDER BY id",
    );
    expect(opened.rows.map((r) => r.ticket_id)).toEqual([ticketA, b]); // A's id is the lower one
    await rig.push.runOnce();

    const sent = () =>
      rig.published
        .map((p) => p.ownerId)
        .slice()
        .sort();
    expect(sent()).toEqual(['o-a', 'o-b']);
    expect(
      await count(t.db, "SELECT count(*) FROM owner_notifications WHERE kind = 'guide' AND status = 'sent'"),
    ).toBe(2);

    // More passes, and a restart (a new push service on the same database): nothing twice.
    await rig.push.runOnce();
    const again = await pushRig(t.db);
    await again.push.runOnce();
    expect(sent()).toEqual(['o-a', 'o-b']);
    expect(again.published).toEqual([]);
    expect(await count(t.db, 'SELECT count(*) FROM owner_notifications')).toBe(2);
  });
});
