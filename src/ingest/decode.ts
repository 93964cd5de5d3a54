/** Turns a payload into a validated contract object, or a reason it cannot be one. */
import type { z } from 'zod';
import {
  type DevicePublishKind,
  type FaultEvent,
  faultBatch,
  faultEvent,
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
