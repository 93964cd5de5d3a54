/**
 * The one configuration schema. Every default lives here, so an empty file (or
 * no file) gives a bridge that runs on embedded defaults: Aedes, PGlite, no InfluxDB.
 */
import { z } from 'zod';
import { DEVICE_LIMITS } from '../contract/limits.js';
import { guidesConfigSchema, pushConfigSchema } from '../push/config.js';
import { ticketsConfigSchema } from '../tickets/config.js';

const port = z.number().int().min(0).max(65_535);
const duration = z.number().int().min(0);

export const ROLES = ['admin', 'engineer', 'staff'] as const;
export type Role = (typeof ROLES)[number];

const tlsSchema = z.strictObject({
  port: port.default(8883).describe('MQTT over TLS port'),
  cert: z.string().describe('path to the PEM certificate chain'),
  key: z.string().describe('path to the PEM private key'),
  ca: z.string().optional().describe('path to a CA bundle; enables client certificates when set'),
});

const limitsSchema = z.strictObject({
  maxPacketBytes: z.number().int().min(1024).max(268_435_455).default(DEVICE_LIMITS.maxPacketBytes),
  maxConnections: z.number().int().min(1).default(100_000),
  messagesPerSecond: z
    .number()
    .positive()
    .default(DEVICE_LIMITS.messagesPerSecond)
    .describe('sustained per-device publish rate'),
  burst: z.number().int().min(1).default(DEVICE_LIMITS.burst).describe('per-device token bucket size'),
});

const externalSchema = z.strictObject({
  url: z.string().url().describe('mqtt://, mqtts://, ws:// or wss:// URL of the existing broker'),
  username: z.string().optional(),
  password: z.string().optional(),
  clientId: z.string().optional(),
  group: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default('faultline')
    .describe('shared subscription group'),
  qos: z.union([z.literal(0), z.literal(1)]).default(1),
  connections: z
    .number()
    .int()
    .min(1)
    .max(64)
    .default(4)
    .describe('parallel shared-subscription consumers; MQTT.js acks one message at a time per connection'),
});

const mqttSchema = z.strictObject({
  mode: z.enum(['embedded', 'external']).default('embedded'),
  host: z.string().default('0.0.0.0'),
  port: port.default(1883),
  wsPort: port.nullable().default(8083).describe('MQTT over WebSocket; null disables it'),
  tls: tlsSchema.optional(),
  limits: limitsSchema.prefault({}),
  allowAnonymous: z
    .boolean()
    .default(false)
    .describe('development only: accept any client without a credential'),
  external: externalSchema.optional(),
});

const tokenSchema = z.strictObject({
  name: z.string().min(1),
  token: z.string().min(16, 'tokens must be at least 16 characters'),
  role: z.enum(ROLES),
});

const httpSchema = z.strictObject({
  host: z.string().default('0.0.0.0'),
  port: port.default(8080),
  adminToken: z.string().min(16, 'the admin token must be at least 16 characters').optional(),
  tokens: z.array(tokenSchema).default([]),
});

const ingestSchema = z
  .strictObject({
    maxFutureSkewMs: duration
      .default(300_000)
      .describe('samples further ahead of server time are dead-lettered'),
    dedupWindow: z
      .number()
      .int()
      .min(16)
      .max(1_000_000)
      .default(256)
      .describe(
        'recent sequence numbers remembered per device to drop QoS 1 redeliveries; covers a ' +
          "device's in-flight window on reconnect (~24 bytes each, held for every device)",
      ),
    walGroupCommitMs: duration.max(100).default(2),
    walSegmentBytes: z
      .number()
      .int()
      .min(65_536)
      .default(64 * 1024 * 1024),
    maxQueue: z
      .number()
      .int()
      .min(100)
      .default(50_000)
      .describe('pipeline depth at which clients are paused'),
    walMaxBytes: z
      .number()
      .int()
      .min(1024 * 1024)
      .default(1024 * 1024 * 1024)
      .describe(
        'bound on the write-ahead log; when a consumer (InfluxDB, database) falls this far behind, ingest pauses',
      ),
  })
  .superRefine((ingest, ctx) => {
    // The log frees space a whole segment at a time, so a bound under two segments could never be left.
    if (ingest.walMaxBytes < 2 * ingest.walSegmentBytes)
      ctx.addIssue({
        code: 'custom',
        path: ['walMaxBytes'],
        message: `must be at least twice ingest.walSegmentBytes (${2 * ingest.walSegmentBytes})`,
      });
  });

