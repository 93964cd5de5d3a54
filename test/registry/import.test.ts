import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DeviceRegistry } from '../../src/registry/devices.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';

const HEADER = 'id,model,firmware,owner_id,owner_locale,region,batch,secret';

function secretFor(id: string): string {
  return `s3cr3t-${id}-padding-xyz`;
}

function row(
  id: string,
  extra: Partial<
    Record<'model' | 'firmware' | 'owner' | 'locale' | 'region' | 'batch' | 'secret', string>
  > = {},
): string {
  return [
    id,
    extra.model ?? 'WM-200',
    extra.firmware ?? '1.0.0',
    extra.owner ?? `owner-${id}`,
    extra.locale ?? 'en',
    extra.region ?? 'eu',
    extra.batch ?? 'B1',
    extra.secret ?? secretFor(id),
  ].join(',');
}

function csv(rows: string[], header = HEADER): string {
  return `${[header, ...rows].join('\n')}\n`;
}

function ids(n: number, prefix = 'imp'): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);
}

async function importError(reg: DeviceRegistry, input: Parameters<DeviceRegistry['importCsv']>[0]) {
  return reg.importCsv(input).then(
    () => {
      throw new Error('expected the import to be refused');
    },
    (e: unknown) =>
      e as {
        code: string;
        message: string;
        details: { errors: Array<{ line: number; message: string }>; errorCount: number };
      },
  );
}

