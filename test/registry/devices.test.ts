import { describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/db.js';
import { verifySecret } from '../../src/registry/credentials.js';
import { type DeviceInput, DeviceRegistry } from '../../src/registry/devices.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';

const SECRET = 'Zq4-wT9mK2xLp7Vr8sN3';

function input(id: string, extra: Partial<DeviceInput> = {}): DeviceInput {
  return { id, model: 'WM-200', secret: `${SECRET}-${id}`, ...extra };
}

/** A Db that counts the queries made through it (tx included). */
function counting(db: Db): { db: Db; count: () => number } {
  let n = 0;
  const wrapped: Db = {
    kind: db.kind,
    query: (sql, params) => {
      n++;
      return db.query(sql, params);
    },
    tx: (fn) => {
      n++;
      return db.tx(fn);
    },
    close: () => db.close(),
  };
  return { db: wrapped, count: () => n };
}

describeBackends('device registry', (backend) => {
  const t = freshDbPerTest(backend);

  describe('add and get', () => {
    it('adds a device and returns its record, without the secret or its hash', async () => {
      const reg = new DeviceRegistry(t().db);
      const rec = await reg.add(
        input('wm-0001', {
          firmware: '1.4.2',
          ownerId: 'owner-7',
          ownerLocale: 'zh-CN',
          region: 'eu-west',
          batch: 'B2025-03',
        }),
      );
      expect(rec).toEqual({
        id: 'wm-0001',
        model: 'WM-200',
        firmware: '1.4.2',
        ownerId: 'owner-7',
        ownerLocale: 'zh-CN',
        region: 'eu-west',
        batch: 'B2025-03',
        disabled: false,
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        lastSeenAt: null,
        online: false,
      });
      expect(await reg.get('wm-0001')).toEqual(rec);
      expect(JSON.stringify(rec)).not.toMatch(/secret|sha256/i);
    });

    it('stores optional fields as null and finds nothing for an unknown id', async () => {
      const reg = new DeviceRegistry(t().db);
      const rec = await reg.add(input('bare-1'));
      expect(rec).toMatchObject({
        firmware: null,
        ownerId: null,
        ownerLocale: null,
        region: null,
        batch: null,
      });
      expect(await reg.get('nobody-here')).toBeNull();
    });

    it('never stores the secret in clear', async () => {
      const { db } = t();
      const reg = new DeviceRegistry(db);
      const secret = 'plain-text-canary-0123456789';
      await reg.add({ id: 'canary', model: 'm', secret });
      const { rows } = await db.query<Record<string, unknown>>("SELECT * FROM devices WHERE id = 'canary'");
      expect(JSON.stringify(rows)).not.toContain(secret);
      const hash = rows[0]!.secret_hash as string;
      expect(hash).toMatch(/^sha256\$/);
      expect(verifySecret(secret, hash)).toBe(true);
    });

    it('refuses a duplicate id with FL_DEVICE_EXISTS', async () => {
      const reg = new DeviceRegistry(t().db);
      await reg.add(input('dup-1'));
      await expect(reg.add(input('dup-1', { model: 'other' }))).rejects.toMatchObject({
        code: 'FL_DEVICE_EXISTS',
        status: 409,
      });
      expect((await reg.get('dup-1'))?.model).toBe('WM-200');
    });

    it('refuses a secret shorter than 16 characters and stores nothing', async () => {
      const reg = new DeviceRegistry(t().db);
      await expect(reg.add({ id: 'short-1', model: 'm', secret: '15-characters!!' })).rejects.toMatchObject({
        code: 'FL_VALIDATION',
        message: expect.stringMatching(/secret: device secrets must be at least 16 characters/),
      });
      expect(await reg.get('short-1')).toBeNull();
    });

    it('refuses invalid input with FL_VALIDATION and the zod issues', async () => {
      const reg = new DeviceRegistry(t().db);
      const cases: Array<[unknown, string]> = [
        [{ ...input('x'), id: 'has/slash' }, 'id'],
        [{ ...input('x'), id: '+' }, 'id'],
        [{ id: 'x', secret: SECRET }, 'model'],
        [{ ...input('x'), ownerLocale: 'english!' }, 'ownerLocale'],
        [{ ...input('x'), ownerId: 'a#b' }, 'ownerId'],
        [{ ...input('x'), model: 'bad\nmodel' }, 'model'],
        [{ ...input('x'), owner_id: 'typo' }, ''],
      ];
      for (const [bad, path] of cases) {
        const err = await reg.add(bad as DeviceInput).then(
          () => null,
          (e: unknown) => e as { code: string; details: { issues: Array<{ path: string[] }> } },
        );
        expect(err?.code).toBe('FL_VALIDATION');
        expect(err?.details.issues.map((i) => i.path.join('.'))).toContain(path);
      }
      expect((await reg.list()).items).toEqual([]);
    });

    it('accepts language tags such as en, zh-CN and sr-Latn-RS', async () => {
      const reg = new DeviceRegistry(t().db);
      for (const [i, ownerLocale] of ['en', 'zh-CN', 'pt-BR', 'sr-Latn-RS'].entries()) {
        expect((await reg.add(input(`loc-${i}`, { ownerLocale }))).ownerLocale).toBe(ownerLocale);
      }
    });
  });

  describe('list', () => {
    it('pages through every device in id order with keyset cursors', async () => {
      const reg = new DeviceRegistry(t().db);
      const ids = Array.from({ length: 25 }, (_, i) => `dev-${String(i).padStart(3, '0')}`);
      for (const id of [...ids].reverse()) await reg.add(input(id));
      const seen: string[] = [];
      let cursor: string | undefined;
      const sizes: number[] = [];
      for (;;) {
        const page = await reg.list({ limit: 10, cursor });
        sizes.push(page.items.length);
        seen.push(...page.items.map((d) => d.id));
        if (!page.nextCursor) break;
        cursor = page.nextCursor;
      }
      expect(sizes).toEqual([10, 10, 5]);
      expect(seen).toEqual(ids);
    });

    it('returns no cursor when the last page is exactly full', async () => {
      const reg = new DeviceRegistry(t().db);
      for (let i = 0; i < 4; i++) await reg.add(input(`p-${i}`));
      const first = await reg.list({ limit: 2 });
      const second = await reg.list({ limit: 2, cursor: first.nextCursor! });
      expect(second.items.map((d) => d.id)).toEqual(['p-2', 'p-3']);
      expect(second.nextCursor).toBeNull();
    });

    it('defaults to 100 per page', async () => {
      const { db } = t();
      await db.query(
        `INSERT INTO devices (id, model, secret_hash)
         SELECT 'bulk-' || lpad(i::text, 4, '0'), 'm', 'h' FROM generate_series(1, 150) AS i`,
      );
      const page = await new DeviceRegistry(db).list();
      expect(page.items).toHaveLength(100);
      expect(page.nextCursor).not.toBeNull();
    });

    it('filters by model, owner and disabled, across pages', async () => {
      const reg = new DeviceRegistry(t().db);
      for (let i = 0; i < 12; i++) {
        await reg.add(
          input(`f-${String(i).padStart(2, '0')}`, { model: i % 2 ? 'odd' : 'even', ownerId: `o${i % 3}` }),
        );
      }
      await reg.setDisabled('f-01', true);
      await reg.setDisabled('f-03', true);
      const ids = async (q: Parameters<DeviceRegistry['list']>[0]) => {
        const out: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await reg.list({ ...q, limit: 2, cursor });
          out.push(...page.items.map((d) => d.id));
          cursor = page.nextCursor ?? undefined;
        } while (cursor);
        return out;
      };
      expect(await ids({ model: 'odd' })).toEqual(['f-01', 'f-03', 'f-05', 'f-07', 'f-09', 'f-11']);
      expect(await ids({ ownerId: 'o0' })).toEqual(['f-00', 'f-03', 'f-06', 'f-09']);
      expect(await ids({ disabled: true })).toEqual(['f-01', 'f-03']);
      expect(await ids({ model: 'odd', disabled: false, ownerId: 'o2' })).toEqual(['f-05', 'f-11']);
    });

    it('refuses a bad limit or cursor with FL_VALIDATION', async () => {
      const reg = new DeviceRegistry(t().db);
      await expect(reg.list({ limit: 0 })).rejects.toMatchObject({ code: 'FL_VALIDATION' });
      await expect(reg.list({ limit: 1001 })).rejects.toMatchObject({ code: 'FL_VALIDATION' });
      await expect(reg.list({ cursor: 'not-a-cursor' })).rejects.toMatchObject({ code: 'FL_VALIDATION' });
      expect((await reg.list({ limit: 1000 })).items).toEqual([]);
    });
  });

  describe('disable and authenticate', () => {
    it('disables and enables a device; an unknown one is FL_DEVICE_NOT_FOUND', async () => {
      const reg = new DeviceRegistry(t().db);
      await reg.add(input('d-1'));
      expect((await reg.setDisabled('d-1', true)).disabled).toBe(true);
      expect((await reg.get('d-1'))?.disabled).toBe(true);
      expect((await reg.setDisabled('d-1', false)).disabled).toBe(false);
      await expect(reg.setDisabled('ghost', true)).rejects.toMatchObject({
        code: 'FL_DEVICE_NOT_FOUND',
        status: 404,
      });
    });

    it('tells each outcome apart: ok, unknown device, bad secret, disabled', async () => {
      const reg = new DeviceRegistry(t().db);
      await reg.add(
        input('a-1', { firmware: '2.0', ownerId: 'o-1', ownerLocale: 'en', region: 'us', batch: 'b1' }),
      );
      expect(await reg.authenticate('a-1', `${SECRET}-a-1`)).toEqual({
        ok: true,
        device: {
          id: 'a-1',
          model: 'WM-200',
          firmware: '2.0',
          ownerId: 'o-1',
          ownerLocale: 'en',
          region: 'us',
          batch: 'b1',
        },
      });
      expect(await reg.authenticate('nope', `${SECRET}-a-1`)).toEqual({
        ok: false,
        reason: 'unknown_device',
      });
      expect(await reg.authenticate('a-1', `${SECRET}-a-2`)).toEqual({ ok: false, reason: 'bad_secret' });
      expect(await reg.authenticate('a-1', 'short')).toEqual({ ok: false, reason: 'bad_secret' });
      await reg.setDisabled('a-1', true);
      expect(await reg.authenticate('a-1', `${SECRET}-a-1`)).toEqual({ ok: false, reason: 'disabled' });
      // Without the secret, a caller cannot learn that the device is disabled.
      expect(await reg.authenticate('a-1', `${SECRET}-a-2`)).toEqual({ ok: false, reason: 'bad_secret' });
      await reg.setDisabled('a-1', false);
      expect((await reg.authenticate('a-1', `${SECRET}-a-1`)).ok).toBe(true);
    });

    it('sees a device added after a failed attempt at once (unknown ids are not cached)', async () => {
      const reg = new DeviceRegistry(t().db);
      expect(await reg.authenticate('late-1', `${SECRET}-late-1`)).toEqual({
        ok: false,
        reason: 'unknown_device',
      });
      await new DeviceRegistry(t().db).add(input('late-1'));
      expect((await reg.authenticate('late-1', `${SECRET}-late-1`)).ok).toBe(true);
    });

    it('answers a connect storm for one device with one database lookup, verifying every secret', async () => {
      const c = counting(t().db);
      const reg = new DeviceRegistry(c.db);
      await new DeviceRegistry(t().db).add(input('storm-1'));
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          reg.authenticate('storm-1', i % 10 === 0 ? 'wrong-secret-000000' : `${SECRET}-storm-1`),
        ),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(180);
      expect(results.filter((r) => !r.ok && r.reason === 'bad_secret')).toHaveLength(20);
      expect(c.count()).toBe(1);
    });

    it('looks up many devices connecting at once in one statement', async () => {
      const admin = new DeviceRegistry(t().db);
      await admin.importCsv(
        `id,model,secret\n${Array.from({ length: 300 }, (_, i) => `many-${i},m,${SECRET}-many-${i}`).join('\n')}\n`,
      );
      const c = counting(t().db);
      const reg = new DeviceRegistry(c.db);
      const results = await Promise.all(
        Array.from({ length: 300 }, (_, i) => reg.authenticate(`many-${i}`, `${SECRET}-many-${i}`)),
      );
      expect(results.every((r) => r.ok)).toBe(true);
      expect(await reg.authenticate('many-none', SECRET)).toEqual({ ok: false, reason: 'unknown_device' });
      expect(c.count()).toBe(2);
    });

    it('keeps the cache bounded, least recently used out first', async () => {
      const c = counting(t().db);
      const reg = new DeviceRegistry(c.db, { cacheSize: 2 });
      const admin = new DeviceRegistry(t().db);
      for (const id of ['c-1', 'c-2', 'c-3']) await admin.add(input(id));
      const auth = async (id: string) =>
        expect((await reg.authenticate(id, `${SECRET}-${id}`)).ok).toBe(true);
      await auth('c-1');
      await auth('c-2');
      await auth('c-1'); // c-1 is now the most recent
      expect(c.count()).toBe(2);
      await auth('c-3'); // evicts c-2
      await auth('c-1');
      expect(c.count()).toBe(3);
      await auth('c-2');
      expect(c.count()).toBe(4);
    });

    it('sees changes made by another process once its cache entry expires', async () => {
      const reg = new DeviceRegistry(t().db, { cacheTtlMs: 0 });
      const other = new DeviceRegistry(t().db);
      await other.add(input('ttl-1'));
      expect((await reg.authenticate('ttl-1', `${SECRET}-ttl-1`)).ok).toBe(true);
      await other.setDisabled('ttl-1', true);
      expect(await reg.authenticate('ttl-1', `${SECRET}-ttl-1`)).toEqual({ ok: false, reason: 'disabled' });
    });

    it('gives the pipeline device info, also for a disabled device', async () => {
      const reg = new DeviceRegistry(t().db);
      await reg.add(input('info-1', { region: 'apac' }));
      await reg.setDisabled('info-1', true);
      expect(await reg.deviceInfo('info-1')).toMatchObject({ id: 'info-1', region: 'apac' });
      expect(await reg.deviceInfo('missing')).toBeNull();
    });
  });

  describe('presence and counts', () => {
    it('records connects and disconnects, ignoring events older than the last one', async () => {
      const reg = new DeviceRegistry(t().db);
      await reg.add(input('s-1'));
      const t1 = new Date('2025-05-01T10:00:00.000Z');
      await reg.markSeen('s-1', true, t1);
      expect(await reg.get('s-1')).toMatchObject({ online: true, lastSeenAt: t1.toISOString() });
      // A disconnect from before the connect arrives late: the device stays online.
      await reg.markSeen('s-1', false, new Date('2025-05-01T09:59:00.000Z'));
      expect(await reg.get('s-1')).toMatchObject({ online: true, lastSeenAt: t1.toISOString() });
      const t2 = new Date('2025-05-01T11:00:00.000Z');
      await reg.markSeen('s-1', false, t2);
      expect(await reg.get('s-1')).toMatchObject({ online: false, lastSeenAt: t2.toISOString() });
      await expect(reg.markSeen('unknown', true, t2)).resolves.toBeUndefined();
    });

    it('writes presence updates arriving together as one statement, latest event per device winning', async () => {
      const admin = new DeviceRegistry(t().db);
      for (let i = 0; i < 3; i++) await admin.add(input(`b-${i}`));
      const c = counting(t().db);
      const reg = new DeviceRegistry(c.db);
      const at = (s: number) => new Date(Date.UTC(2025, 4, 1, 12, 0, s));
      await Promise.all([
        reg.markSeen('b-0', true, at(1)),
        reg.markSeen('b-0', false, at(3)),
        reg.markSeen('b-0', true, at(2)), // older than the disconnect before it
        reg.markSeen('b-1', true, at(5)),
        reg.markSeen('b-2', false, at(4)),
        reg.markSeen('b-2', true, at(4)), // same instant: the later call wins
        reg.markSeen('ghost', true, at(9)),
      ]);
      expect(c.count()).toBe(1);
      expect(await admin.get('b-0')).toMatchObject({ online: false, lastSeenAt: at(3).toISOString() });
      expect(await admin.get('b-1')).toMatchObject({ online: true, lastSeenAt: at(5).toISOString() });
      expect(await admin.get('b-2')).toMatchObject({ online: true, lastSeenAt: at(4).toISOString() });
    });

    it('counts total, online and disabled devices', async () => {
      const reg = new DeviceRegistry(t().db);
      expect(await reg.counts()).toEqual({ total: 0, online: 0, disabled: 0 });
      for (let i = 0; i < 5; i++) await reg.add(input(`n-${i}`));
      const now = new Date();
      await reg.markSeen('n-0', true, now);
      await reg.markSeen('n-1', true, now);
      await reg.markSeen('n-2', true, now);
      await reg.markSeen('n-2', false, new Date(now.getTime() + 1));
      await reg.setDisabled('n-4', true);
      expect(await reg.counts()).toEqual({ total: 5, online: 2, disabled: 1 });
    });
  });
});
