/**
 * HTTP for the push feature.
 *
 * /api/v1 (bearer tokens, staff roles): notifications sent to owners and the
 * feedback figures.
 *
 * /app/v1 (the owner app, owner credential or a signed link): the owner's own
 * settings, what it has not received yet, receipts, and full guides. Outside
 * /api/ because /api/ takes staff bearer tokens only; see owners/http-auth.ts.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { FaultlineError } from '../errors/catalogue.js';
import type { GuideLibrary } from '../guides/library.js';
import { guideIdParams, guideResponse } from '../guides/routes.js';
import { errorResponses } from '../http/errors.js';
import type { Metrics } from '../metrics/registry.js';
import { OWNER_APP_PREFIX, ownerAuthHook, parseOwnerBasic } from '../owners/http-auth.js';
import { type OwnerStore, ownerUpdate } from '../owners/store.js';
import { verifyGuideLink } from './links.js';
import { type PushService, receiptSchema } from './service.js';

const tags = ['notifications'];
/** Responses are documented in docs/guides.md; the schema passes them through as built. */
const body = z.looseObject({});
const appTags = ['owner app'];
const idParams = z.object({ id: z.string().min(1).max(64) });

export interface PushRouteDeps {
  push: PushService;
  owners: OwnerStore;
  guides: GuideLibrary;
  linkKey: string;
  metrics?: Metrics;
  now?: () => number;
}

export function pushRoutes(d: PushRouteDeps) {
  const now = d.now ?? Date.now;
  return async function pushPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();

    app.get(
      '/api/v1/notifications',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: 'Notifications pushed to owners, newest first',
          tags,
          querystring: z.object({
            ownerId: z.string().max(128).optional(),
            ticketId: z
              .string()
              .regex(/^\d{1,19}$/)
              .optional(),
            limit: z.coerce.number().int().min(1).max(1000).optional(),
          }),
          response: { 200: body, ...errorResponses },
        },
      },
      async (request) => ({ items: await d.push.list(request.query) }),
    );
    app.get(
      '/api/v1/notifications/:id',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: 'One notification with its receipts',
          tags,
          params: idParams,
          response: { 200: body, ...errorResponses },
        },
      },
      async (request) => {
        const n = await d.push.get(request.params.id);
        if (!n) throw new FaultlineError('FL_NOT_FOUND', `no notification ${request.params.id}`);
        return n;
      },
    );
    app.get(
      '/api/v1/stats/owner-feedback',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: 'Guides sent, held and delivered, receipts (fixed / not fixed) and satisfaction scores',
          tags,
          querystring: z.object({ since: z.iso.datetime({ offset: true }).optional() }),
          response: { 200: body, ...errorResponses },
        },
      },
      async (request) =>
        d.push.stats(request.query.since ? new Date(request.query.since) : new Date(now() - 30 * 86_400_000)),
    );

    // The owner app: every route below authenticates an owner.
    const ownerApp: FastifyPluginAsync = async (inner) => {
      const a = inner.withTypeProvider<ZodTypeProvider>();
      a.addHook('onRequest', ownerAuthHook(d.owners, d.metrics));
      a.get(
        `${OWNER_APP_PREFIX}/me`,
        {
          config: { public: true },
          schema: {
            summary: "The owner's own settings (owner credential)",
            tags: appTags,
            response: { 200: body, ...errorResponses },
          },
        },
        async (request) => {
          const o = await d.owners.get(request.ownerId!);
          if (!o) throw new FaultlineError('FL_NOT_FOUND', 'no such owner');
          return o;
        },
      );
      a.patch(
        `${OWNER_APP_PREFIX}/me`,
        {
          config: { public: true },
          schema: {
            summary: 'Change locale, time zone, quiet hours, push token or secret (owner credential)',
            tags: appTags,
            body: ownerUpdate.omit({ disabled: true }),
            response: { 200: body, ...errorResponses },
          },
        },
        async (request) => d.owners.update(request.ownerId!, request.body),
      );
      a.get(
        `${OWNER_APP_PREFIX}/notifications`,
        {
          config: { public: true },
          schema: {
            summary: 'Notifications sent and not yet confirmed delivered (owner credential)',
            tags: appTags,
            response: { 200: body, ...errorResponses },
          },
        },
        async (request) => ({
          items: (await d.push.pending(request.ownerId!)).map((n) => n.message).filter((m) => m !== null),
        }),
      );
      a.post(
        `${OWNER_APP_PREFIX}/notifications/:id/receipts`,
        {
          config: { public: true },
          schema: {
            summary: 'Report delivered, opened, fixed, not_fixed, or a survey answer (owner credential)',
            tags: appTags,
            params: idParams,
            body: receiptSchema.omit({ notification: true }),
            response: { 200: body, ...errorResponses },
          },
        },
        async (request) => {
          const n = await d.push.receipt(request.ownerId!, {
            ...request.body,
            notification: request.params.id,
          });
          return {
            id: n.id,
            deliveredAt: n.deliveredAt,
            openedAt: n.openedAt,
            outcome: n.outcome,
            survey: n.survey,
          };
        },
      );
    };
    await app.register(ownerApp);

    // A guide opens with the owner credential or with the signed link a notification carries.
    const ownerGuide: FastifyPluginAsync = async (inner) => {
      const a = inner.withTypeProvider<ZodTypeProvider>();
      const basic = ownerAuthHook(d.owners, d.metrics);
      const linkQuery = z.object({
        locale: z.string().max(35).optional(),
        owner: z.string().max(128).optional(),
        exp: z.coerce.number().int().optional(),
        sig: z.string().max(128).optional(),
      });
      a.get(
        `${OWNER_APP_PREFIX}/guides/:id`,
        {
          config: { public: true },
          schema: {
            summary:
              "A full guide for the owner's app: owner credential, or the signed link from a notification",
            tags: appTags,
            params: guideIdParams,
            querystring: linkQuery,
            response: { 200: body, ...errorResponses },
          },
          onRequest: async (request, reply) => {
            const q = request.query as Record<string, string | undefined>;
            if (q.sig !== undefined && !parseOwnerBasic(request.headers.authorization)) {
              const ok =
                q.owner !== undefined &&
                q.locale !== undefined &&
                verifyGuideLink(
                  d.linkKey,
                  {
                    guideId: (request.params as { id: string }).id,
                    locale: q.locale,
                    ownerId: q.owner,
                    exp: Number(q.exp),
                  },
                  q.sig,
                  now(),
                );
              if (!ok) {
                d.metrics?.httpAuthFailures.inc({ reason: 'invalid' });
                throw new FaultlineError('FL_AUTH_INVALID', 'the guide link is not valid or has expired');
              }
              return;
            }
            await basic(request, reply);
          },
        },
        async (request) => guideResponse(d.guides, request.params.id, request.query.locale),
      );
    };
    await app.register(ownerGuide);
  };
}
