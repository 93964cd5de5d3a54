/** Turns a payload into a validated contract object, or a reason it cannot be one. */
import type { z } from 'zod';
import {
  type DevicePublishKind,
  type FaultEvent,
  faultBatch,
  faultEvent,
  MAX_BATCH_ITEMS,
  METRIC_NAME_PATTERN,
  MIN_DEVICE_TS,
  type RejectReason,
  type StatusPayload,
  statusPayload,
  type TelemetrySample,
  telemetryBatch,
  telemetrySample,
} from '../contract/index.js';

export type Decoded =
  | { kind: 'telemetry'; samples: TelemetrySample[] }
  | { kind: 'faults'; faults: FaultEvent[] }
  | { kind: 'status'; status: StatusPayload };

export type DecodeResult =
  | { ok: true; value: Decoded }
  | { ok: false; reason: RejectReason; message: string };

export function decodePayload(
  kind: DevicePublishKind,
  payload: Buffer,
  now: number,
  maxFutureSkewMs: number,
): DecodeResult {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: 'malformed_json', message: `payload is not JSON: ${(err as Error).message}` };
  }
  const latest = now + maxFutureSkewMs;
  if (kind === 'telemetry') {
    const quick = quickTelemetry(json);
    if (quick) {
      const future = quick.find((s) => s.ts > latest);
      if (future) return futureDated(future.ts, now);
      return { ok: true, value: { kind, samples: quick } };
    }
    // Choosing the schema by shape (rather than a union) lets the error name the bad field.
    const parsed = isBatch(json) ? telemetryBatch.safeParse(json) : telemetrySample.safeParse(json);
    if (!parsed.success) return schemaViolation(parsed.error);
    const samples = 'batch' in parsed.data ? parsed.data.batch : [parsed.data];
    const future = samples.find((s) => s.ts > latest);
    if (future) return futureDated(future.ts, now);
    return { ok: true, value: { kind, samples } };
  }
  if (kind === 'faults') {
    const parsed = isBatch(json) ? faultBatch.safeParse(json) : faultEvent.safeParse(json);
    if (!parsed.success) return schemaViolation(parsed.error);
    const faults = 'batch' in parsed.data ? parsed.data.batch : [parsed.data];
    const future = faults.find((f) => f.ts > latest);
    if (future) return futureDated(future.ts, now);
    return { ok: true, value: { kind, faults } };
  }
  const parsed = statusPayload.safeParse(json);
  if (!parsed.success) return schemaViolation(parsed.error);
  if (parsed.data.ts !== undefined && parsed.data.ts > latest) return futureDated(parsed.data.ts, now);
  return { ok: true, value: { kind, status: parsed.data } };
}

/**
 * The telemetry schema checked by hand: on the ingest hot path zod's parse (which
 * copies every object) cost more CPU than everything else in decoding. It accepts
 * only what the schema accepts and returns null for anything else, so a refusal
 * is always explained by zod's own message (test/ingest/decode.test.ts holds the
 * two side by side).
 */
function quickTelemetry(json: unknown): TelemetrySample[] | null {
  if (!isPlainObject(json)) return null;
  const batch = (json as { batch?: unknown }).batch;
  if (batch === undefined) return quickSample(json) ? [json as TelemetrySample] : null;
  if (!Array.isArray(batch) || batch.length === 0 || batch.length > MAX_BATCH_ITEMS) return null;
  for (const k in json) if (k !== 'batch') return null;
  for (const item of batch) if (!quickSample(item)) return null;
  return batch as TelemetrySample[];
}

function quickSample(x: unknown): boolean {
  if (!isPlainObject(x)) return false;
  let keys = 0;
  for (const k in x) {
    if (k !== 'ts' && k !== 'seq' && k !== 'metrics') return false;
    keys++;
  }
  const { ts, seq, metrics } = x as { ts?: unknown; seq?: unknown; metrics?: unknown };
  if (keys !== 3 || !Number.isSafeInteger(ts) || (ts as number) < MIN_DEVICE_TS) return false;
  if (!Number.isSafeInteger(seq) || (seq as number) < 0) return false;
  if (!isPlainObject(metrics)) return false;
  let n = 0;
  for (const name in metrics) {
    if (++n > 64 || !METRIC_NAME_PATTERN.test(name)) return false;
    const v = (metrics as Record<string, unknown>)[name];
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return false;
    } else if (typeof v === 'string') {
      if (v.length > 64) return false;
    } else if (typeof v !== 'boolean') return false;
  }
  return n > 0;
}

/** What JSON.parse makes of {...}: not an array, not null, no inherited keys to trip over. */
function isPlainObject(x: unknown): x is object {
  return (
    typeof x === 'object' && x !== null && !Array.isArray(x) && Object.getPrototypeOf(x) === Object.prototype
  );
}

function isBatch(json: unknown): boolean {
  return typeof json === 'object' && json !== null && 'batch' in json;
}

function schemaViolation(error: z.ZodError): DecodeResult {
  const first = error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  const more = error.issues.length > 5 ? ` (+${error.issues.length - 5} more)` : '';
  return { ok: false, reason: 'schema_violation', message: first.join('; ') + more };
}

function futureDated(ts: number, now: number): DecodeResult {
  return {
    ok: false,
    reason: 'future_timestamp',
    message: `timestamp ${new Date(ts).toISOString()} is ${Math.round((ts - now) / 1000)} s ahead of server time`,
  };
}
