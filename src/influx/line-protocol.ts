/**
 * InfluxDB line protocol for Faultline's three measurements. Built here (not by a
 * client library) so the exact bytes sent are the bytes quarantined, and so one
 * encoder serves 1.x, 2.x, 3.x and the v2 client alike.
 *
 * Timestamps are the device's, in milliseconds (precision=ms). A point is keyed by
 * measurement + tags + timestamp: a sample written twice (a WAL duplicate, a
 * retried batch) overwrites itself, which is what makes at-least-once delivery
 * look exactly-once to a reader.
 */
import type { MetricValue } from '../contract/index.js';

export const MEASUREMENTS = { telemetry: 'telemetry', faults: 'faults', status: 'status' } as const;

/** Tag keys, in the sorted order InfluxDB prefers (it sorts them anyway, at a cost). */
export const TAG_KEYS = ['batch', 'device', 'firmware', 'model', 'region'] as const;

/**
 * Field names InfluxDB cannot store as given: `time` is silently dropped by 1.x, and a
 * field named like a tag is refused by 3.x and ambiguous in InfluxQL on 1.x/2.x.
 * Such metrics get a trailing underscore; readers go through fieldName() too.
 */
const RESERVED_FIELDS = new Set<string>(['time', ...TAG_KEYS]);

export function fieldName(metric: string): string {
  return RESERVED_FIELDS.has(metric) ? `${metric}_` : metric;
}

const fieldKeys = new Map<string, string>();

/** A metric's field key, escaped; cached, since a fleet reports the same few dozen metrics all day. */
function fieldKey(metric: string): string {
  let key = fieldKeys.get(metric);
  if (key === undefined) {
    key = escapeTag(fieldName(metric));
    if (fieldKeys.size < 10_000) fieldKeys.set(metric, key);
  }
  return key;
}

/** Measurement names: commas and spaces escaped. */
export function escapeMeasurement(name: string): string {
  return name.replace(/[, ]/g, (c) => `\\${c}`);
}

/**
 * Tag keys and values, and field keys: commas, equals signs and spaces escaped.
 * Line breaks cannot appear in a tag at all, so they become spaces. A backslash
 * right before a comma, equals sign, space or the end has no spelling in 1.x (it
 * would escape the separator after it), so such backslashes are dropped; any
 * other backslash is kept as it is.
 */
export function escapeTag(value: string): string {
  return value
    .replace(/[\r\n]+/g, ' ')
    .replace(/\\+(?=[,= ]|$)/g, '')
    .replace(/[,= ]/g, (c) => `\\${c}`);
}

/** String field values: double-quoted, with quotes and backslashes escaped. */
export function quoteString(value: string): string {
  // Most values (mode=cool, dock=charging) need no escaping; skipping the regex is measurable per point.
  if (!value.includes('"') && !value.includes('\\')) return `"${value}"`;
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** Numbers are always floats (no `i` suffix): a metric that is 20 now and 20.5 later keeps one type. */
export function fieldValue(value: MetricValue): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '0' : String(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return quoteString(value);
}

/**
 * The escaped tag set of a device, with its leading comma: `,batch=B7,device=ac-1,model=AC-9000`.
 * Null and empty values are omitted (line protocol has no empty tag value).
 */
export interface TagSource {
  id: string;
  model: string | null;
  firmware: string | null;
  region: string | null;
  batch: string | null;
}

export function deviceTags(device: TagSource): string {
  const values: Record<(typeof TAG_KEYS)[number], string | null> = {
    batch: device.batch,
    device: device.id,
    firmware: device.firmware,
    model: device.model,
    region: device.region,
  };
  let out = '';
  for (const key of TAG_KEYS) {
    const value = values[key];
    if (value === null || value === undefined) continue;
    const escaped = escapeTag(value);
    if (escaped !== '') out += `,${key}=${escaped}`;
  }
  return out;
}

/** One telemetry point, or null when no metric survives (cannot happen for a validated sample). */
export function telemetryLine(tags: string, ts: number, metrics: Record<string, MetricValue>): string | null {
  let fields = '';
  for (const name in metrics) {
    const value = metrics[name];
    if (value === undefined) continue;
    if (typeof value === 'number' && !Number.isFinite(value)) continue;
    fields += `${fields === '' ? '' : ','}${fieldKey(name)}=${fieldValue(value)}`;
  }
  if (fields === '') return null;
  return `${MEASUREMENTS.telemetry}${tags} ${fields} ${Math.trunc(ts)}`;
}

export function faultLine(tags: string, ts: number, code: string, detail: string | undefined): string {
  const fields =
    detail === undefined
      ? `code=${quoteString(code)}`
      : `code=${quoteString(code)},detail=${quoteString(detail)}`;
  return `${MEASUREMENTS.faults}${tags} ${fields} ${Math.trunc(ts)}`;
}

export function statusLine(
  tags: string,
  ts: number,
  status: { state: string; reason?: string | undefined; firmware?: string | undefined },
): string {
  let fields = `state=${quoteString(status.state)}`;
  if (status.reason !== undefined) fields += `,reason=${quoteString(status.reason)}`;
  // Named apart from the firmware tag (the registry's value), see RESERVED_FIELDS.
  if (status.firmware !== undefined) fields += `,reported_firmware=${quoteString(status.firmware)}`;
  return `${MEASUREMENTS.status}${tags} ${fields} ${Math.trunc(ts)}`;
}
