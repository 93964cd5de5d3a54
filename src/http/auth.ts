/**
 * Bearer-token authentication and per-route role checks.
 *
 * Every route under /api/ must declare `config: { roles: [...] }`; every other
 * route must declare `config: { public: true }`. A route that declares neither
 * makes startup throw, so a forgotten declaration can never ship as an open
 * endpoint. The check runs in onRequest, before the body is read, so an
 * anonymous caller cannot make us buffer a 64 MiB upload.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { type Config, ROLES, type Role } from '../config/schema.js';
import { FaultlineError } from '../errors/catalogue.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';

export interface Principal {
  /** The token's name from config; 'admin' for http.adminToken. Safe to log. */
  name: string;
  role: Role;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Roles allowed to call the route. Required under /api/. */
    roles?: readonly Role[];
    /** Declares a route outside /api/ deliberately reachable without a token. */
    public?: boolean;
  }
  interface FastifyRequest {
    /** Who called, once the role check passed; null on public routes. */
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** Every route that requires a token, with the roles it allows: for tests and generated docs. */
    protectedRoutes(): readonly ProtectedRoute[];
  }
}

export interface ProtectedRoute {
  method: string;
  url: string;
  roles: readonly Role[];
}

/** Routes under this prefix are the API: they need a token and a role list. */
export const API_PREFIX = '/api/';

export type AuthFailureReason = 'missing' | 'invalid' | 'forbidden';

interface TokenEntry {
  digest: Buffer;
  principal: Principal;
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Builds the lookup from a presented token to its principal. Hashing both sides
 * makes the compared buffers equal in length whatever the caller sends, and the
 * loop visits every entry so the time taken does not say which one matched.
 */
export function tokenVerifier(http: Config['http']): (presented: string) => Principal | null {
  const entries: TokenEntry[] = [];
  const seen = new Set<string>();
  const add = (token: string, principal: Principal): void => {
    // Two entries with one token would make the role depend on config order.
    if (seen.has(token)) {
      throw new FaultlineError('FL_CONFIG_INVALID', `http token "${principal.name}" repeats another token`);
    }
    seen.add(token);
    entries.push({ digest: sha256(token), principal });
  };
  if (http.adminToken) add(http.adminToken, { name: 'admin', role: 'admin' });
  for (const t of http.tokens) add(t.token, { name: t.name, role: t.role });

  return (presented) => {
    const digest = sha256(presented);
    let found: Principal | null = null;
    for (const entry of entries) {
      if (timingSafeEqual(entry.digest, digest)) found = entry.principal;
    }
    return found;
  };
}

/** Returns the bearer token, '' when the header is absent or empty, null when it is not a bearer credential. */
function bearer(header: string | undefined): string | null {
  if (header === undefined) return '';
  const match = /^\s*Bearer(?:\s+(.*))?$/i.exec(header);
  if (!match) return header.trim() === '' ? '' : null;
  return (match[1] ?? '').trim();
}

function checkDeclaration(route: RouteOptions): void {
  const config = route.config ?? {};
  const roles = config.roles;
  const where = `${String(route.method)} ${route.url}`;
  if (roles !== undefined) {
    if (!Array.isArray(roles) || roles.length === 0 || roles.some((r) => !ROLES.includes(r))) {
      throw new Error(`${where}: config.roles must be a non-empty list of ${ROLES.join(', ')}`);
    }
    return;
  }
  if (route.url.startsWith(API_PREFIX)) {
    throw new Error(`${where}: routes under ${API_PREFIX} must declare config.roles`);
  }
  if (config.public !== true) {
    throw new Error(`${where}: declare config.roles, or config.public: true for an unauthenticated route`);
  }
}

export interface AuthOptions {
  config: Readonly<Config>;
  metrics: Metrics;
  log: Logger;
  /**
   * Paths whose routes, and the routes below them, come from third-party plugins that cannot
   * declare anything (the docs UI). Never under /api/.
   */
  publicTrees: readonly string[];
}

/**
 * Installs the declaration check and the role check on the root instance.
 * Must run before any route is registered: onRoute hooks only see routes added after them.
 */
export function installAuth(app: FastifyInstance, opts: AuthOptions): void {
  const verify = tokenVerifier(opts.config.http);
  if (!opts.config.http.adminToken && opts.config.http.tokens.length === 0) {
    opts.log.warn('no http.adminToken or http.tokens configured: every /api/v1 request will be refused');
  }

  app.decorateRequest('principal', null);
  const table: ProtectedRoute[] = [];
  app.decorate('protectedRoutes', () => table);

  app.addHook('onRoute', (route) => {
    const inPublicTree = opts.publicTrees.some((p) => route.url === p || route.url.startsWith(`${p}/`));
    if (inPublicTree && !route.url.startsWith(API_PREFIX)) return;
    checkDeclaration(route);
    const roles = route.config?.roles;
    if (roles) {
      for (const method of [route.method].flat()) table.push({ method, url: route.url, roles });
      // Tell the OpenAPI document what the route needs; swagger reads this same object later.
      const note = `Roles: ${roles.join(', ')}.`;
      const description = route.schema?.description;
      route.schema = {
        ...route.schema,
        security: [{ bearerAuth: [] }],
        description: description?.includes(note)
          ? description
          : [description, note].filter(Boolean).join('\n\n'),
      } as RouteOptions['schema'];
    }
  });

  const refuse = (reason: AuthFailureReason, error: FaultlineError): FaultlineError => {
    opts.metrics.httpAuthFailures.inc({ reason });
    return error;
  };

  app.addHook('onRequest', async (request, reply) => {
    const roles = request.routeOptions.config.roles;
    if (!roles) return;
    const token = bearer(request.headers.authorization);
    if (token === '') {
      reply.header('www-authenticate', 'Bearer realm="faultline"');
      throw refuse('missing', new FaultlineError('FL_AUTH_MISSING'));
    }
    const principal = token === null ? null : verify(token);
    if (!principal) {
      reply.header('www-authenticate', 'Bearer realm="faultline", error="invalid_token"');
      throw refuse('invalid', new FaultlineError('FL_AUTH_INVALID'));
    }
    if (!roles.includes(principal.role)) {
      throw refuse(
        'forbidden',
        new FaultlineError('FL_FORBIDDEN', `Role ${principal.role} may not do this`, { allowed: roles }),
      );
    }
    request.principal = principal;
  });
}
