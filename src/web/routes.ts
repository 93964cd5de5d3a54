/**
 * The API the service desk page needs beyond the ticket API: who the token
 * belongs to (so the page can hide what the role may not do), and the queue and
 * trend reads in desk.ts. Every role may call them; they only read.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ROLES, type Role } from '../config/schema.js';
import type { Queryable } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';
import { errorResponses } from '../http/errors.js';
import { STATUSES } from '../tickets/model.js';
import { deskFacets, deskQueue, deskTrend, QUEUE_MAX_LIMIT } from './desk.js';

const ALL: readonly Role[] = ROLES;
const tags = ['service desk'];

const bool = z
  .enum(['true', 'false'])
  .transform((v) => v === 'true')
  .optional();

export const queueQuery = z.object({
  status: z
    .string()
    .max(256)
    .transform((s) => s.split(',').map((v) => v.trim()))
    .pipe(z.array(z.enum(STATUSES)).min(1))
    .optional()
    .describe(`comma-separated: ${STATUSES.join(', ')}; default: every unresolved status`),
  team: z.string().min(1).max(64).optional(),
  model: z.string().min(1).max(128).optional(),
  rule: z.string().min(1).max(128).optional().describe('rule id'),
  region: z.string().min(1).max(64).optional(),
  breached: bool.describe('true: only tickets that missed an SLA target'),
  q: z.string().max(128).optional().describe('device id prefix, or words of the title'),
  offset: z.coerce.number().int().min(0).max(1_000_000).optional(),
  limit: z.coerce.number().int().min(1).max(QUEUE_MAX_LIMIT).optional().describe('default 100'),
});

const queueItem = z.object({
  id: z.string(),
  title: z.string(),
  status: z.enum(STATUSES),
  priority: z.string(),
  severity: z.string(),
  safety: z.boolean(),
  team: z.string(),
  ruleId: z.string(),
  code: z.string().nullable(),
  device: z.object({ id: z.string(), model: z.string(), region: z.string().nullable() }),
  assignee: z.string().nullable(),
  occurrences: z.number().int(),
  openedAt: z.string(),
  updatedAt: z.string(),
  breached: z.boolean(),
  sla: z.object({
    target: z.enum(['response', 'resolution']).nullable(),
    dueAt: z.string().nullable(),
    leftMs: z.number().nullable(),
    paused: z.boolean(),
  }),
});

const queuePage = z.object({
  items: z.array(queueItem),
  total: z.number().int(),
  offset: z.number().int(),
  limit: z.number().int(),
  counts: z.record(z.string(), z.number().int()),
  at: z.string(),
});

const facets = z.object({
  team: z.array(z.string()),
  model: z.array(z.string()),
  rule: z.array(z.string()),
  region: z.array(z.string()),
});

const trendQuery = z.object({
  hours: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 90)
    .optional()
    .describe('how far back; up to 48 gives hourly buckets, more gives days (default 336: 14 days)'),
  tz: z.coerce
    .number()
    .int()
    .min(-14 * 60)
    .max(14 * 60)
    .optional()
    .describe("the browser's Date#getTimezoneOffset(), so days start at local midnight"),
});

const trend = z.object({
  bucketMs: z.number().int(),
  buckets: z.array(z.number()),
  byRule: z.record(z.string(), z.array(z.number().int())),
  byModel: z.record(z.string(), z.array(z.number().int())),
});

export interface DeskRouteDeps {
  db: Queryable;
  now?: () => number;
}

export function deskRoutes(deps: DeskRouteDeps) {
  const now = deps.now ?? Date.now;
  return async function deskPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();

    app.get(
      '/api/v1/me',
      {
        config: { roles: ALL },
        schema: {
          summary: 'Who this token is: its name and role',
          description: 'Lets a client show only what the role may do; the API enforces roles anyway.',
          tags,
          response: {
            200: z.object({ name: z.string(), role: z.enum(ROLES) }),
            ...errorResponses,
          },
        },
      },
      async (request) => {
        const p = request.principal;
        if (!p) throw new FaultlineError('FL_INTERNAL', 'no principal on an authenticated route');
        return { name: p.name, role: p.role };
      },
    );

    app.get(
      '/api/v1/desk/queue',
      {
        config: { roles: ALL },
        schema: {
          summary: 'The service desk queue: tickets by priority, then SLA time left',
          description:
            'Unresolved tickets unless `status` says otherwise, P1 first and, within a priority, the ticket ' +
            'closest to (or furthest past) its running SLA target first; paused clocks count the time left ' +
            'when the wait began. Also the count per status for the other filters.',
          tags,
          querystring: queueQuery,
          response: { 200: queuePage, ...errorResponses },
        },
      },
      async (request) => deskQueue(deps.db, request.query, now()),
    );

    app.get(
      '/api/v1/desk/facets',
      {
        config: { roles: ALL },
        schema: {
          summary: 'The teams, models, rules and regions tickets have, for the queue filters',
          tags,
          response: { 200: facets, ...errorResponses },
        },
      },
      async () => deskFacets(deps.db),
    );

    app.get(
      '/api/v1/desk/trend',
      {
        config: { roles: ALL },
        schema: {
          summary: 'Tickets opened over time, by rule and by model',
          tags,
          querystring: trendQuery,
          response: { 200: trend, ...errorResponses },
        },
      },
      async (request) =>
        deskTrend(
          deps.db,
          { hours: request.query.hours ?? 14 * 24, tzOffsetMinutes: request.query.tz ?? 0 },
          now(),
        ),
    );
  };
}
