import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, type Harness, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

const SECRET = 'device-secret-0123456789';

async function addDevice(body: Record<string, unknown>) {
  return h.app.inject({ method: 'POST', url: '/api/v1/devices', headers: auth('admin'), payload: body });
}

async function getJson(url: string, role: 'admin' | 'engineer' | 'staff' = 'staff') {
  const res = await h.app.inject({ method: 'GET', url, headers: auth(role) });
  return { status: res.statusCode, body: res.json(), raw: res.body };
}

describe('devices', () => {
  it('adds a device and returns it without its secret', async () => {
    const res = await addDevice({
      id: 'wm-0001',
      model: 'W-100',
      firmware: '1.2.0',
      ownerId: 'owner-1',
      ownerLocale: 'de-DE',
      region: 'eu',
      batch: 'b7',
      secret: SECRET,
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({
      id: 'wm-0001',
      model: 'W-100',
      firmware: '1.2.0',
      ownerId: 'owner-1',
      ownerLocale: 'de-DE',
      region: 'eu',
      batch: 'b7',
      disabled: false,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      lastSeenAt: null,
      online: false,
    });
    expect(res.body).not.toContain(SECRET);
    expect(res.body).not.toMatch(/secret|hash|sha256\$/i);

    const got = await getJson('/api/v1/devices/wm-0001');
    expect(got.status).toBe(200);
    expect(got.body).toEqual(res.json());
  });

  it('refuses a second device with the same id with 409 FL_DEVICE_EXISTS', async () => {
    await addDevice({ id: 'wm-dup', model: 'W-100', secret: SECRET });
    const res = await addDevice({ id: 'wm-dup', model: 'W-200', secret: SECRET });
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('FL_DEVICE_EXISTS');
  });

  it('answers an unknown id with 404 FL_DEVICE_NOT_FOUND', async () => {
    const got = await getJson('/api/v1/devices/nobody-here');
    expect(got.status).toBe(404);
    expect(got.body.error.code).toBe('FL_DEVICE_NOT_FOUND');
  });

  it('lists in pages and filters by model, owner and disabled', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await addDevice({
        id: `dw-${i}`,
        model: 'DW-9',
        ownerId: i < 2 ? 'owner-dw' : null,
        secret: SECRET,
      });
      expect(res.statusCode).toBe(201);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await getJson(`/api/v1/devices?model=DW-9&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.items.map((d: { id: string }) => d.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(['dw-0', 'dw-1', 'dw-2', 'dw-3', 'dw-4']);

    const owned = await getJson('/api/v1/devices?ownerId=owner-dw');
    expect(owned.body.items.map((d: { id: string }) => d.id)).toEqual(['dw-0', 'dw-1']);
    expect(owned.raw).not.toContain(SECRET);
  });

  it('disables and enables a device, and the list filter follows', async () => {
    await addDevice({ id: 'fr-1', model: 'FR-3', secret: SECRET });
    const off = await h.app.inject({
      method: 'POST',
      url: '/api/v1/devices/fr-1/disable',
      headers: auth('admin'),
    });
    expect(off.statusCode).toBe(200);
    expect(off.json()).toMatchObject({ id: 'fr-1', disabled: true });

    const disabled = await getJson('/api/v1/devices?model=FR-3&disabled=true');
    expect(disabled.body.items.map((d: { id: string }) => d.id)).toEqual(['fr-1']);
    const enabled = await getJson('/api/v1/devices?model=FR-3&disabled=false');
    expect(enabled.body.items).toEqual([]);

    const on = await h.app.inject({
      method: 'POST',
      url: '/api/v1/devices/fr-1/enable',
      headers: auth('admin'),
    });
    expect(on.statusCode).toBe(200);
    expect(on.json()).toMatchObject({ id: 'fr-1', disabled: false });
    expect((await getJson('/api/v1/devices/fr-1')).body.disabled).toBe(false);
  });

  it('answers disabling an unknown device with 404 FL_DEVICE_NOT_FOUND', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/api/v1/devices/ghost-1/disable',
      headers: auth('admin'),
    });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('FL_DEVICE_NOT_FOUND');
  });
});

describe('CSV import', () => {
  const csv = (lines: string[]) => `${lines.join('\n')}\n`;
  const post = (payload: string) =>
    h.app.inject({
      method: 'POST',
      url: '/api/v1/devices/import',
      headers: { ...auth('admin'), 'content-type': 'text/csv; charset=utf-8' },
      payload,
    });

  it('imports every row of a good file', async () => {
    const res = await post(
      csv([
        'id,model,owner_id,owner_locale,secret',
        `imp-1,OV-1,owner-9,fr,${SECRET}`,
        `imp-2,OV-1,,,${SECRET}`,
        `"imp-3","OV-1, rev B",owner-9,fr,${SECRET}`,
      ]),
    );
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ imported: 3 });
    const got = await getJson('/api/v1/devices/imp-3');
    expect(got.body).toMatchObject({
      id: 'imp-3',
      model: 'OV-1, rev B',
      ownerId: 'owner-9',
      ownerLocale: 'fr',
    });
  });

  it('refuses a file with a bad row with 400 FL_IMPORT_INVALID naming the line, and imports nothing', async () => {
    const res = await post(
      csv(['id,model,secret', `bad-1,OV-2,${SECRET}`, 'bad-2,OV-2,short', `bad-3,OV-2,${SECRET}`]),
    );
    expect(res.statusCode).toBe(400);
    const { error } = res.json();
    expect(error.code).toBe('FL_IMPORT_INVALID');
    expect(error.details.errors).toEqual([{ line: 3, message: expect.stringContaining('at least 16') }]);
    expect((await getJson('/api/v1/devices/bad-1')).status).toBe(404);
  });

  it('accepts a file larger than the 1 MiB JSON body limit', async () => {
    // Blank lines are skipped by the importer, so this is a large upload of one device.
    const big = `id,model,secret\n${'\n'.repeat(3 * 1024 * 1024)}big-1,OV-3,${SECRET}\n`;
    const res = await post(big);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ imported: 1 });
  });

  it('keeps the 1 MiB limit for JSON bodies', async () => {
    const res = await addDevice({ id: 'huge-1', model: 'X'.repeat(2 * 1024 * 1024), secret: SECRET });
    expect(res.statusCode).toBe(413);
    expect(res.json().error.code).toBe('FL_VALIDATION');
  });

  it('accepts CSV only on the import route', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/api/v1/devices',
      headers: { ...auth('admin'), 'content-type': 'text/csv' },
      payload: csv(['id,model,secret', `csv-1,OV-1,${SECRET}`]),
    });
    expect(res.statusCode).toBe(415);
    expect(res.json().error.code).toBe('FL_VALIDATION');
    expect((await getJson('/api/v1/devices/csv-1')).status).toBe(404);
  });
});

describe('stats and dead letters', () => {
  it('counts devices', async () => {
    const before = await getJson('/api/v1/stats/devices');
    await addDevice({ id: 'cnt-1', model: 'C-1', secret: SECRET });
    await addDevice({ id: 'cnt-2', model: 'C-1', secret: SECRET });
    await h.app.inject({ method: 'POST', url: '/api/v1/devices/cnt-2/disable', headers: auth('admin') });
    const after = await getJson('/api/v1/stats/devices');
    expect(after.status).toBe(200);
    expect(after.body).toEqual({
      total: before.body.total + 2,
      online: before.body.online,
      disabled: before.body.disabled + 1,
    });
    // Cross-checked with the registry, so the route is not just consistent with itself.
    expect(after.body).toEqual(await h.devices.counts());
  });

  it('lists dead letters newest first, filtered by reason and device, in pages', async () => {
    const base = Date.parse('2026-01-01T00:00:00Z');
    const letters = [
      { deviceId: 'dl-1', reason: 'malformed_json', payload: Buffer.from('{"t":') },
      { deviceId: 'dl-1', reason: 'schema_violation', payload: Buffer.from('{"t":"x"}') },
      { deviceId: 'dl-2', reason: 'malformed_json', payload: Buffer.from([0xff, 0xfe]) },
    ];
    for (const [i, l] of letters.entries()) {
      await h.deadLetters.add({
        ...l,
        topic: `devices/${l.deviceId}/telemetry`,
        message: `refused ${i}`,
        receivedAt: new Date(base + i * 1000),
      });
    }

    const all = await getJson('/api/v1/deadletters', 'engineer');
    expect(all.status).toBe(200);
    expect(all.body.items.map((d: { message: string }) => d.message)).toEqual([
      'refused 2',
      'refused 1',
      'refused 0',
    ]);
    expect(all.body.items[2]).toEqual({
      id: expect.any(String),
      receivedAt: '2026-01-01T00:00:00.000Z',
      deviceId: 'dl-1',
      topic: 'devices/dl-1/telemetry',
      reason: 'malformed_json',
      message: 'refused 0',
      payloadBase64: Buffer.from('{"t":').toString('base64'),
      payloadPreview: '{"t":',
      payloadBytes: 5,
    });

    const byReason = await getJson('/api/v1/deadletters?reason=malformed_json', 'admin');
    expect(byReason.body.items.map((d: { message: string }) => d.message)).toEqual([
      'refused 2',
      'refused 0',
    ]);
    const byDevice = await getJson('/api/v1/deadletters?deviceId=dl-1&limit=1', 'admin');
    expect(byDevice.body.items.map((d: { message: string }) => d.message)).toEqual(['refused 1']);
    const next = await getJson(
      `/api/v1/deadletters?deviceId=dl-1&limit=1&cursor=${byDevice.body.nextCursor}`,
      'admin',
    );
    expect(next.body.items.map((d: { message: string }) => d.message)).toEqual(['refused 0']);
    expect(next.body.nextCursor).toBeNull();
  });

  it('refuses a cursor it did not issue with 400 FL_VALIDATION', async () => {
    const res = await getJson('/api/v1/deadletters?cursor=bm9wZQ', 'admin');
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('FL_VALIDATION');
  });
});
