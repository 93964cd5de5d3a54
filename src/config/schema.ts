/**
 * The one configuration schema. Every default lives here, so an empty file (or
 * no file) gives a bridge that runs on embedded defaults: Aedes, PGlite, no InfluxDB.
 */
import { z } from 'zod';

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
  maxPacketBytes: z.number().int().min(1024).max(268_435_455).default(262_144),
  maxConnections: z.number().int().min(1).default(100_000),
  messagesPerSecond: z.number().positive().default(50).describe('sustained per-device publish rate'),
  burst: z.number().int().min(1).default(2_000).describe('per-device token bucket size'),
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

const ingestSchema = z.strictObject({
  maxFutureSkewMs: duration
    .default(300_000)
    .describe('samples further ahead of server time are dead-lettered'),
  dedupWindow: z.number().int().min(16).max(1_000_000).default(4_096),
  walGroupCommitMs: duration.max(100).default(2),
  walSegmentBytes: z
    .number()
    .int()
    .min(65_536)
    .default(64 * 1024 * 1024),
  maxQueue: z.number().int().min(100).default(50_000).describe('pipeline depth at which clients are paused'),
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
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
