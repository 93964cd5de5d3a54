/**
 * Telemetry decoding has a hand-written fast check in front of the zod schema.
 * Side by side on valid payloads and on every way one can break: the fast check
 * must never accept what the schema refuses, and must hand back the same samples.
 */
import { describe, expect, it } from 'vitest';
import { telemetryBatch, telemetrySample } from '../../src/contract/index.js';
import { decodePayload } from '../../src/ingest/decode.js';

const NOW = Date.UTC(2026, 5, 1);
const good = { ts: NOW - 1_000, seq: 7, metrics: { compressor_temp: 71.5, mode: 'cool', fan_on: true } };

function mutate(f: (s: Record<string, unknown>) => void): unknown {
  const s = structuredClone(good) as Record<string, unknown>;
  f(s);
  return s;
}
const manyMetrics = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`m${i}`, i]));

const cases: Array<[string, unknown]> = [
  ['valid sample', good],
  ['valid batch', { batch: [good, { ...good, seq: 8 }] }],
  ['64 metrics', mutate((s) => (s.metrics = manyMetrics(64)))],
  ['65 metrics', mutate((s) => (s.metrics = manyMetrics(65)))],
  ['empty metrics', mutate((s) => (s.metrics = {}))],
  ['metrics is an array', mutate((s) => (s.metrics = [1, 2]))],
  ['metrics is null', mutate((s) => (s.metrics = null))],
  ['extra key', mutate((s) => (s.extra = 1))],
  ['missing seq', mutate((s) => delete s.seq)],
  ['missing ts', mutate((s) => delete s.ts)],
  ['fractional ts', mutate((s) => (s.ts = NOW + 0.5))],
  ['ts before 2000', mutate((s) => (s.ts = 946_684_799_999))],
  ['ts at 2000-01-01', mutate((s) => (s.ts = 946_684_800_000))],
  ['ts as string', mutate((s) => (s.ts = String(NOW)))],
  ['ts beyond safe integers', mutate((s) => (s.ts = 2 ** 60))],
  ['negative seq', mutate((s) => (s.seq = -1))],
  ['seq zero', mutate((s) => (s.seq = 0))],
  ['fractional seq', mutate((s) => (s.seq = 1.5))],
  ['seq beyond safe integers', mutate((s) => (s.seq = 2 ** 53))],
  ['upper-case metric name', mutate((s) => (s.metrics = { Temp: 1 }))],
  ['metric name with a dash', mutate((s) => (s.metrics = { 'a-b': 1 }))],
  ['64-char metric name', mutate((s) => (s.metrics = { [`a${'b'.repeat(63)}`]: 1 }))],
  ['63-char metric name', mutate((s) => (s.metrics = { [`a${'b'.repeat(62)}`]: 1 }))],
  ['__proto__ metric', JSON.parse(`{"ts":${NOW},"seq":1,"metrics":{"__proto__":1}}`)],
  ['null value', mutate((s) => (s.metrics = { a: null }))],
  ['object value', mutate((s) => (s.metrics = { a: { b: 1 } }))],
  ['array value', mutate((s) => (s.metrics = { a: [1] }))],
  ['64-char string value', mutate((s) => (s.metrics = { a: 'x'.repeat(64) }))],
  ['65-char string value', mutate((s) => (s.metrics = { a: 'x'.repeat(65) }))],
  ['empty batch', { batch: [] }],
  ['batch with one bad item', { batch: [good, { ...good, seq: -1 }] }],
  ['batch with an extra key', { batch: [good], device: 'x' }],
  ['batch is an object', { batch: good }],
  ['batch of 10,001', { batch: Array.from({ length: 10_001 }, (_, i) => ({ ...good, seq: i })) }],
  ['top-level array', [good]],
  ['top-level null', null],
  ['top-level number', 42],
];

describe('telemetry decoding: fast check beside the schema', () => {
  it.each(cases)('%s', (_name, json) => {
    const result = decodePayload('telemetry', Buffer.from(JSON.stringify(json)), NOW, 300_000);
    const roundTripped = JSON.parse(JSON.stringify(json)) as unknown;
    const isBatch = typeof roundTripped === 'object' && roundTripped !== null && 'batch' in roundTripped;
    const schema = isBatch ? telemetryBatch.safeParse(roundTripped) : telemetrySample.safeParse(roundTripped);
    expect(result.ok).toBe(schema.success);
    if (result.ok && schema.success) {
      const samples = 'batch' in schema.data ? schema.data.batch : [schema.data];
      expect(result.value).toEqual({ kind: 'telemetry', samples });
    }
    if (!result.ok) expect(result.reason).toBe('schema_violation');
  });

  it('refuses a sample dated beyond the allowed skew on the fast path too', () => {
    const result = decodePayload(
      'telemetry',
      Buffer.from(JSON.stringify({ ...good, ts: NOW + 301_000 })),
      NOW,
      300_000,
    );
    expect(result).toMatchObject({ ok: false, reason: 'future_timestamp' });
  });
});
