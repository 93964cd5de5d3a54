/**
 * /api/v1/owners: registering owners (one, or in bulk from the owner app's
 * backend), reading and changing them, and their data out and erased.
 *
 * Registration takes the admin role. There is no narrower role: the owner
 * app's backend gets an admin token of its own in http.tokens, so its name is
 * on every change it makes (see docs/guides.md).
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Db } from '../db/db.js';
import { FaultlineError } from '../errors/catalogue.js';
import { errorResponses } from '../http/errors.js';
import { eraseOwner, exportOwner } from './privacy.js';
import { MAX_IMPORT, type OwnerStore, ownerInput, ownerUpdate } from './store.js';

const tags = ['owners'];
/** Responses are documented in docs/guides.md; the schema passes them through as built. */
const body = z.looseObject({});
const idParams = z.object({ id: z.string().min(1).max(128) });
export const IMPORT_BODY_LIMIT = 16 * 1024 * 1024;

export function ownerRoutes(owners: OwnerStore, db: Db, now: () => number = Date.now) {
  return async function ownersPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();
    app.post(
      '/api/v1/owners',
      {
        config: { roles: ['admin'] },
        schema: {
          summary: 'Register an owner (the credential their app presents)',
          description: 'The secret is stored hashed and never returned; at least 16 random characters.',
          tags,
          body: ownerInput,
          response: { 201: body, ...errorResponses },
        },
      },
      async (request, reply) => reply.code(201).send(await owners.add(request.body)),
    );

    const bulk: FastifyPluginAsync = async (inner) => {
      inner.withTypeProvider<ZodTypeProvider>().post(
        '/api/v1/owners/import',
        {
          config: { roles: ['admin'] },
          bodyLimit: IMPORT_BODY_LIMIT,
          schema: {
            summary: 'Register owners in bulk (the owner app backend)',
            description:
              `Up to ${MAX_IMPORT} owners, all or none: any bad entry refuses the request with ` +
              'FL_IMPORT_INVALID, whose details.errors names each (index, id, message). With upsert: true, ' +
              'existing owners are updated (secret rotation, locale, push token); without it they are errors.',
            tags,
            body: z.strictObject({
              owners: z.array(z.unknown()).max(MAX_IMPORT),
              upsert: z.boolean().default(false),
            }),
            response: { 200: body, ...errorResponses },
          },
        },
        async (request) => owners.importMany(request.body.owners, { upsert: request.body.upsert }),
      );
    };
    await app.register(bulk);

    app.get(
      '/api/v1/owners/:id',
      {
        config: { roles: ['admin', 'staff'] },
        schema: {
          summary: 'One owner (no secret, no token)',
          tags,
          params: idParams,
          response: { 200: body, ...errorResponses },
        },
      },
      async (request) => {
        const o = await owners.get(request.params.id);
        if (!o) throw new FaultlineError('FL_NOT_FOUND', `no owner ${request.params.id}`);
        return o;
      },
    );
    app.patch(
      '/api/v1/owners/:id',
      {
        config: { roles: ['admin'] },
        schema: {
          summary: 'Change an owner: locale, time zone, quiet hours, push token, secret, disabled',
          tags,
          params: idParams,
          body: ownerUpdate,
          response: { 200: body, ...errorResponses },
        },
      },
      async (request) => owners.update(request.params.id, request.body),
    );
    app.get(
      '/api/v1/owners/:id/export',
      {
        config: { roles: ['admin'] },
        schema: {
          summary: "Everything Faultline holds about an owner (a data subject's access request)",
          tags,
          params: idParams,
          response: { 200: body, ...errorResponses },
        },
      },
      async (request) => exportOwner(db, request.params.id, now()),
    );
    app.delete(
      '/api/v1/owners/:id',
      {
        config: { roles: ['admin'] },
        schema: {
          summary:
            'Erase an owner: credential, push token and notification texts; tickets keep the pseudonymous id',
          tags,
          params: idParams,
          response: { 200: body, ...errorResponses },
        },
      },
      async (request) => eraseOwner(db, request.params.id),
    );
  };
}
