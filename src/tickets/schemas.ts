/**
 * Request and response schemas of the ticket API. Responses list every field,
 * like src/http/schemas.ts: the serializer drops anything not named here.
 */
import { z } from 'zod';
import { CATEGORIES, SEVERITIES } from '../rules/schema.js';
import { PRIORITIES } from './config.js';
import { EVENT_KINDS, STATUSES, WAITING_ON } from './model.js';

const iso = z.string().describe('ISO 8601');
const isoOrNull = iso.nullable();
const id = z.string().regex(/^\d{1,19}$/, 'a numeric id');
const limit = z.coerce.number().int().min(1).max(500).optional().describe('page size (default 50)');
const cursor = z.string().min(1).max(512).optional().describe('nextCursor of the previous page');
const bool = z
  .enum(['true', 'false'])
  .transform((v) => v === 'true')
  .optional();
/** "a,b,c" or one value; each must be one of `values`. */
const listOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z
    .string()
    .max(256)
    .transform((s) => s.split(',').map((v) => v.trim()))
    .pipe(z.array(z.enum(values)).min(1))
    .optional();

export const idParams = z.object({ id });

export const ticketListQuery = z.object({
  status: listOf(STATUSES).describe(`comma-separated: ${STATUSES.join(', ')}`),
  priority: listOf(PRIORITIES).describe('comma-separated: P1, P2, P3, P4'),
  team: z.string().min(1).max(64).optional(),
  model: z.string().min(1).max(128).optional(),
  rule: z.string().min(1).max(128).optional().describe('rule id'),
  region: z.string().min(1).max(64).optional(),
  deviceId: z.string().min(1).max(128).optional(),
  assignee: z.string().min(1).max(128).optional(),
  breached: bool.describe('true: only tickets that missed an SLA target; false: only those that did not'),
  open: bool.describe('true: neither resolved nor closed; false: resolved or closed'),
  limit,
  cursor,
});

export const ticket = z.object({
  id: z.string(),
  fingerprint: z.string().describe('stable key of the problem: rule and device, or device and fault code'),
  status: z.enum(STATUSES),
  title: z.string(),
  description: z.string(),
  ruleId: z.string(),
  ruleVersion: z.string(),
  code: z.string().nullable(),
  incidentId: z.string().describe("the rule engine's id of the latest episode"),
  device: z.object({
    id: z.string(),
    model: z.string(),
    firmware: z.string().nullable(),
    batch: z.string().nullable(),
    region: z.string().nullable(),
  }),
  owner: z.object({ id: z.string().nullable(), locale: z.string().nullable() }),
  severity: z.enum(SEVERITIES),
  category: z.enum(CATEGORIES),
  safety: z.boolean(),
  labels: z.record(z.string(), z.string()),
  team: z.string(),
  priority: z.enum(PRIORITIES),
  priorityScore: z.number(),
  autoClose: z.boolean(),
  assignee: z.string().nullable(),
  occurrences: z.number().int(),
  stale: z.boolean().describe('every occurrence so far was old data: recorded, never paged'),
  cycle: z.number().int().describe('times reopened'),
  waitingOn: z.enum(WAITING_ON).nullable(),
  previousTicketId: z.string().nullable(),
  openedAt: iso,
  lastFiredAt: iso,
  acknowledgedAt: isoOrNull,
  recoveredAt: isoOrNull,
  resolvedAt: isoOrNull,
  closedAt: isoOrNull,
  reopenedAt: isoOrNull,
  updatedAt: iso,
  sla: z.object({
    responseDueAt: iso,
    resolutionDueAt: iso,
    responseBreachedAt: isoOrNull,
    resolutionBreachedAt: isoOrNull,
    pausedMs: z.number().int().describe('time spent waiting, when the SLA clock stood still'),
    responseMs: z.number().int().nullable(),
    resolutionMs: z.number().int().nullable(),
  }),
});

export const ticketPage = z.object({ items: z.array(ticket), nextCursor: z.string().nullable() });

const timelineEntry = z.object({
  id: z.string(),
  at: iso,
  actor: z.string().describe('token name, rule-engine or system'),
  kind: z.enum(EVENT_KINDS),
  data: z.record(z.string(), z.unknown()),
});