describeBackends('device CSV import', (backend) => {
  const t = freshDbPerTest(backend);

  it('imports a valid file of 1,000 rows', async () => {
    const reg = new DeviceRegistry(t().db);
    const all = ids(1000);
    const progress: number[] = [];
    const result = await reg.importCsv(csv(all.map((id) => row(id))), {
      onProgress: (n) => progress.push(n),
    });
    expect(result).toEqual({ imported: 1000, errors: [] });
    expect(progress).toEqual([1000]);
    expect(await reg.counts()).toEqual({ total: 1000, online: 0, disabled: 0 });
    expect(await reg.get('imp-00999')).toMatchObject({
      model: 'WM-200',
      firmware: '1.0.0',
      ownerId: 'owner-imp-00999',
      ownerLocale: 'en',
      region: 'eu',
      batch: 'B1',
    });
    expect((await reg.authenticate('imp-00500', secretFor('imp-00500'))).ok).toBe(true);
    expect(await reg.authenticate('imp-00500', secretFor('imp-00501'))).toEqual({
      ok: false,
      reason: 'bad_secret',
    });
  });

  it('salts every imported secret differently, even equal ones', async () => {
    const { db } = t();
    const reg = new DeviceRegistry(db);
    const same = 'the-same-secret-for-all-three';
    await reg.importCsv(csv(['e-1', 'e-2', 'e-3'].map((id) => row(id, { secret: same }))));
    const { rows } = await db.query<{ h: string }>('SELECT secret_hash AS h FROM devices');
    const salts = new Set(rows.map((r) => r.h.split('$')[1]));
    expect(salts.size).toBe(3);
    for (const id of ['e-1', 'e-2', 'e-3']) expect((await reg.authenticate(id, same)).ok).toBe(true);
  });

  it('inserts in chunks and reports progress after each', async () => {
    const reg = new DeviceRegistry(t().db, { importChunkSize: 300 });
    const progress: number[] = [];
    await reg.importCsv(csv(ids(1000).map((id) => row(id))), { onProgress: (n) => progress.push(n) });
    expect(progress).toEqual([300, 600, 900, 1000]);
    expect((await reg.counts()).total).toBe(1000);
  });

  it('imports nothing when one row is bad, and names its line', async () => {
    const reg = new DeviceRegistry(t().db);
    const rows = ids(20).map((id) => row(id));
    rows[5] = row('imp-bad', { secret: 'too-short' }); // header is line 1, so the 6th row is line 7
    const err = await importError(reg, csv(rows));
    expect(err.code).toBe('FL_IMPORT_INVALID');
    expect(err.details.errors).toEqual([
      { line: 7, message: expect.stringMatching(/^secret: .*at least 16/) },
    ]);
    expect(err.details.errorCount).toBe(1);
    expect(err.message).toMatch(/line 7/);
    expect(err.message).not.toContain('too-short');
    expect((await reg.counts()).total).toBe(0);
  });

  it('reports the first 100 errors by line and counts them all', async () => {
    const reg = new DeviceRegistry(t().db);
    const rows = ids(300).map((id, i) => (i % 2 ? row(id, { locale: 'not a locale' }) : row(id)));
    const err = await importError(reg, csv(rows));
    expect(err.details.errorCount).toBe(150);
    expect(err.details.errors).toHaveLength(100);
    expect(err.details.errors.map((e) => e.line)).toEqual(Array.from({ length: 100 }, (_, i) => 3 + 2 * i));
    expect((await reg.counts()).total).toBe(0);
  });

  it('refuses ids that already exist, and ids repeated in the file', async () => {
    const reg = new DeviceRegistry(t().db);
    await reg.add({ id: 'imp-00003', model: 'old', secret: secretFor('x') });
    const rows = ids(6).map((id) => row(id));
    rows.push(row('imp-00001'));
    const err = await importError(reg, csv(rows));
    expect(err.details.errors).toEqual([
      { line: 5, message: 'device imp-00003 already exists' },
      { line: 8, message: 'duplicate id imp-00001 (first on line 3)' },
    ]);
    expect((await reg.counts()).total).toBe(1);
    expect((await reg.get('imp-00003'))?.model).toBe('old');
  });

  it('refuses a valid file whose ids collide with registered devices, listing each, importing nothing', async () => {
    const reg = new DeviceRegistry(t().db, { importChunkSize: 1000 });
    await reg.add({ id: 'imp-00010', model: 'old', secret: secretFor('x') });
    await reg.add({ id: 'imp-02400', model: 'old', secret: secretFor('y') });
    const err = await importError(reg, csv(ids(2500).map((id) => row(id))));
    expect(err.details).toEqual({
      errorCount: 2,
      errors: [
        { line: 12, message: 'device imp-00010 already exists' },
        { line: 2402, message: 'device imp-02400 already exists' },
      ],
    });
    expect(await reg.counts()).toMatchObject({ total: 2 });
    expect((await reg.get('imp-00010'))?.model).toBe('old');
    expect(await reg.get('imp-00011')).toBeNull();
  });

  it('reads quoting, CRLF, a BOM, blank lines, camelCase headers in any order and empty optional fields', async () => {
    const reg = new DeviceRegistry(t().db);
    const text =
      '\uFEFFsecret,id,model,ownerLocale,firmware\r\n' +
      `${secretFor('q-1')},q-1,"Washer, ""Pro"" 9kg",zh-CN,\r\n` +
      '\r\n' +
      `"${secretFor('q-2')}",q-2,Dryer,,2.1\r\n`;
    expect((await reg.importCsv(text)).imported).toBe(2);
    expect(await reg.get('q-1')).toMatchObject({
      model: 'Washer, "Pro" 9kg',
      ownerLocale: 'zh-CN',
      firmware: null,
    });
    expect(await reg.get('q-2')).toMatchObject({
      model: 'Dryer',
      ownerLocale: null,
      firmware: '2.1',
      ownerId: null,
    });
    expect((await reg.authenticate('q-2', secretFor('q-2'))).ok).toBe(true);
  });

  it('counts lines the way an editor shows them, across quoted line breaks', async () => {
    const reg = new DeviceRegistry(t().db);
    const text = csv([
      row('m-1'),
      `m-2,"two\nlines",1.0,o,en,eu,B1,${secretFor('m-2')}`, // lines 3-4, refused: control character
      row('m-3'),
      row('m-4', { region: '' }).replace(/,B1,/, ',B1,extra,'), // line 6: one field too many
    ]);
    const err = await importError(reg, text);
    expect(err.details.errors).toEqual([
      { line: 3, message: expect.stringMatching(/^model: .*control characters/) },
      { line: 6, message: 'expected 8 fields, found 9' },
    ]);
  });

  it('refuses a bad header on line 1', async () => {
    const reg = new DeviceRegistry(t().db);
    const missing = await importError(
      reg,
      csv([row('h-1')], 'id,model,firmware,owner_id,owner_locale,region,batch'),
    );
    expect(missing.details.errors).toEqual([
      { line: 1, message: expect.stringContaining('missing column "secret"') },
    ]);
    const unknown = await importError(reg, csv([`${row('h-1')},x`], `${HEADER},colour`));
    expect(unknown.details.errors).toEqual([
      { line: 1, message: expect.stringContaining('unknown column "colour"') },
    ]);
    const empty = await importError(reg, '');
    expect(empty.code).toBe('FL_IMPORT_INVALID');
  });

  it('refuses a file with an unclosed quote', async () => {
    const reg = new DeviceRegistry(t().db);
    const err = await importError(
      reg,
      `${csv([row('u-1')])}u-2,"unclosed,1.0,o,en,eu,B1,${secretFor('u-2')}\n`,
    );
    expect(err.details.errors).toEqual([
      { line: expect.any(Number), message: expect.stringMatching(/unreadable CSV/) },
    ]);
    expect((await reg.counts()).total).toBe(0);
  });

  it('reads a stream whose chunks split rows', async () => {
    const reg = new DeviceRegistry(t().db);
    const text = csv(ids(50, 'st').map((id) => row(id)));
    const chunks: Buffer[] = [];
    for (let i = 0; i < text.length; i += 37) chunks.push(Buffer.from(text.slice(i, i + 37)));
    expect((await reg.importCsv(Readable.from(chunks))).imported).toBe(50);
    expect((await reg.counts()).total).toBe(50);
  });

  describe('after an import', () => {
    it('authenticates imported devices and lists them', async () => {
      const reg = new DeviceRegistry(t().db);
      await reg.importCsv(csv(ids(3, 'after').map((id) => row(id))));
      expect((await reg.list()).items.map((d) => d.id)).toEqual([
        'after-00000',
        'after-00001',
        'after-00002',
      ]);
      expect((await reg.authenticate('after-00002', secretFor('after-00002'))).ok).toBe(true);
    });
  });
});
