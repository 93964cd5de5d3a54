/**
 * The owner store on both backends, the Basic credential parser, and
 * `faultline owners add` with no bridge running (straight to the database).
 */
import { describe, expect, it } from 'vitest';
import { openDb } from '../../src/db/db.js';
import { silentLogger } from '../../src/log/logger.js';
import { parseOwnerBasic } from '../../src/owners/http-auth.js';
import { OwnerStore } from '../../src/owners/store.js';
import { runCli } from '../helpers/cli.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';
import { tempDir } from '../helpers/process.js';

const SECRET = 'an-owner-secret-0123456789';

describeBackends('owner store', (backend) => {
  const t = freshDbPerTest(backend);

  it('adds an owner with only what a channel needs, and never returns the secret or token', async () => {
    const owners = new OwnerStore(t().db, { now: () => Date.UTC(2026, 0, 5) });
    const o = await owners.add({
      id: 'o-1',
      secret: SECRET,
      locale: 'zh-CN',
      timezone: 'Asia/Shanghai',
      quietHours: '22:30-07:00',
      pushChannel: 'hms',
      pushToken: 'token-1',
    });
    expect(o).toEqual({
      id: 'o-1',
      locale: 'zh-CN',
      timezone: 'Asia/Shanghai',
      quietHours: '22:30-07:00',
      pushChannel: 'hms',
      hasPushToken: true,
      disabled: false,
      createdAt: '2026-01-05T00:00:00.000Z',
      updatedAt: null,
    });
    const { rows } = await t().db.query<{ secret_hash: string }>('SELECT secret_hash FROM owners');
    expect(rows[0]!.secret_hash).toMatch(/^sha256\$/);
    expect(rows[0]!.secret_hash).not.toContain(SECRET);
    await expect(owners.add({ id: 'o-1', secret: SECRET, locale: 'en' })).rejects.toMatchObject({
      code: 'FL_CONFLICT',
    });
    for (const bad of [
      { id: 'o 2', secret: SECRET, locale: 'en' },
      { id: 'o-2', secret: 'short', locale: 'en' },
      { id: 'o-2', secret: SECRET, locale: 'english please' },
      { id: 'o-2', secret: SECRET, locale: 'en', timezone: 'Mars/Olympus' },
      { id: 'o-2', secret: SECRET, locale: 'en', quietHours: '25:00-07:00' },
      { id: 'o-2', secret: SECRET, locale: 'en', phone: '555-0100' },
    ]) {
      await expect(owners.add(bad as never), JSON.stringify(bad)).rejects.toMatchObject({
        code: 'FL_VALIDATION',
      });
    }
  });

  it('authenticates: ok, a wrong secret, an unknown owner, a disabled one; a new secret replaces the old', async () => {
    const owners = new OwnerStore(t().db);
    await owners.add({ id: 'o-1', secret: SECRET, locale: 'en' });
    expect(await owners.authenticate('o-1', SECRET)).toBe('ok');
    expect(await owners.authenticate('o-1', `${SECRET}x`)).toBe('bad_secret');
    expect(await owners.authenticate('o-9', SECRET)).toBe('unknown_owner');
    await owners.update('o-1', { secret: 'a-rotated-secret-0123456789' });
    expect(await owners.authenticate('o-1', SECRET)).toBe('bad_secret');
    expect(await owners.authenticate('o-1', 'a-rotated-secret-0123456789')).toBe('ok');
    expect(await owners.update('o-1', { disabled: true, pushToken: null })).toMatchObject({
      disabled: true,
      hasPushToken: false,
    });
    expect(await owners.authenticate('o-1', 'a-rotated-secret-0123456789')).toBe('disabled');
    await expect(owners.update('o-9', { locale: 'en' })).rejects.toMatchObject({ code: 'FL_NOT_FOUND' });
  });

  it('imports in bulk, all or none, naming every bad entry; upsert updates existing owners', async () => {
    const owners = new OwnerStore(t().db);
    const rows = Array.from({ length: 2_000 }, (_, i) => ({
      id: `o-${i}`,
      secret: `secret-number-${i}-0123456789`,
      locale: i % 3 ? 'zh-CN' : 'en',
    }));
    expect(await owners.importMany(rows)).toEqual({ created: 2_000, updated: 0 });
    expect(await owners.authenticate('o-1999', 'secret-number-1999-0123456789')).toBe('ok');

    const refused = await owners
      .importMany([
        { id: 'new-1', secret: SECRET, locale: 'en' },
        { id: 'new-1', secret: SECRET, locale: 'en' },
        'nonsense',
      ])
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: 'FL_IMPORT_INVALID',
      details: {
        errorCount: 2,
        errors: [
          { index: 1, id: 'new-1', message: 'the same id appears earlier in this import' },
          { index: 2, message: expect.any(String) },
        ],
      },
    });
    expect(await owners.get('new-1')).toBeNull();

    const again = [
      { id: 'o-5', secret: 'a-new-secret-for-o5-0123', locale: 'en' },
      { id: 'new-2', secret: SECRET, locale: 'en' },
    ];
    await expect(owners.importMany(again)).rejects.toMatchObject({
      details: { errors: [{ index: 0, id: 'o-5', message: 'already exists (import with upsert)' }] },
    });
    expect(await owners.get('new-2')).toBeNull();
    expect(await owners.importMany(again, { upsert: true })).toEqual({ created: 1, updated: 1 });
    expect(await owners.authenticate('o-5', 'a-new-secret-for-o5-0123')).toBe('ok');
    expect((await owners.get('o-5'))?.updatedAt).not.toBeNull();
  });
});

describe('the owner credential over HTTP', () => {
  const basic = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;

  it('is Basic owner:<id>:<secret>, the same as the MQTT username and password', () => {
    expect(parseOwnerBasic(basic('owner:o-1:s3cret:with:colons'))).toEqual({
      ownerId: 'o-1',
      secret: 's3cret:with:colons',
    });
    expect(parseOwnerBasic(basic('o-1:s3cret'))).toEqual({ ownerId: 'o-1', secret: 's3cret' });
    expect(parseOwnerBasic('Bearer abc')).toBeNull();
    expect(parseOwnerBasic(undefined)).toBeNull();
    expect(parseOwnerBasic(basic('owner::nothing'))).toBeNull();
    expect(parseOwnerBasic(basic('owner:o/1:x'))).toBeNull();
  });
});

describe('faultline owners add', () => {
  it('writes to the database when no bridge is running', async () => {
    const dir = tempDir('owners-cli');
    try {
      const r = await runCli(
        [
          'owners',
          'add',
          '--id',
          'cli-1',
          '--secret',
          SECRET,
          '--locale',
          'en',
          '--timezone',
          'Europe/Berlin',
        ],
        {
          FAULTLINE_DATA_DIR: dir.path,
        },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('owner cli-1 registered (via database)');
      expect(JSON.parse(r.stdout)).toMatchObject({ id: 'cli-1', locale: 'en', timezone: 'Europe/Berlin' });
      const bad = await runCli(['owners', 'add', '--id', 'cli-2', '--secret', 'short', '--locale', 'en'], {
        FAULTLINE_DATA_DIR: dir.path,
      });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('FL_VALIDATION');
      const db = await openDb({ dataDir: dir.path, log: silentLogger() });
      try {
        expect(await new OwnerStore(db).authenticate('cli-1', SECRET)).toBe('ok');
        expect(await new OwnerStore(db).get('cli-2')).toBeNull();
      } finally {
        await db.close();
      }
    } finally {
      dir.remove();
    }
  }, 120_000);
});
