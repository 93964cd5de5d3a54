import { expect, it } from 'vitest';
import {
  type DeadLetterInput,
  DeadLetterStore,
  MAX_STORED_PAYLOAD_BYTES,
} from '../../src/deadletters/store.js';
import { describeBackends, freshDbPerTest } from '../helpers/db.js';

function letter(i: number, extra: Partial<DeadLetterInput> = {}): DeadLetterInput {
  return {
    deviceId: `dev-${i % 3}`,
    topic: `devices/dev-${i % 3}/telemetry`,
    reason: i % 2 ? 'malformed_json' : 'schema_violation',
    message: `refusal ${i}`,
    payload: Buffer.from(`{"n":${i}`),
    receivedAt: new Date(Date.UTC(2025, 0, 1, 0, 0, i)),
    ...extra,
  };
}

describeBackends('dead letter store', (backend) => {
  const t = freshDbPerTest(backend);

  it('stores a refused message and lists it with its payload', async () => {
    const store = new DeadLetterStore(t().db);
    const payload = Buffer.from([0x7b, 0x22, 0xff, 0x00, 0x7d]);
    const id = await store.add({
      deviceId: 'wm-1',
      topic: 'devices/wm-1/faults',
      reason: 'malformed_json',
      message: 'Unexpected token',
      payload,
      receivedAt: new Date('2025-02-03T04:05:06.789Z'),
    });
    expect(id).toMatch(/^\d+$/);
    const { items, nextCursor } = await store.list();
    expect(nextCursor).toBeNull();
    expect(items).toEqual([
      {
        id,
        receivedAt: '2025-02-03T04:05:06.789Z',
        deviceId: 'wm-1',
        topic: 'devices/wm-1/faults',
        reason: 'malformed_json',
        message: 'Unexpected token',
        payloadBase64: payload.toString('base64'),
        payloadPreview: '{"\uFFFD\u0000}',
        payloadBytes: 5,
      },
    ]);
    expect(await store.count()).toBe(1);
  });

  it('keeps messages from unknown senders (no device id)', async () => {
    const store = new DeadLetterStore(t().db);
    await store.add(letter(1, { deviceId: null, topic: 'nonsense/topic' }));
    expect((await store.list()).items[0]).toMatchObject({ deviceId: null, topic: 'nonsense/topic' });
  });

  it('lists newest first and pages with a cursor, also through equal timestamps', async () => {
    const store = new DeadLetterStore(t().db);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await store.add(letter(i)));
    // Three more at the same instant as the newest: the id breaks the tie.
    const same = new Date(Date.UTC(2025, 0, 1, 0, 0, 6));
    for (let i = 0; i < 3; i++) ids.push(await store.add(letter(100 + i, { receivedAt: same })));
    const expected = [ids[9], ids[8], ids[7], ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]];
    const seen: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await store.list({ limit: 3, cursor });
      seen.push(...page.items.map((d) => d.id));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(seen).toEqual(expected);
  });

  it('lists newest by reception time even when stored out of order', async () => {
    const store = new DeadLetterStore(t().db);
    const late = await store.add(letter(1, { receivedAt: new Date('2025-03-01T00:00:00Z') }));
    const early = await store.add(letter(2, { receivedAt: new Date('2025-01-01T00:00:00Z') }));
    expect((await store.list()).items.map((d) => d.id)).toEqual([late, early]);
  });

  it('filters by reason and by device, with paging', async () => {
    const store = new DeadLetterStore(t().db);
    for (let i = 0; i < 12; i++) await store.add(letter(i));
    const collect = async (q: { reason?: string; deviceId?: string }) => {
      const out: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.list({ ...q, limit: 2, cursor });
        out.push(...page.items.map((d) => d.message));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      return out;
    };
    expect(await collect({ reason: 'malformed_json' })).toEqual(
      [11, 9, 7, 5, 3, 1].map((i) => `refusal ${i}`),
    );
    expect(await collect({ deviceId: 'dev-0' })).toEqual([9, 6, 3, 0].map((i) => `refusal ${i}`));
    expect(await collect({ deviceId: 'dev-0', reason: 'schema_violation' })).toEqual(
      [6, 0].map((i) => `refusal ${i}`),
    );
  });

  it('stores at most 1 MiB of a payload and records its original size', async () => {
    const store = new DeadLetterStore(t().db);
    const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
    big.write('HEAD', 0);
    await store.add(letter(1, { payload: big }));
    const [item] = (await store.list()).items;
    expect(item!.payloadBytes).toBe(3 * 1024 * 1024);
    const stored = Buffer.from(item!.payloadBase64, 'base64');
    expect(stored.length).toBe(MAX_STORED_PAYLOAD_BYTES);
    expect(stored.equals(big.subarray(0, MAX_STORED_PAYLOAD_BYTES))).toBe(true);
    const { rows } = await t().db.query<{ n: number }>('SELECT octet_length(payload) AS n FROM dead_letters');
    expect(rows).toEqual([{ n: MAX_STORED_PAYLOAD_BYTES }]);
  });

  it('previews the first 200 characters as UTF-8', async () => {
    const store = new DeadLetterStore(t().db);
    const text = '温度'.repeat(150); // 300 characters, 3 bytes each
    await store.add(letter(1, { payload: Buffer.from(text) }));
    await store.add(letter(2, { payload: Buffer.alloc(0) }));
    const [empty, multi] = (await store.list()).items;
    expect(multi!.payloadPreview).toBe(text.slice(0, 200));
    expect(multi!.payloadBytes).toBe(900);
    expect(empty).toMatchObject({ payloadPreview: '', payloadBase64: '', payloadBytes: 0 });
  });

  it('refuses a bad limit or cursor with FL_VALIDATION', async () => {
    const store = new DeadLetterStore(t().db);
    await expect(store.list({ limit: 0 })).rejects.toMatchObject({ code: 'FL_VALIDATION' });
    await expect(store.list({ limit: 1001 })).rejects.toMatchObject({ code: 'FL_VALIDATION' });
    await expect(store.list({ cursor: 'garbage' })).rejects.toMatchObject({ code: 'FL_VALIDATION' });
  });

  it('counts and prunes by age', async () => {
    const store = new DeadLetterStore(t().db);
    for (let i = 0; i < 5; i++) await store.add(letter(i));
    expect(await store.count()).toBe(5);
    expect(await store.prune(new Date(Date.UTC(2025, 0, 1, 0, 0, 3)))).toBe(3);
    expect(await store.count()).toBe(2);
    expect((await store.list()).items.map((d) => d.message)).toEqual(['refusal 4', 'refusal 3']);
  });
});
