/**
 * GET /api/v1/devices/:id/series: a device's metrics over a time range, downsampled
 * in InfluxDB (mean per step for numbers, last for strings and booleans). The step
 * defaults to one that gives about DEFAULT_POINTS points, and a step so fine that
 * a metric would exceed influx.maxSeriesPoints is coarsened (and says so), so no
 * request can pull a raw month of 1 Hz data through the API.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { METRIC_NAME_PATTERN } from '../contract/index.js';
import { FaultlineError } from '../errors/catalogue.js';
import type { DeviceInfo } from '../events/types.js';
import { errorResponses } from '../http/errors.js';
import { deviceIdParams } from '../http/schemas.js';
import { formatDuration, parseDuration } from '../rules/duration.js';
import type { InfluxReader } from './reader.js';

export const DISABLED_MESSAGE =
  'InfluxDB is not configured (set influx.url or FAULTLINE_INFLUX_URL): telemetry history is unavailable';

const DEFAULT_RANGE_MS = 24 * 3_600_000;
const DEFAULT_POINTS = 500;
const MAX_METRICS = 20;
const NICE_STEPS = [
  '1s',
  '5s',
  '10s',
  '15s',
  '30s',
  '1m',
  '2m',
  '5m',
  '10m',
  '15m',
  '30m',
  '1h',
  '2h',
  '3h',
  '6h',
  '12h',
  '1d',
  '2d',
  '7d',
  '30d',
].map(parseDuration);

const isoTime = z.iso.datetime({ offset: true }).transform((s) => Date.parse(s));

export const seriesQuery = z.object({
  metrics: z
    .string()
    .min(1)
    .transform((s) => [...new Set(s.split(',').map((m) => m.trim()))].filter((m) => m !== ''))
    .pipe(
      z
        .array(z.string().regex(METRIC_NAME_PATTERN, 'metric names are snake_case'))
        .min(1)
        .max(MAX_METRICS, `at most ${MAX_METRICS} metrics per request`),
    )
    .describe('comma-separated metric names, e.g. compressor_temp,compressor_freq'),
  from: isoTime.optional().describe('ISO 8601 start (inclusive); default: 24 h before `to`'),
  to: isoTime.optional().describe('ISO 8601 end (exclusive); default: now'),
  step: z
    .string()
    .transform((s, ctx) => {
      try {
        const ms = parseDuration(s);
        if (ms >= 1_000) return ms;
        ctx.addIssue({ code: 'custom', message: 'step must be at least 1s' });
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
      return z.NEVER;
    })
    .optional()
    .describe('bucket width such as 10s, 1m, 1h; default: chosen from the range'),
});

const seriesResponse = z.object({
  device: z.string(),
  from: z.string(),
  to: z.string(),
  step: z.string().describe('the step used'),
  stepMs: z.number().int(),
  stepAdjusted: z
    .boolean()
    .describe('true when the requested step was coarsened to stay within the point cap'),
  series: z.array(
    z.object({
      metric: z.string(),
      aggregate: z.enum(['mean', 'last']),
      points: z.array(z.tuple([z.number(), z.union([z.number(), z.boolean(), z.string()])])),
    }),
  ),
});

/** The step for a range: the requested one unless it gives more than maxPoints buckets. */
export function chooseStep(
  rangeMs: number,
  requested: number | undefined,
  maxPoints: number,
): { stepMs: number; adjusted: boolean } {
  const smallest = Math.ceil(rangeMs / maxPoints);
  if (requested !== undefined && requested >= smallest) return { stepMs: requested, adjusted: false };
  const wanted = Math.max(smallest, requested === undefined ? Math.ceil(rangeMs / DEFAULT_POINTS) : 0);
  const nice = NICE_STEPS.find((s) => s >= wanted) ?? Math.ceil(wanted / 1_000) * 1_000;
  return { stepMs: nice, adjusted: requested !== undefined };
}

export interface SeriesRouteDeps {
  /** Null when InfluxDB is not configured: the route then answers 503 FL_FEATURE_DISABLED. */
  reader: InfluxReader | null;
  deviceInfo(id: string): Promise<DeviceInfo | null>;
  maxPoints: number;
  now?: () => number;
}

export function influxRoutes(deps: SeriesRouteDeps) {
  const now = deps.now ?? Date.now;
  return async function influxPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();
    app.get(
      '/api/v1/devices/:id/series',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: "A device's telemetry over time, downsampled",
          description:
            'Reads InfluxDB with InfluxQL: mean per step for numeric metrics, last value for strings and ' +
            'booleans; steps without data are left out. 503 FL_FEATURE_DISABLED when InfluxDB is not configured.',
          tags: ['devices'],
          params: deviceIdParams,
          querystring: seriesQuery,
          response: { 200: seriesResponse, ...errorResponses },
        },
      },
      async (request) => {
        const reader = deps.reader;
        if (!reader) throw new FaultlineError('FL_FEATURE_DISABLED', DISABLED_MESSAGE);
        const { id } = request.params;
        const q = request.query;
        const to = q.to ?? now();
        const from = q.from ?? to - DEFAULT_RANGE_MS;
        if (!(from < to)) throw new FaultlineError('FL_VALIDATION', '`from` must be before `to`');
        if (!(await deps.deviceInfo(id))) throw new FaultlineError('FL_DEVICE_NOT_FOUND');
        const { stepMs, adjusted } = chooseStep(to - from, q.step, deps.maxPoints);
        let series: Awaited<ReturnType<InfluxReader['series']>>;
        try {
          series = await reader.series({ device: id, metrics: q.metrics, from, to, stepMs });
        } catch (err) {
          request.log.warn({ err }, 'InfluxDB history query failed');
          throw new FaultlineError('FL_DB_UNAVAILABLE', `InfluxDB query failed: ${(err as Error).message}`);
        }
        return {
          device: id,
          from: new Date(from).toISOString(),
          to: new Date(to).toISOString(),
          step: formatDuration(stepMs),
          stepMs,
          stepAdjusted: adjusted,
          series,
        };
      },
    );
  };
}
