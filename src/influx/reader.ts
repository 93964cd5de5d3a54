/**
 * Reads history back with InfluxQL over /query, through node-influx: the one
 * read path that works on InfluxDB 1.x, on 2.x (v1 compatibility API, via a DBRP
 * mapping) and on 3.x. A token goes in an `Authorization: Token` header, a 1.x
 * user as Basic auth.
 */
import { InfluxDB as InfluxQL, type IResponse } from 'influx';
import type { Config } from '../config/schema.js';
import type { MetricValue } from '../contract/index.js';
import { fieldName, MEASUREMENTS, TAG_KEYS } from './line-protocol.js';
import { readDatabase } from './writer.js';

export type ReaderSettings = Config['influx'] & { url: string };

export interface SeriesQuery {
  device: string;
  metrics: readonly string[];
  from: number;
  to: number;
  stepMs: number;
}

export interface Series {
  metric: string;
  /** mean for numbers; last for strings and booleans, which have no mean. */
  aggregate: 'mean' | 'last';
  points: Array<[number, MetricValue]>;
}

export interface HistoryRow {
  ts: number;
  tags: Record<string, string>;
  fields: Record<string, MetricValue>;
}

type FieldKind = 'number' | 'other';

const FIELD_TYPES_TTL_MS = 60_000;
const PAGE_ROWS = 10_000;

export class InfluxReader {
  private readonly client: InfluxQL;
  readonly database: string;
  private fieldTypes: { at: number; kinds: Map<string, FieldKind> } | null = null;

  constructor(private readonly settings: ReaderSettings) {
    this.database = readDatabase(settings);
    const url = new URL(settings.url);
    const headers: Record<string, string> = settings.token
      ? { Authorization: `Token ${settings.token}` }
      : {};
    const noBackoff = { getDelay: () => 0, next: () => noBackoff, reset: () => noBackoff };
    this.client = new InfluxQL({
      hosts: [
        {
          host: url.hostname,
          port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
          protocol: url.protocol === 'https:' ? 'https' : 'http',
          path: url.pathname.replace(/\/+$/, ''),
          options: { headers },
        },
      ],
      database: this.database,
      // node-influx defaults to Basic root:root; null sends no Basic header at all, so a token header stands alone.
      username: (settings.token ? null : (settings.username ?? null)) as unknown as string,
      password: settings.password ?? '',
      // Its own retries and host backoff would hide an outage from the caller and keep timers alive.
      pool: { maxRetries: 0, requestTimeout: settings.timeoutMs, backoff: noBackoff },
    });
  }

  /** CREATE DATABASE (1.x; a no-op when it exists). */
  async createDatabase(): Promise<void> {
    await this.client.createDatabase(this.database);
  }

  /** Runs InfluxQL and returns the raw response, throwing on a statement error. */
  async query(q: string): Promise<IResponse> {
    const res = (await this.client.queryRaw(q, {
      precision: 'ms',
      ...(this.settings.retentionPolicy ? { retentionPolicy: this.settings.retentionPolicy } : {}),
    })) as IResponse & { error?: string };
    if (res.error) throw new Error(res.error);
    for (const r of res.results) if (r.error) throw new Error(r.error);
    return res;
  }

  /** One device's metrics, downsampled: one point per step that has data. */
  async series(q: SeriesQuery): Promise<Series[]> {
    const kinds = await this.telemetryFieldKinds();
    const where = `"device" = ${stringLiteral(q.device)} AND time >= ${q.from}ms AND time < ${q.to}ms`;
    const plan = q.metrics.map((metric) => {
      const aggregate: Series['aggregate'] = kinds.get(fieldName(metric)) === 'other' ? 'last' : 'mean';
      return { metric, aggregate };
    });
    const statements = plan.map(
      ({ metric, aggregate }) =>
        `SELECT ${aggregate}(${identifier(fieldName(metric))}) AS "v" FROM ${identifier(MEASUREMENTS.telemetry)} ` +
        `WHERE ${where} GROUP BY time(${q.stepMs}ms) fill(none)`,
    );
    const res = await this.query(statements.join('; '));
    return plan.map(({ metric, aggregate }, i) => {
      const values = res.results[i]?.series?.[0]?.values ?? [];
      return {
        metric,
        aggregate,
        points: values
          .filter((v) => v[1] !== null && v[1] !== undefined)
          .map((v) => [Number(v[0]), v[1] as MetricValue] as [number, MetricValue]),
      };
    });
  }

