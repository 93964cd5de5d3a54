/**
 * The owner credential over HTTP, for the owner-app endpoints under /app/v1:
 * `Authorization: Basic base64("owner:<ownerId>:<secret>")`, the same
 * username and secret the app uses for MQTT. These routes are outside /api/
 * because every /api/ route takes a bearer token with a staff role; they
 * declare config.public and authenticate here instead, so each one only ever
 * sees its own owner's data.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { OWNER_USERNAME_PREFIX } from '../broker/embedded.js';
import { OWNER_ID_PATTERN } from '../contract/index.js';
import { FaultlineError } from '../errors/catalogue.js';
import type { Metrics } from '../metrics/registry.js';
import type { OwnerStore } from './store.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated owner on /app/v1 routes. */
    ownerId?: string;
  }
}

export const OWNER_APP_PREFIX = '/app/v1';
const REALM = 'Basic realm="faultline-owner", charset="UTF-8"';

/**
 * "owner:<id>:<secret>" (or "<id>:<secret>") from a Basic header; null when absent or not Basic.
 * The id ends at its first colon after the prefix, as Basic's user-id does (RFC 7617): owner ids
 * with a colon cannot log in over HTTP and use signed links or MQTT instead.
 */
export function parseOwnerBasic(header: string | undefined): { ownerId: string; secret: string } | null {
  const m = header ? /^\s*Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!m) return null;
  let decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  if (decoded.startsWith(OWNER_USERNAME_PREFIX)) decoded = decoded.slice(OWNER_USERNAME_PREFIX.length);
  const colon = decoded.indexOf(':');
  if (colon <= 0) return null;
  const ownerId = decoded.slice(0, colon);
  return OWNER_ID_PATTERN.test(ownerId) ? { ownerId, secret: decoded.slice(colon + 1) } : null;
}

/** An onRequest hook: sets request.ownerId or answers 401. */
export function ownerAuthHook(owners: OwnerStore, metrics?: Metrics) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const creds = parseOwnerBasic(request.headers.authorization);
    if (!creds) {
      metrics?.httpAuthFailures.inc({ reason: 'missing' });
      reply.header('www-authenticate', REALM);
      throw new FaultlineError(
        'FL_AUTH_MISSING',
        'owner credential required: Basic owner:<ownerId>:<secret>',
      );
    }
    const result = await owners.authenticate(creds.ownerId, creds.secret);
    if (result !== 'ok') {
      metrics?.httpAuthFailures.inc({ reason: 'invalid' });
      reply.header('www-authenticate', REALM);
      throw new FaultlineError('FL_AUTH_INVALID', 'the owner credential is not valid');
    }
    request.ownerId = creds.ownerId;
  };
}
