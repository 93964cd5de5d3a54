/** The delivery log of the outbox: what went to which receiver, how often, and what came back. */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { FaultlineError } from '../errors/catalogue.js';
import { errorResponses } from '../http/errors.js';
import type { Outbox } from './outbox.js';

const iso = z.string().describe('ISO 8601');
const STATUSES = ['pending', 'delivered', 'dead'] as const;

const delivery = z.object({
  id: z.string(),
  messageId: z.string(),
  receiver: z.string(),
  topic: z.string().describe('tickets, on_call, team_lead, ...'),
  kind: z.string().describe('the event, e.g. ticket.opened'),
  key: z.string().describe('the Idempotency-Key sent'),
  status: z.enum(STATUSES),
  attempts: z.number().int(),
  nextAttemptAt: iso.nullable().describe('when pending: the next try'),
  lastAttemptAt: iso.nullable(),
  lastStatus: z.number().int().nullable(),
  lastError: z.string().nullable(),
  deliveredAt: iso.nullable(),
  createdAt: iso,
  attemptLog: z.array(
    z.object({
      at: iso,
      status: z.number().int().nullable(),
      error: z.string().nullable(),
      durationMs: z.number(),
    }),
  ),
});

const query = z.object({
  receiver: z.string().min(1).max(64).optional(),
  status: z.enum(STATUSES).optional(),
  topic: z.string().min(1).max(64).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  cursor: z.string().min(1).max(512).optional(),
});

export function webhookRoutes(outbox: Outbox) {
  return async function webhooksPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();

    app.get(
      '/api/v1/webhooks/deliveries',
      {
        config: { roles: ['admin', 'engineer'] },
        schema: {
          summary: 'Webhook delivery log',
          description: 'One row per message and receiver, newest first, with every attempt and its answer.',
          tags: ['webhooks'],
          querystring: query,
          response: {
            200: z.object({ items: z.array(delivery), nextCursor: z.string().nullable() }),
            ...errorResponses,
          },
        },
      },
      async (request) => outbox.list(request.query),
    );

    app.post(
      '/api/v1/webhooks/deliveries/:id/retry',
      {
        config: { roles: ['admin'] },
        schema: {
          summary: 'Retry a dead delivery',
          description: 'Makes it pending again with a fresh attempt budget; FL_CONFLICT unless it is dead.',
          tags: ['webhooks'],
          params: z.object({ id: z.string().regex(/^\d{1,19}$/) }),
          response: { 200: delivery, ...errorResponses },
        },
      },
      async (request) => {
        const found = await outbox.get(request.params.id);
        if (!found) throw new FaultlineError('FL_NOT_FOUND', `no delivery ${request.params.id}`);
        return outbox.retry(request.params.id);
      },
    );
  };
}
