import type { InjectOptions } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema, ROLES, type Role } from '../../src/config/schema.js';
import { isFaultlineError } from '../../src/errors/catalogue.js';
import { tokenVerifier } from '../../src/http/auth.js';
import { auth, buildWithoutDb, counterValue, routerRoutes, startHarness, TOKENS } from './harness.js';

// Built while collecting, so the tests below can be generated from the route table:
// a route added to the server is covered without anyone editing this file.
const h = await startHarness();
afterAll(() => h.close());

const table = h.app.protectedRoutes();
const concrete = (url: string): string => url.replace(/:(\w+)/g, 'auth-probe-$1');
const request = (
  route: { method: string; url: string },
  headers: Record<string, string> = {},
): InjectOptions => ({
  method: route.method as InjectOptions['method'],
  url: concrete(route.url),
  headers,
});
/** HEAD answers carry no body, so only the status can be checked for them. */
const codeOf = (res: { body: string }, method: string): string | undefined =>
  method === 'HEAD' ? undefined : (JSON.parse(res.body) as { error: { code: string } }).error.code;
const expectedCode = (method: string, code: string): string | undefined =>
  method === 'HEAD' ? undefined : code;

describe('the route table', () => {
  it('lists exactly the /api routes the router serves', () => {
    const fromRouter = routerRoutes(h.app)
      .filter((r) => r.url.startsWith('/api/'))
      .map((r) => `${r.method} ${r.url}`)
      .sort();
    const fromTable = table.map((r) => `${r.method} ${r.url}`).sort();
    expect(fromTable).toEqual(fromRouter);
    // The issue's routes, so an empty or truncated table cannot pass the comparison above.
    expect(fromTable).toEqual(
      expect.arrayContaining([
        'GET /api/v1/devices',
        'GET /api/v1/devices/:id',
        'POST /api/v1/devices',
        'POST /api/v1/devices/import',
        'POST /api/v1/devices/:id/disable',
        'POST /api/v1/devices/:id/enable',
        'GET /api/v1/deadletters',
        'GET /api/v1/stats/devices',
      ]),
    );
  });

  it('gives every /api route a non-empty list of known roles', () => {
    for (const route of table) {
      expect(route.roles.length, `${route.method} ${route.url}`).toBeGreaterThan(0);
      for (const role of route.roles) expect(ROLES).toContain(role);
    }
  });
});

describe.each(table)('$method $url', (route) => {
  it('refuses a request without a token with 401 FL_AUTH_MISSING', async () => {
    const res = await h.app.inject(request(route));
    expect(res.statusCode).toBe(401);
    expect(codeOf(res, route.method)).toBe(expectedCode(route.method, 'FL_AUTH_MISSING'));
    expect(res.headers['www-authenticate']).toMatch(/^Bearer /);
  });

  it('refuses an unknown token with 401 FL_AUTH_INVALID', async () => {
    const res = await h.app.inject(request(route, { authorization: `Bearer ${TOKENS.admin}x` }));
    expect(res.statusCode).toBe(401);
    expect(codeOf(res, route.method)).toBe(expectedCode(route.method, 'FL_AUTH_INVALID'));
  });

  for (const role of ROLES.filter((r) => !route.roles.includes(r))) {
    it(`refuses the ${role} role with 403 FL_FORBIDDEN`, async () => {
      const res = await h.app.inject(request(route, auth(role)));
      expect(res.statusCode).toBe(403);
      expect(codeOf(res, route.method)).toBe(expectedCode(route.method, 'FL_FORBIDDEN'));
    });
  }

  for (const role of route.roles) {
    it(`lets the ${role} role past the role check`, async () => {
      const res = await h.app.inject(request(route, auth(role)));
      // The handler may still refuse the probe (no such device, empty body): anything but an auth refusal.
      expect([401, 403]).not.toContain(res.statusCode);
    });
  }
});