  /** Devices that have points, optionally of one model. */
  async devices(model?: string): Promise<string[]> {
    const found = new Set<string>();
    for (const measurement of [MEASUREMENTS.telemetry, MEASUREMENTS.faults]) {
      const res = await this.query(
        `SHOW TAG VALUES FROM ${identifier(measurement)} WITH KEY = "device"` +
          (model ? ` WHERE "model" = ${stringLiteral(model)}` : ''),
      );
      for (const s of res.results[0]?.series ?? []) for (const v of s.values ?? []) found.add(String(v[1]));
    }
    return [...found].sort();
  }

  /**
   * Every point of one device in [from, to), oldest first, paged by time so no response gets
   * large. Tag columns come back in `tags`, the rest (named as metrics again) in `fields`.
   */
  async *scan(
    measurement: string,
    device: string,
    from: number,
    to: number,
    /** Only these metrics (and the tags); rows with none of them are skipped. Default: every field. */
    metrics?: readonly string[],
  ): AsyncGenerator<HistoryRow[]> {
    const columns =
      metrics === undefined
        ? '*'
        : [...metrics.map(fieldName), ...TAG_KEYS].map((c) => identifier(c)).join(', ');
    let since = from;
    let seenAtSince = new Set<string>();
    for (;;) {
      const res = await this.query(
        `SELECT ${columns} FROM ${identifier(measurement)} WHERE "device" = ${stringLiteral(device)} ` +
          `AND time >= ${since}ms AND time < ${to}ms ORDER BY time ASC LIMIT ${PAGE_ROWS}`,
      );
      const series = res.results[0]?.series?.[0];
      const values = series?.values ?? [];
      if (!series || values.length === 0) return;
      const rows: HistoryRow[] = [];
      const last = Number(values[values.length - 1]![0]);
      const seenAtLast = new Set<string>();
      for (const v of values) {
        const row = toRow(series.columns, v);
        const key = JSON.stringify(row.tags);
        if (row.ts === since && seenAtSince.has(key)) continue;
        if (row.ts === last) seenAtLast.add(key);
        rows.push(row);
      }
      if (rows.length > 0) yield rows;
      if (values.length < PAGE_ROWS) return;
      if (last === since && rows.length === 0) {
        throw new Error(`more than ${PAGE_ROWS} series of ${device} share the timestamp ${last}`);
      }
      // Resume at the last timestamp (another series of the device may have a point there too).
      seenAtSince = last === since ? new Set([...seenAtSince, ...seenAtLast]) : seenAtLast;
      since = last;
    }
  }

  private async telemetryFieldKinds(): Promise<Map<string, FieldKind>> {
    const now = Date.now();
    if (this.fieldTypes && now - this.fieldTypes.at < FIELD_TYPES_TTL_MS) return this.fieldTypes.kinds;
    const res = await this.query(`SHOW FIELD KEYS FROM ${identifier(MEASUREMENTS.telemetry)}`);
    const kinds = new Map<string, FieldKind>();
    for (const s of res.results[0]?.series ?? []) {
      for (const [key, type] of s.values ?? []) {
        const kind: FieldKind =
          type === 'float' || type === 'integer' || type === 'unsigned' ? 'number' : 'other';
        // A field written with two types in different shards is listed twice; averaging needs only one number.
        if (kinds.get(String(key)) !== 'number') kinds.set(String(key), kind);
      }
    }
    this.fieldTypes = { at: now, kinds };
    return kinds;
  }
}

const TAGS = new Set<string>(TAG_KEYS);

function toRow(columns: string[], values: unknown[]): HistoryRow {
  const row: HistoryRow = { ts: Number(values[0]), tags: {}, fields: {} };
  for (let i = 1; i < columns.length; i++) {
    const column = columns[i]!;
    const value = values[i];
    if (value === null || value === undefined) continue;
    if (TAGS.has(column)) row.tags[column] = String(value);
    else row.fields[metricName(column)] = value as MetricValue;
  }
  return row;
}

/** Inverse of fieldName(): `time_` and `model_` are the metrics `time` and `model`. */
function metricName(field: string): string {
  if (field.endsWith('_')) {
    const base = field.slice(0, -1);
    if (fieldName(base) === field) return base;
  }
  return field;
}

/** An InfluxQL identifier, double-quoted. */
export function identifier(name: string): string {
  return `"${name.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** An InfluxQL string literal, single-quoted. */
export function stringLiteral(value: string): string {
  return `'${value.replace(/['\\]/g, (c) => `\\${c}`)}'`;
}
