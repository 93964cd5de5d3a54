import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { FaultlineError } from '../../errors/catalogue.js';
import type { Metrics } from '../../metrics/registry.js';
import { errorBody } from '../errors.js';

export type Readiness = () => {
  ready: boolean;
  components: Record<string, { ok: boolean; detail?: string }>;
};

const components = z.record(z.string(), z.object({ ok: z.boolean(), detail: z.string().optional() }));

const tags = ['operations'];

export function healthRoutes(opts: { readiness: Readiness; metrics: Metrics }) {
  return async function healthPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();

    app.get(
      '/healthz',
      {
        config: { public: true },
        // Probes hit these every few seconds; a log line each would drown the rest.
        logLevel: 'warn',
        schema: {
          summary: 'Liveness',
          description: 'Answers 200 while the process serves HTTP; it checks nothing else.',
          tags,
          response: { 200: z.object({ status: z.literal('ok') }) },
        },
      },
      async () => ({ status: 'ok' as const }),
    );

    app.get(
      '/readyz',
      {
        config: { public: true },
        logLevel: 'warn',
        schema: {
          summary: 'Readiness',
          description:
            '200 when every component is ready; 503 FL_NOT_READY otherwise, with the components in details.',
          tags,
          response: {
            200: z.object({ status: z.literal('ready'), components }),
            503: errorBody,
          },
        },
      },
      async (request, reply) => {
        let state: ReturnType<Readiness>;
        try {
          state = opts.readiness();
        } catch (err) {
          // A probe that throws means we cannot vouch for readiness, which is not a crash of this route.
          request.log.error({ err }, 'readiness probe failed');
          state = {
            ready: false,
            components: { readiness: { ok: false, detail: 'the readiness check failed' } },
          };
        }
        if (state.ready) return { status: 'ready' as const, components: state.components };
        const body = new FaultlineError('FL_NOT_READY', undefined, { components: state.components }).toJSON();
        return reply.code(503).send(body);
      },
    );

    app.get(
      '/metrics',
      {
        config: { public: true },
        logLevel: 'warn',
        schema: {
          summary: 'Prometheus metrics',
          description:
            'Prometheus text exposition. Unauthenticated: expose it only to the scraper (firewall or network policy).',
          tags,
          produces: ['text/plain'],
        },
      },
      async (_request, reply) => {
        const text = await opts.metrics.render();
        return reply.type(opts.metrics.registry.contentType).send(text);
      },
    );
  };
}
