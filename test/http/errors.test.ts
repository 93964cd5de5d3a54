import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ERROR_CATALOGUE, FaultlineError } from '../../src/errors/catalogue.js';
import { errorBody } from '../../src/http/errors.js';
import { auth, type Harness, startHarness } from './harness.js';

/** The one error shape, strictly: no extra keys beside code, message and details. */
const strictErrorBody = z.strictObject({
  error: z.strictObject({
    code: z.enum(Object.keys(ERROR_CATALOGUE) as [string, ...string[]]),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});

function errorOf(res: { body: string }): z.infer<typeof strictErrorBody>['error'] {
  return strictErrorBody.parse(JSON.parse(res.body)).error;
}

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    extraRoutes: [
      (app) => {
        const config = { roles: ['admin' as const] };
        app.get('/api/v1/test/conflict', { config }, async () => {
          throw new FaultlineError('FL_CONFLICT', 'ticket 7 changed meanwhile', { ticket: 7 });
        });
        app.get('/api/v1/test/crash', { config }, async () => {
          throw new Error('connection to postgres://faultline:hunter2@db failed');
        });
        app.post('/api/v1/test/zod', { config }, async (req) => {
          z.object({ name: z.string(), size: z.number().int() }).parse(req.body);
          return { ok: true };
        });
      },
    ],
  });
});
afterAll(() => h.close());

describe('error responses', () => {
  it('gives a FaultlineError its status, code, message and details', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/api/v1/test/conflict', headers: auth('admin') });
    expect(res.statusCode).toBe(409);
    expect(errorOf(res)).toEqual({
      code: 'FL_CONFLICT',
      message: 'ticket 7 changed meanwhile',
      details: { ticket: 7 },
    });
  });

  it('answers any other error with a generic 500 FL_INTERNAL and logs the real one', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/api/v1/test/crash', headers: auth('admin') });
    expect(res.statusCode).toBe(500);
    expect(errorOf(res)).toEqual({ code: 'FL_INTERNAL', message: 'Internal error' });
    expect(res.body).not.toContain('hunter2');
    const logged = h.logs.find(
      (l) => l.level === 50 && JSON.stringify(l.err).includes('postgres://faultline'),
    );
    expect(logged, 'the cause is logged at error level').toBeDefined();
  });

  it('reports a query that fails its schema as 400 FL_VALIDATION listing each issue', async () => {
    const res = await h.app.inject({
      method: 'GET',
      url: '/api/v1/devices?limit=0&disabled=maybe',
      headers: auth('staff'),
    });
    expect(res.statusCode).toBe(400);
    const error = errorOf(res);
    expect(error.code).toBe('FL_VALIDATION');
    expect(error.details).toEqual(
      expect.arrayContaining([
        { in: 'querystring', path: '/limit', message: expect.any(String) },
        { in: 'querystring', path: '/disabled', message: expect.any(String) },
      ]),
    );
    expect(error.details).toHaveLength(2);
  });

  it('reports each invalid body field with its path', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/api/v1/devices',
      headers: auth('admin'),
      payload: { id: 'not a device id', model: 'W-100', secret: 'short', colour: 'red' },
    });
    expect(res.statusCode).toBe(400);
    const error = errorOf(res);
    expect(error.code).toBe('FL_VALIDATION');
    const paths = (error.details as Array<{ in: string; path: string }>).map((d) => `${d.in}:${d.path}`);
    expect(paths.sort()).toEqual(['body:/', 'body:/id', 'body:/secret']);
    // The refused secret is not echoed back.
    expect(res.body).not.toContain('"short"');
  });

  it('reports an invalid path parameter', async () => {
    const res = await h.app.inject({
      method: 'GET',
      url: '/api/v1/devices/has%20space',
      headers: auth('staff'),
    });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).details).toEqual([{ in: 'params', path: '/id', message: 'not a valid device id' }]);
  });

  it('reports a ZodError thrown by a handler as 400 FL_VALIDATION', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/api/v1/test/zod',
      headers: auth('admin'),
      payload: { name: 'x', size: 1.5 },
    });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res)).toEqual({
      code: 'FL_VALIDATION',
      message: ERROR_CATALOGUE.FL_VALIDATION.message,
      details: [{ path: '/size', message: expect.any(String) }],
    });
  });

  it('reports malformed JSON as 400 FL_VALIDATION', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/api/v1/devices',
      headers: { ...auth('admin'), 'content-type': 'application/json' },
      payload: '{"id": ',
    });
    expect(res.statusCode).toBe(400);
    const error = errorOf(res);
    expect(error.code).toBe('FL_VALIDATION');
    expect(error.details).toEqual({ reason: expect.stringMatching(/^FST_ERR_CTP_/) });
  });

  it('keeps the status of an unsupported media type, in the same shape', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/api/v1/devices',
      headers: { ...auth('admin'), 'content-type': 'application/xml' },
      payload: '<device/>',
    });
    expect(res.statusCode).toBe(415);
    expect(errorOf(res).code).toBe('FL_VALIDATION');
  });

  it('answers an unknown route with 404 FL_NOT_FOUND, with or without a token', async () => {
    for (const headers of [{}, auth('staff')]) {
      const res = await h.app.inject({ method: 'GET', url: '/api/v1/nothing-here?x=1', headers });
      expect(res.statusCode).toBe(404);
      expect(errorOf(res)).toEqual({ code: 'FL_NOT_FOUND', message: 'No route GET /api/v1/nothing-here' });
    }
  });

  it('matches the errorBody schema the OpenAPI document publishes', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/api/v1/devices/nobody', headers: auth('staff') });
    expect(res.statusCode).toBe(404);
    expect(errorBody.safeParse(res.json()).success).toBe(true);
    expect(errorOf(res).code).toBe('FL_DEVICE_NOT_FOUND');
  });
});