describe('bearer credentials', () => {
  const probe = { method: 'GET', url: '/api/v1/stats/devices' } as const;

  it.each([
    ['an empty header', '', 'FL_AUTH_MISSING'],
    ['the scheme without a token', 'Bearer', 'FL_AUTH_MISSING'],
    ['another scheme', `Basic ${Buffer.from(`admin:${TOKENS.admin}`).toString('base64')}`, 'FL_AUTH_INVALID'],
    ['a prefix of a token', `Bearer ${TOKENS.admin.slice(0, -1)}`, 'FL_AUTH_INVALID'],
  ])('treats %s as %s', async (_what, header, code) => {
    const res = await h.app.inject({ ...probe, headers: { authorization: header } });
    expect(res.statusCode).toBe(401);
    expect(res.json()).toEqual({ error: { code, message: expect.any(String) } });
  });

  it('accepts the scheme in any case', async () => {
    const res = await h.app.inject({ ...probe, headers: { authorization: `bearer ${TOKENS.staff}` } });
    expect(res.statusCode).toBe(200);
  });

  it('counts each refusal in faultline_http_auth_failures_total by reason', async () => {
    const before = {
      missing: await counterValue(h.metrics, 'missing'),
      invalid: await counterValue(h.metrics, 'invalid'),
      forbidden: await counterValue(h.metrics, 'forbidden'),
    };
    await h.app.inject({ method: 'GET', url: '/api/v1/deadletters' });
    await h.app.inject({
      method: 'GET',
      url: '/api/v1/deadletters',
      headers: { authorization: 'Bearer nope' },
    });
    await h.app.inject({
      method: 'GET',
      url: '/api/v1/deadletters',
      headers: { authorization: 'Bearer nope' },
    });
    await h.app.inject({ method: 'GET', url: '/api/v1/deadletters', headers: auth('staff') });
    await h.app.inject({ method: 'GET', url: '/api/v1/deadletters', headers: auth('engineer') });

    expect(await counterValue(h.metrics, 'missing')).toBe(before.missing + 1);
    expect(await counterValue(h.metrics, 'invalid')).toBe(before.invalid + 2);
    expect(await counterValue(h.metrics, 'forbidden')).toBe(before.forbidden + 1);
    const text = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain(`faultline_http_auth_failures_total{reason="forbidden"} ${before.forbidden + 1}`);
  });

  it('keeps tokens and the Authorization header out of the log', async () => {
    for (const role of ROLES)
      await h.app.inject({ method: 'GET', url: '/api/v1/deadletters', headers: auth(role) });
    await h.app.inject({
      method: 'GET',
      url: '/api/v1/devices',
      headers: { authorization: 'Bearer wrong-token-1234567890' },
    });
    await h.app.inject({ method: 'GET', url: '/nowhere', headers: auth('admin') });
    // Something was logged per request, so the absence below is not just silence.
    expect(h.logs.filter((l) => l.msg === 'incoming request').length).toBeGreaterThanOrEqual(5);
    const text = h.logText();
    for (const token of [...Object.values(TOKENS), 'wrong-token-1234567890'])
      expect(text).not.toContain(token);
    expect(text.toLowerCase()).not.toContain('authorization');
  });
});

describe('tokenVerifier', () => {
  const http = configSchema.parse({
    http: { adminToken: 'a'.repeat(20), tokens: [{ name: 'desk', token: 'b'.repeat(32), role: 'staff' }] },
  }).http;

  it('maps each configured token to its name and role, and nothing else to anything', () => {
    const verify = tokenVerifier(http);
    expect(verify('a'.repeat(20))).toEqual({ name: 'admin', role: 'admin' });
    expect(verify('b'.repeat(32))).toEqual({ name: 'desk', role: 'staff' });
    expect(verify('b'.repeat(31))).toBeNull();
    expect(verify('')).toBeNull();
  });

  it('refuses a token configured twice, whose role would depend on order', () => {
    const twice = {
      ...http,
      tokens: [...http.tokens, { name: 'again', token: 'a'.repeat(20), role: 'staff' as Role }],
    };
    let thrown: unknown;
    try {
      tokenVerifier(twice);
    } catch (err) {
      thrown = err;
    }
    expect(isFaultlineError(thrown) && thrown.code).toBe('FL_CONFIG_INVALID');
    expect(String(thrown)).not.toContain('a'.repeat(20));
  });
});

describe('route declarations fail closed', () => {
  it.each([
    ['an /api route without roles', '/api/v1/undeclared', {}, /must declare config\.roles/],
    ['an /api route with an empty role list', '/api/v1/empty', { roles: [] }, /non-empty list/],
    ['an /api route with an unknown role', '/api/v1/root', { roles: ['root'] }, /non-empty list/],
    ['an /api route that only says public', '/api/v1/open', { public: true }, /must declare config\.roles/],
    ['a route elsewhere that declares nothing', '/guides/x', {}, /config\.public: true/],
    ['a route beside, not inside, the docs tree', '/docs-extra', {}, /config\.public: true/],
  ])('refuses %s at startup', async (_what, url, config, message) => {
    await expect(
      buildWithoutDb([
        (app) => {
          app.get(url, { config: config as never }, async () => ({ ok: true }));
        },
      ]),
    ).rejects.toThrow(message);
  });

  it('serves an extra plugin route that declares its roles, to those roles only', async () => {
    const extra = await buildWithoutDb([
      async (app) => {
        app.get(
          '/api/v1/rules',
          { config: { roles: ['admin', 'engineer'] }, schema: { summary: 'List rules', tags: ['rules'] } },
          async (req) => ({ caller: req.principal }),
        );
      },
    ]);
    try {
      const ok = await extra.app.inject({ method: 'GET', url: '/api/v1/rules', headers: auth('engineer') });
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toEqual({ caller: { name: 'field-engineers', role: 'engineer' } });
      const refused = await extra.app.inject({ method: 'GET', url: '/api/v1/rules', headers: auth('staff') });
      expect(refused.statusCode).toBe(403);
      expect(extra.app.protectedRoutes()).toContainEqual({
        method: 'GET',
        url: '/api/v1/rules',
        roles: ['admin', 'engineer'],
      });
    } finally {
      await extra.close();
    }
  });
});