const influxSchema = z
  .strictObject({
    url: z
      .string()
      .url()
      .optional()
      .describe('base URL of InfluxDB 1.x, 2.x or 3.x; unset disables telemetry writing and the history API'),
    api: z
      .enum(['v1', 'v2'])
      .default('v1')
      .describe('v1: POST /write?db= (1.x, 2.x compat, 3.x); v2: POST /api/v2/write with org, bucket, token'),
    database: z
      .string()
      .min(1)
      .optional()
      .describe(
        'v1: database written and read (default faultline); v2: database name for InfluxQL reads (default: the bucket)',
      ),
    retentionPolicy: z.string().min(1).optional().describe('v1 only; default: the database default'),
    org: z.string().min(1).optional().describe('v2 only'),
    bucket: z.string().min(1).optional().describe('v2 only'),
    token: z.string().min(1).optional().describe('API token (2.x, 3.x); sent as Authorization: Token'),
    username: z.string().min(1).optional().describe('1.x user, when auth is enabled'),
    password: z.string().optional(),
    createDatabase: z
      .boolean()
      .default(true)
      .describe('v1 only: CREATE DATABASE at start (a no-op when it exists; turn off without the privilege)'),
    batchSize: z.number().int().min(1).max(100_000).default(5_000).describe('points per write request'),
    flushIntervalMs: duration
      .min(10)
      .max(60_000)
      .default(1_000)
      .describe('longest a point waits for a batch to fill'),
    maxInFlight: z.number().int().min(1).max(16).default(2).describe('write requests in flight at once'),
    timeoutMs: duration.min(100).default(10_000).describe('per write or query request'),
    maxRetryDelayMs: duration
      .min(10)
      .default(30_000)
      .describe('cap of the exponential backoff between retries'),
    writeStatus: z
      .boolean()
      .default(true)
      .describe('also write online/offline changes as the status measurement'),
    maxSeriesPoints: z
      .number()
      .int()
      .min(10)
      .max(100_000)
      .default(2_000)
      .describe('history API: most points per metric; a finer step is coarsened to fit'),
  })
  .superRefine((influx, ctx) => {
    if (!influx.url || influx.api !== 'v2') return;
    for (const key of ['org', 'bucket', 'token'] as const) {
      if (!influx[key]) ctx.addIssue({ code: 'custom', path: [key], message: `required when api is v2` });
    }
  });

const rulesSchema = z.strictObject({
  paths: z
    .array(z.string())
    .min(1)
    .default(['rules'])
    .describe('rule files or directories (*.yaml, not *.test.yaml)'),
  watch: z
    .boolean()
    .default(true)
    .describe('hot-reload on change; a broken change is refused and the old rules keep running'),
});

export const configSchema = z.strictObject({
  dataDir: z.string().default('./.faultline-data'),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  mqtt: mqttSchema.prefault({}),
  http: httpSchema.prefault({}),
  database: z
    .strictObject({
      url: z
        .string()
        .optional()
        .describe('postgres:// URL; without it an embedded PGlite lives in dataDir/db'),
    })
    .prefault({}),
  ingest: ingestSchema.prefault({}),
  rules: rulesSchema.prefault({}),
  influx: influxSchema.prefault({}),
  tickets: ticketsConfigSchema,
  guides: guidesConfigSchema,
  push: pushConfigSchema,
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
