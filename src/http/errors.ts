/**
 * One error body for every failure: { error: { code, message, details? } },
 * with codes only from the catalogue so docs/api.md stays complete.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { z } from 'zod';
import { type ErrorCode, FaultlineError, isFaultlineError } from '../errors/catalogue.js';

export const errorBody = z.object({
  error: z.object({
    code: z.string().describe('a code from the error catalogue, e.g. FL_VALIDATION'),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});

export type ErrorBody = z.infer<typeof errorBody>;

/** Response schemas every route shares, so the OpenAPI document shows the error shape. */
export const errorResponses = { '4xx': errorBody, '5xx': errorBody } as const;

export interface ValidationIssue {
  /** Which part of the request: body, querystring, params or headers. */
  in?: string;
  /** JSON pointer into that part, '/' for the whole of it. */
  path: string;
  message: string;
}

function body(code: ErrorCode, message?: string, details?: unknown): ErrorBody {
  return new FaultlineError(code, message, details).toJSON();
}

function zodIssues(err: z.core.$ZodError, where?: string): ValidationIssue[] {
  return err.issues.map((issue) => ({
    ...(where ? { in: where } : {}),
    path: `/${issue.path.map(String).join('/')}`,
    message: issue.message,
  }));
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | Error, request, reply) => {
    if (isFaultlineError(err)) {
      if (err.status >= 500) request.log.error({ err }, 'request failed');
      return reply.code(err.status).send(err.toJSON());
    }

    // Request validation: the zod validator compiler and any JSON-schema route both land here.
    const fastifyErr = err as FastifyError;
    if (Array.isArray(fastifyErr.validation)) {
      const details: ValidationIssue[] = fastifyErr.validation.map((v) => ({
        ...(fastifyErr.validationContext ? { in: fastifyErr.validationContext } : {}),
        path: v.instancePath || '/',
        message: v.message ?? 'is not valid',
      }));
      return reply.code(400).send(body('FL_VALIDATION', undefined, details));
    }

    // A handler that parses input itself with zod reports the same way as a route schema would.
    if (err instanceof z.core.$ZodError) {
      return reply.code(400).send(body('FL_VALIDATION', undefined, zodIssues(err)));
    }

    // Fastify's own client errors (malformed JSON, unsupported media type, body too large)
    // keep their status; their messages are fixed strings that carry no request data.
    const status = fastifyErr.statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      request.log.debug({ err }, 'request refused');
      return reply.code(status).send(body('FL_VALIDATION', err.message, { reason: fastifyErr.code }));
    }

    // The caller learns only that it failed; the log has the cause.
    request.log.error({ err }, 'unhandled error');
    return reply.code(500).send(body('FL_INTERNAL'));
  });

  app.setNotFoundHandler((request, reply) => {
    return reply
      .code(404)
      .send(body('FL_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`));
  });
}
