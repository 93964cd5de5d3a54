/**
 * The HTTP side of the bridge: probes, metrics, the /api/v1 API and its OpenAPI
 * document. Built ready but not listening, so tests use inject() and the CLI
 * decides host and port.
 */

import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyRequest,
} from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import type { Config } from '../config/schema.js';
import type { DeadLetterStore } from '../deadletters/store.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { DeviceRegistry } from '../registry/devices.js';
import { installAuth } from './auth.js';
import { installErrorHandling } from './errors.js';
import { deadLettersRoutes } from './routes/deadletters.js';
import { devicesRoutes } from './routes/devices.js';
import { healthRoutes, type Readiness } from './routes/health.js';

export interface HttpDeps {
  config: Readonly<Config>;
  log: Logger;
  metrics: Metrics;
  devices: DeviceRegistry;
  deadLetters: DeadLetterStore;
  readiness: Readiness;
  /**
   * Plugins of later features, each registered in its own encapsulated scope with
   * full paths (no prefix). Every route must declare `config.roles` (under /api/)
   * or `config.public: true`, or buildHttpServer rejects.
   */
  extraRoutes?: Array<(app: FastifyInstance) => Promise<void> | void>;
}

export const API_V1 = '/api/v1';
export const DOCS_PREFIX = '/docs';

/** What a request log line says about the request: never headers, so never a token. */
function requestSummary(req: FastifyRequest): Record<string, unknown> {
  return { method: req.method, url: req.url, remoteAddress: req.ip };
}

export async function buildHttpServer(deps: HttpDeps): Promise<FastifyInstance> {
  const app = Fastify({
    // pino's child type carries its option generics, which FastifyInstance's logger parameter does not.
    loggerInstance: deps.log.child(
      { component: 'http' },
      { serializers: { req: requestSummary } },
    ) as FastifyBaseLogger,
    // Behind a reverse proxy the integrator may want trustProxy; off by default so clients cannot forge their IP.
    trustProxy: false,
  });

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandling(app);

  try {
    // Before any route: the declaration check only sees routes added after it.
    installAuth(app, {
      config: deps.config,
      metrics: deps.metrics,
      log: deps.log,
      publicTrees: [DOCS_PREFIX],
    });

    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Faultline API',
          version: '1',
          description:
            'Smart-appliance fault data to service tickets. See docs/api.md for roles and error codes.',
        },
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              description: 'A token from http.adminToken or http.tokens',
            },
          },
        },
      },
      transform: jsonSchemaTransform,
      transformObject: jsonSchemaTransformObject,
    });
    // swagger-ui serves its bundle from node_modules, so the docs work without internet access.
    await app.register(swaggerUi, { routePrefix: DOCS_PREFIX });

    app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());

    await app.register(healthRoutes({ readiness: deps.readiness, metrics: deps.metrics }));
    await app.register(devicesRoutes(deps.devices), { prefix: API_V1 });
    await app.register(deadLettersRoutes(deps.deadLetters), { prefix: API_V1 });
    for (const plugin of deps.extraRoutes ?? []) {
      const scoped: FastifyPluginAsync = async (scope) => {
        await plugin(scope);
      };
      await app.register(scoped);
    }

    await app.ready();
  } catch (err) {
    // A half-built instance may hold hooks and timers; release them before reporting.
    await app.close().catch(() => undefined);
    throw err;
  }
  return app;
}
