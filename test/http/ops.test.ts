import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, type Harness, startHarness, TOKENS } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

describe('probes', () => {
  it('answers /healthz without a token', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('answers /readyz with 200 and the components when ready', async () => {
    h.setReadiness({ ready: true, components: { database: { ok: true, detail: 'pglite' } } });
    const res = await h.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ready', components: { database: { ok: true, detail: 'pglite' } } });
  });

  it('answers /readyz with 503 FL_NOT_READY and the components when not ready', async () => {
    const components = { database: { ok: true }, wal: { ok: false, detail: 'disk full' } };
    h.setReadiness({ ready: false, components });
    const res = await h.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({
      error: { code: 'FL_NOT_READY', message: 'Faultline is not ready', details: { components } },
    });
  });

  it('answers /readyz with 503 when the readiness check itself throws', async () => {
    h.setReadiness(() => {
      throw new Error('wal stat failed');
    });
    const res = await h.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json().error.code).toBe('FL_NOT_READY');
    h.setReadiness({ ready: true, components: {} });
  });

  it('serves Prometheus text at /metrics without a token', async () => {
    await h.app.inject({ method: 'GET', url: '/api/v1/devices' });
    const res = await h.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain('# TYPE faultline_http_auth_failures_total counter');
    expect(res.body).toMatch(/^faultline_http_auth_failures_total\{reason="missing"\} [1-9]/m);
    expect(res.body).toContain('faultline_process_');
  });
});

describe('OpenAPI', () => {
  interface Operation {
    summary?: string;
    tags?: string[];
    security?: Array<Record<string, string[]>>;
    requestBody?: { content: Record<string, unknown> };
    parameters?: Array<{ name: string; in: string }>;
  }
  let doc: {
    openapi: string;
    paths: Record<string, Record<string, Operation>>;
    components: { securitySchemes: Record<string, { type: string; scheme: string }> };
  };

  beforeAll(async () => {
    const res = await h.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    doc = res.json();
  });

  const openapiPath = (url: string) => url.replace(/:(\w+)/g, '{$1}');

  it('is OpenAPI 3 and declares the bearer scheme', () => {
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('documents every protected route with a summary, tags and the bearer requirement', () => {
    const documented = h.app.protectedRoutes().filter((r) => r.method !== 'HEAD');
    expect(documented.length).toBeGreaterThanOrEqual(8);
    for (const route of documented) {
      const op = doc.paths[openapiPath(route.url)]?.[route.method.toLowerCase()];
      expect(op, `${route.method} ${route.url} is in the document`).toBeDefined();
      expect(op?.summary, `${route.method} ${route.url} has a summary`).toBeTruthy();
      expect(op?.tags?.length, `${route.method} ${route.url} has tags`).toBeGreaterThan(0);
      expect(op?.security).toEqual([{ bearerAuth: [] }]);
    }
  });

  it('gives every operation, protected or not, a summary and tags', () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        expect(op.summary, `${method} ${path}`).toBeTruthy();
        expect(op.tags?.length, `${method} ${path}`).toBeGreaterThan(0);
      }
    }
  });

  it('derives parameters and bodies from the zod schemas', () => {
    const list = doc.paths['/api/v1/devices']?.get;
    expect(list?.parameters?.map((p) => `${p.in}:${p.name}`).sort()).toEqual([
      'query:cursor',
      'query:disabled',
      'query:limit',
      'query:model',
      'query:ownerId',
    ]);
    expect(Object.keys(doc.paths['/api/v1/devices/import']?.post?.requestBody?.content ?? {})).toEqual([
      'text/csv',
    ]);
    const add = doc.paths['/api/v1/devices']?.post?.requestBody?.content['application/json'] as {
      schema: { required: string[] };
    };
    expect(add.schema.required.sort()).toEqual(['id', 'model', 'secret']);
    expect(JSON.stringify(doc)).not.toContain('secretHash');
  });

  it('serves browsable docs whose assets come from this server, not a CDN', async () => {
    const page = await h.app.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    const assets = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThan(0);
    for (const asset of assets) expect(asset).not.toMatch(/^(https?:)?\/\//);
    const bundle = assets.find((a) => a.endsWith('swagger-ui-bundle.js'));
    expect(bundle).toBeDefined();
    const js = await h.app.inject({ method: 'GET', url: new URL(bundle!, 'http://x/docs/').pathname });
    expect(js.statusCode).toBe(200);
  });
});

describe('over a real socket', () => {
  it('serves the API on an ephemeral port', async () => {
    const server = await startHarness();
    try {
      await server.app.listen({ port: 0, host: '127.0.0.1' });
      const address = server.app.server.address();
      if (!address || typeof address !== 'object') throw new Error('not listening on TCP');
      const base = `http://127.0.0.1:${address.port}`;

      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });

      const anonymous = await fetch(`${base}/api/v1/stats/devices`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);

      const added = await fetch(`${base}/api/v1/devices`, {
        method: 'POST',
        headers: { ...auth('admin'), 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'sock-1', model: 'S-1', secret: 'socket-secret-0123456789' }),
      });
      expect(added.status).toBe(201);

      const csv = await fetch(`${base}/api/v1/devices/import`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKENS.admin}`, 'content-type': 'text/csv' },
        body: 'id,model,secret\nsock-2,S-1,socket-secret-0123456789\n',
      });
      expect(csv.status).toBe(200);

      const stats = await fetch(`${base}/api/v1/stats/devices`, { headers: auth('staff') });
      expect(await stats.json()).toEqual({ total: 2, online: 0, disabled: 0 });
    } finally {
      await server.close();
    }
  });
});
