/**
 * The `tickets:` section of the configuration. It lives beside the code that
 * reads it; src/config/schema.ts mounts it. Every default is here, so a bridge
 * without a `tickets:` key gets working tickets with the documented priority
 * formula, SLA targets and fleet threshold (see docs/tickets.md).
 */
import cron from 'node-cron';
import { z } from 'zod';
import { CATEGORIES, type SEVERITIES } from '../rules/schema.js';

export const PRIORITIES = ['P1', 'P2', 'P3', 'P4'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Topics a receiver can subscribe to: ticket changes, and the two notification channels. */
export const RECEIVER_TOPICS = ['tickets', 'on_call', 'team_lead'] as const;
export type ReceiverTopic = (typeof RECEIVER_TOPICS)[number];

const score = z.number().min(1).max(5);
const weight = z.number().min(0).max(1);
const minutes = z.number().int().min(1);
const oneOrMany = <T extends z.ZodType>(item: T) => z.union([item, z.array(item).min(1)]);

/**
 * Words that make a fault a safety fault whatever the rule says. Latin words match as whole
 * words in any case ("fire" matches "Fire!", not "fired" or "firmware"); CJK terms match anywhere.
 */
export const DEFAULT_SAFETY_KEYWORDS = [
  'smoke',
  'smoking',
  'fire',
  'flame',
  'burn',
  'burning',
  'burnt',
  'burned',
  'electric shock',
  'shock hazard',
  'spark',
  'sparks',
  'sparking',
  'injury',
  '冒烟',
  '起火',
  '着火',
  '烧焦',
  '触电',
  '漏电',
];

const routeSchema = z.strictObject({
  match: z
    .strictObject({
      category: oneOrMany(z.enum(CATEGORIES)).optional(),
      model: oneOrMany(z.string().min(1)).optional().describe('model glob(s), e.g. "AC-*"'),
      region: oneOrMany(z.string().min(1)).optional(),
    })
    .describe('every key given must match; an empty match matches everything'),
  team: z.string().min(1).max(64),
});

const slaTarget = (responseMinutes: number, resolutionMinutes: number) =>
  z
    .strictObject({
      responseMinutes: minutes.default(responseMinutes).describe('until acknowledged'),
      resolutionMinutes: minutes.default(resolutionMinutes).describe('until resolved'),
    })
    .prefault({});

const receiverSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits and _ . -, at most 64')
    .describe('shown in the delivery log; changing it orphans pending deliveries'),
  url: z.string().url().describe('POST target'),
  secret: z.string().min(16, 'webhook secrets must be at least 16 characters').describe('HMAC-SHA256 key'),
  topics: z
    .array(z.enum(RECEIVER_TOPICS))
    .min(1)
    .default(['tickets'])
    .describe('tickets: every ticket change; on_call: pages; team_lead: SLA escalations'),
  events: z
    .array(z.string().min(1))
    .optional()
    .describe('only these ticket event kinds (e.g. ticket.opened, status.changed); default all'),
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
});

export const ticketsConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('open tickets from rule events'),
    defaultTeam: z.string().min(1).max(64).default('service-desk'),
    routing: z.array(routeSchema).default([]).describe('first match decides the team'),
    reopenWindowMinutes: z
      .number()
      .int()
      .min(0)
      .default(1_440)
      .describe('a recurrence this soon after resolution reopens the ticket; later, a new linked one opens'),
    priority: z
      .strictObject({
        weights: z
          .strictObject({
            customers: weight.default(0.3),
            severity: weight.default(0.4),
            urgency: weight.default(0.3),
          })
          .prefault({})
          .refine(
            (w) => Math.abs(w.customers + w.severity + w.urgency - 1) < 1e-9,
            'weights must add up to 1',
          ),
        bands: z
          .strictObject({
            P1: score.default(4),
            P2: score.default(3),
            P3: score.default(2),
          })
          .prefault({})
          .refine((b) => b.P1 > b.P2 && b.P2 > b.P3, 'band thresholds must fall from P1 to P3')
          .describe('lowest score of each band; below P3 is P4'),
        severity: z
          .strictObject({
            info: score.default(1),
            minor: score.default(2),
            major: score.default(4),
            critical: score.default(5),
          } satisfies Record<(typeof SEVERITIES)[number], z.ZodType>)
          .prefault({})
          .describe('severity -> 1..5'),
        urgency: z
          .strictObject({
            hardware_fault: score.default(4),
            performance: score.default(3),
            service_complaint: score.default(3),
            usability: score.default(2),
            feature_request: score.default(1),
          } satisfies Record<(typeof CATEGORIES)[number], z.ZodType>)
          .prefault({})
          .describe('category -> 1..5'),
        customers: z
          .array(z.number().int().min(1))
          .length(4)
          .default([2, 10, 50, 200])
          .refine((c) => c.every((v, i) => i === 0 || v > c[i - 1]!), 'must rise')
          .describe('fewest affected customers for scores 2, 3, 4 and 5 (one customer scores 1)'),
        safetyKeywords: z.array(z.string().min(1)).default(DEFAULT_SAFETY_KEYWORDS),
      })
      .prefault({}),
    sla: z
      .strictObject({
        P1: slaTarget(30, 240),
        P2: slaTarget(240, 1_440),
        P3: slaTarget(1_440, 4_320),
        P4: slaTarget(2_880, 10_080),
      })
      .prefault({}),
    checkSchedule: z
      .string()
      .default('* * * * *')
      .refine((s) => cron.validate(s), 'not a cron expression')
      .describe('node-cron schedule of the SLA and fleet-incident checks'),
    fleet: z
      .strictObject({
        enabled: z.boolean().default(true),
        threshold: z.number().int().min(2).default(20).describe('devices firing the same rule'),
        windowMinutes: minutes.default(60),
        scopes: z
          .array(z.enum(['model', 'batch']))
          .min(1)
          .default(['model', 'batch'])
          .describe('group devices by model, by production batch, or both'),
        team: z.string().min(1).max(64).default('hardware'),
      })
      .prefault({}),
    receivers: z
      .array(receiverSchema)
      .default([])
      .refine((list) => new Set(list.map((r) => r.name)).size === list.length, 'receiver names must differ'),
    delivery: z
      .strictObject({
        maxAttempts: z.number().int().min(1).max(100).default(10).describe('then the delivery is dead'),
        initialBackoffMs: z.number().int().min(10).default(5_000),
        maxBackoffMs: z.number().int().min(10).default(600_000),
        pollMs: z.number().int().min(10).default(1_000).describe('how often due retries are looked for'),
      })
      .prefault({}),
  })
  .prefault({});

export type TicketsConfig = z.infer<typeof ticketsConfigSchema>;
export type TicketsConfigInput = z.input<typeof ticketsConfigSchema>;
export type ReceiverConfig = TicketsConfig['receivers'][number];

/** Defaults, for tests and tools that build a service without a whole config. */
export function ticketsConfig(input: TicketsConfigInput = {}): TicketsConfig {
  return ticketsConfigSchema.parse(input);
}