const metricValue = z.union([z.number(), z.string(), z.boolean()]);

const occurrence = z.object({
  id: z.string(),
  incidentId: z.string(),
  kind: z.enum(['fired', 'updated']),
  reason: z.string().nullable(),
  at: iso,
  deviceTime: iso,
  severity: z.enum(SEVERITIES),
  metric: z.string().nullable(),
  value: z.unknown(),
  threshold: z.unknown(),
  stale: z.boolean(),
  late: z.boolean(),
  evidence: z.object({
    samples: z.array(z.object({ ts: z.number(), metrics: z.record(z.string(), metricValue) })),
    faults: z.array(z.object({ ts: z.number(), code: z.string() })),
    windows: z.array(
      z.object({
        metric: z.string(),
        fn: z.string(),
        windowMs: z.number(),
        value: z.number().nullable(),
        samples: z.number(),
      }),
    ),
    truncated: z.boolean(),
  }),
});

export const ticketDetail = ticket.extend({
  timeline: z.array(timelineEntry).describe('every change, oldest first (the newest 500)'),
  occurrenceList: z
    .array(occurrence)
    .describe('occurrences with their evidence, oldest first (the newest 500)'),
  links: z.array(
    z.object({ kind: z.string(), ref: z.string(), at: iso, data: z.record(z.string(), z.unknown()) }),
  ),
  comments: z.array(z.object({ id: z.string(), at: iso, actor: z.string(), text: z.string() })),
  pauses: z.array(z.object({ startedAt: iso, endedAt: isoOrNull, reason: z.string().nullable() })),
});

export const statusBody = z.strictObject({
  status: z.enum(STATUSES),
  reason: z.string().min(1).max(2_000).optional(),
  waitingOn: z.enum(WAITING_ON).optional().describe('with status waiting: on the owner, on parts, or other'),
});

export const assignBody = z.strictObject({
  assignee: z.string().min(1).max(128).nullable().describe('null unassigns'),
});

export const commentBody = z.strictObject({ text: z.string().min(1).max(10_000) });

export const reopenBody = z.strictObject({ reason: z.string().min(1).max(2_000).optional() }).optional();

export const incident = z.object({
  id: z.string(),
  status: z.enum(['open', 'closed']),
  ruleId: z.string(),
  code: z.string().nullable(),
  scope: z.enum(['model', 'batch']),
  scopeValue: z.string(),
  model: z.string(),
  title: z.string(),
  severity: z.enum(SEVERITIES),
  category: z.enum(CATEGORIES),
  safety: z.boolean(),
  team: z.string(),
  priority: z.enum(PRIORITIES),
  priorityScore: z.number(),
  affectedDevices: z.number().int(),
  affectedCustomers: z.number().int().describe('distinct owners'),
  openedAt: iso,
  lastLinkedAt: iso,
  closedAt: isoOrNull,
  updatedAt: iso,
});

export const incidentListQuery = z.object({
  status: z.enum(['open', 'closed']).optional(),
  rule: z.string().min(1).max(128).optional(),
  model: z.string().min(1).max(128).optional(),
  limit,
  cursor,
});

export const incidentPage = z.object({ items: z.array(incident), nextCursor: z.string().nullable() });

export const incidentDetail = incident.extend({ tickets: z.array(ticket) });

const counts = z.record(z.string(), z.number().int());

export const statsQuery = z.object({
  since: z.iso
    .datetime({ offset: true })
    .optional()
    .describe('window start for medians and rates (default: 30 days ago)'),
});

export const ticketStats = z.object({
  open: z.object({
    total: z.number().int(),
    byRule: counts,
    byModel: counts,
    byTeam: counts,
    byPriority: counts,
  }),
  window: z.object({
    since: iso,
    opened: z.number().int(),
    medianResponseMs: z.number().nullable(),
    medianResolutionMs: z.number().nullable(),
    slaBreachRate: z.number().nullable(),
    resolutionRate: z.number().nullable(),
  }),
  incidentsOpen: z.number().int(),
});
