/**
 * JSON payload schemas of the device contract. Validated with zod on ingest and
 * used by firmware-sim to build messages, so both sides share one definition.
 */
import { z } from 'zod';

/** 2000-01-01T00:00:00Z: an earlier device time means the device clock was never set. */
export const MIN_DEVICE_TS = 946_684_800_000;
/** Device time: milliseconds since the Unix epoch (UTC), as an integer. */
export const deviceTimestamp = z
  .number()
  .int()
  .min(MIN_DEVICE_TS, 'timestamp before 2000-01-01: device clock not set')
  .describe('device time, ms since the Unix epoch');

/** Per-device message counter; a QoS 1 redelivery repeats it, which is how duplicates are found. */
export const sequenceNumber = z
  .number()
  .int()
  .min(0)
  .max(Number.MAX_SAFE_INTEGER)
  .describe('sequence number');

export const METRIC_NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
export const metricName = z.string().regex(METRIC_NAME_PATTERN, 'metric names are snake_case, 1-63 chars');
/** Numbers for measurements, booleans for switches, short strings for states such as mode=cool. */
export const metricValue = z.union([z.number().finite(), z.boolean(), z.string().max(64)]);
export type MetricValue = z.infer<typeof metricValue>;

export const telemetrySample = z.strictObject({
  ts: deviceTimestamp,
  seq: sequenceNumber,
  metrics: z
    .record(metricName, metricValue)
    .refine((m) => Object.keys(m).length > 0, 'metrics must not be empty')
    .refine((m) => Object.keys(m).length <= 64, 'at most 64 metrics per sample'),
});
export type TelemetrySample = z.infer<typeof telemetrySample>;

export const FAULT_CODE_PATTERN = /^[A-Za-z0-9_.-]{1,32}$/;
export const faultEvent = z.strictObject({
  ts: deviceTimestamp,
  seq: sequenceNumber,
  code: z.string().regex(FAULT_CODE_PATTERN, 'fault codes are 1-32 chars of A-Z a-z 0-9 _ . -'),
  detail: z.string().max(1024).optional(),
});
export type FaultEvent = z.infer<typeof faultEvent>;

/** Samples a device buffered while offline, uploaded in one message. */
export const MAX_BATCH_ITEMS = 10_000;
export const telemetryBatch = z.strictObject({
  batch: z.array(telemetrySample).min(1).max(MAX_BATCH_ITEMS),
});
export const faultBatch = z.strictObject({
  batch: z.array(faultEvent).min(1).max(MAX_BATCH_ITEMS),
});

export const telemetryPayload = z.union([telemetrySample, telemetryBatch]);
export const faultPayload = z.union([faultEvent, faultBatch]);

export const DEVICE_STATES = ['online', 'offline'] as const;
export const statusPayload = z.strictObject({
  state: z.enum(DEVICE_STATES),
  ts: deviceTimestamp.optional(),
  firmware: z.string().max(64).optional(),
  reason: z.string().max(256).optional(),
});
export type StatusPayload = z.infer<typeof statusPayload>;

/** What a device should set as its MQTT last will, so a dead connection is seen. */
export function lastWill(deviceId: string): { topic: string; payload: string; qos: 1; retain: true } {
  return {
    topic: `devices/${deviceId}/status`,
    payload: JSON.stringify({ state: 'offline', reason: 'connection lost' } satisfies StatusPayload),
    qos: 1,
    retain: true,
  };
}

/** Sent by Faultline on devices/{id}/errors when it refuses a message. */
export const deviceErrorPayload = z.strictObject({
  ts: z.number().int(),
  topic: z.string(),
  reason: z.string(),
  message: z.string(),
  deadLetterId: z.string().optional(),
});
export type DeviceErrorPayload = z.infer<typeof deviceErrorPayload>;

/** Reasons a message is refused; each is a label of faultline_messages_rejected_total. */
export const REJECT_REASONS = [
  'malformed_json',
  'schema_violation',
  'future_timestamp',
  'oversized_packet',
  'spoofed_topic',
  'unknown_device',
  'unknown_topic',
  'rate_limited',
  'duplicate',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];
