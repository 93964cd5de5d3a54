import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { DeadLetterStore } from '../../deadletters/store.js';
import { errorResponses } from '../errors.js';
import { deadLetterPage, deadLetterQuery } from '../schemas.js';

export function deadLettersRoutes(store: DeadLetterStore) {
  return async function deadLettersPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();

    app.get(
      '/deadletters',
      {
        // Payloads may hold owner data, so staff do not see them.
        config: { roles: ['admin', 'engineer'] },
        schema: {
          summary: 'List refused messages',
          description:
            'Messages the bridge refused, newest first, with the payload as received (up to 1 MiB of it).',
          tags: ['deadletters'],
          querystring: deadLetterQuery,
          response: { 200: deadLetterPage, ...errorResponses },
        },
      },
      async (request) => store.list(request.query),
    );
  };
}
