/** /api/v1/guides: the loaded guides for staff and engineers, and reload. */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { FaultlineError } from '../errors/catalogue.js';
import { errorResponses } from '../http/errors.js';
import { formatIssue, formatWarning } from '../rules/loader.js';
import type { GuideLibrary } from './library.js';
import { canonicalLocale } from './locale.js';
import { GUIDE_ID_PATTERN, guideView, LOCALE_PATTERN } from './model.js';

const tags = ['guides'];
/** Responses are documented in docs/guides.md; the schema passes them through as built. */
const body = z.looseObject({});
export const guideIdParams = z.object({ id: z.string().regex(GUIDE_ID_PATTERN, 'not a guide id') });
export const localeQuery = z.object({
  locale: z.string().regex(LOCALE_PATTERN, 'a language tag such as zh-CN or en').optional(),
});

/** One guide in the best locale, with the locales it exists in. */
export function guideResponse(guides: GuideLibrary, id: string, locale: string | undefined) {
  const g = guides.get(id, locale ?? null);
  if (!g) throw new FaultlineError('FL_NOT_FOUND', `no guide ${id}`, { id });
  return guideView(g, {
    requestedLocale: canonicalLocale(locale) ?? guides.defaultLocale,
    locales: guides.locales(id),
  });
}

export function guideRoutes(guides: GuideLibrary) {
  return async function guidesPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();
    app.get(
      '/api/v1/guides',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: 'Loaded troubleshooting guides, their locales and load problems',
          tags,
          response: { 200: body, ...errorResponses },
        },
      },
      async () => ({
        ...guides.describe(),
        guides: guides.list().map(({ id, locales, guide }) => ({
          id,
          locales,
          title: (guides.get(id, guides.defaultLocale) ?? guide).title,
          signal: guide.signal,
          ownerFixable: guide.ownerFixable,
          appliesTo: {
            rules: guide.rules,
            codes: guide.codes,
            models: guide.models,
            firmware: guide.firmware,
          },
        })),
      }),
    );
    app.get(
      '/api/v1/guides/:id',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: 'One guide, in the requested locale or its fallback (zh-CN → zh → en)',
          tags,
          params: guideIdParams,
          querystring: localeQuery,
          response: { 200: body, ...errorResponses },
        },
      },
      async (request) => guideResponse(guides, request.params.id, request.query.locale),
    );
    app.post(
      '/api/v1/guides/reload',
      {
        config: { roles: ['admin', 'engineer'] },
        schema: {
          summary: 'Reload guide files now; a broken change is refused and the old guides stay',
          tags,
          response: { 200: body, ...errorResponses },
        },
      },
      async () => {
        const r = guides.reload();
        return {
          applied: r.errors.length === 0,
          guides: guides.size,
          errors: r.errors.map((i) => formatIssue(i)),
          warnings: r.warnings.map(formatWarning),
        };
      },
    );
  };
}
