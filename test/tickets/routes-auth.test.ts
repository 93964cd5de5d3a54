/**
 * Every ticket, incident, stats and webhook route refuses a missing token, an unknown one and the
 * wrong role, generated from the route table like test/http/auth.test.ts, so a route added later
 * is covered without editing this file.
 */
import type { InjectOptions } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { ROLES } from '../../src/config/schema.js';
import { ticketsConfig } from '../../src/tickets/config.js';
import { ticketRoutes } from '../../src/tickets/routes.js';
import { TicketService } from '../../src/tickets/service.js';
import { Outbox } from '../../src/webhooks/outbox.js';
import { webhookRoutes } from '../../src/webhooks/routes.js';
import { auth, buildWithoutDb, routerRoutes, TOKENS, unusedDb } from '../http/harness.js';

const service = new TicketService({ db: unusedDb, config: ticketsConfig() });
const server = await buildWithoutDb([ticketRoutes(service), webhookRoutes(new Outbox(unusedDb))]);
afterAll(() => server.close());

const MINE = /^\/api\/v1\/(tickets|incidents|stats\/tickets|webhooks)/;
const table = server.app.protectedRoutes().filter((r) => MINE.test(r.url));

const request = (
  route: { method: string; url: string },
  headers: Record<string, string> = {},
): InjectOptions => ({
  method: route.method as InjectOptions['method'],
  url: route.url.replace(/:id/g, '1'),
  headers,
  // The live stream never ends: the answer is complete once its head is written.
  payloadAsStream: true,
});

async function send(route: { method: string; url: string }, headers?: Record<string, string>) {
  const res = await server.app.inject(request(route, headers));
  const stream = res.stream();
  let body = '';
  if (res.statusCode >= 400 && route.method !== 'HEAD') {
    for await (const chunk of stream) body += String(chunk);
  } else {
    stream.destroy();
  }
  return {
    status: res.statusCode,
    code: body ? (JSON.parse(body) as { error: { code: string } }).error.code : null,
    headers: res.headers,
  };
}

describe('the ticket route table', () => {
  it('holds every ticket route the router serves, and the ones the issue names', () => {
    const fromRouter = routerRoutes(server.app)
      .filter((r) => MINE.test(r.url))
      .map((r) => `${r.method} ${r.url}`)
      .sort();
    const fromTable = table.map((r) => `${r.method} ${r.url}`).sort();
    expect(fromTable).toEqual(fromRouter);
    expect(fromTable).toEqual(
      expect.arrayContaining([
        'GET /api/v1/tickets',
        'GET /api/v1/tickets/stream',
        'GET /api/v1/tickets/:id',
        'POST /api/v1/tickets/:id/acknowledge',
        'POST /api/v1/tickets/:id/assign',
        'POST /api/v1/tickets/:id/comments',
        'POST /api/v1/tickets/:id/reopen',
        'POST /api/v1/tickets/:id/status',
        'GET /api/v1/incidents',
        'GET /api/v1/incidents/:id',
        'GET /api/v1/stats/tickets',
        'GET /api/v1/webhooks/deliveries',
        'POST /api/v1/webhooks/deliveries/:id/retry',
      ]),
    );
  });

  it('lets engineers read and comment but not work tickets', () => {
    const roles = (method: string, url: string) =>
      table.find((r) => r.method === method && r.url === url)?.roles;
    expect(roles('GET', '/api/v1/tickets')).toEqual(['admin', 'engineer', 'staff']);
    expect(roles('POST', '/api/v1/tickets/:id/comments')).toEqual(['admin', 'engineer', 'staff']);
    for (const action of ['acknowledge', 'assign', 'reopen', 'status']) {
      expect(roles('POST', `/api/v1/tickets/:id/${action}`)).toEqual(['admin', 'staff']);
    }
  });
});

describe.each(table)('$method $url', (route) => {
  it('refuses a request without a token with 401 FL_AUTH_MISSING', async () => {
    const res = await send(route);
    expect(res.status).toBe(401);
    if (route.method !== 'HEAD') expect(res.code).toBe('FL_AUTH_MISSING');
    expect(res.headers['www-authenticate']).toMatch(/^Bearer /);
  });

  it('refuses an unknown token with 401 FL_AUTH_INVALID', async () => {
    const res = await send(route, { authorization: `Bearer ${TOKENS.staff}x` });
    expect(res.status).toBe(401);
    if (route.method !== 'HEAD') expect(res.code).toBe('FL_AUTH_INVALID');
  });

  for (const role of ROLES.filter((r) => !route.roles.includes(r))) {
    it(`refuses the ${role} role with 403 FL_FORBIDDEN`, async () => {
      const res = await send(route, auth(role));
      expect(res.status).toBe(403);
      if (route.method !== 'HEAD') expect(res.code).toBe('FL_FORBIDDEN');
    });
  }

  for (const role of route.roles) {
    it(`lets the ${role} role past the role check`, async () => {
      const res = await send(route, auth(role));
      // There is no database behind this server: anything but an auth refusal will do.
      expect([401, 403]).not.toContain(res.status);
    });
  }
});
