/**
 * Serves the service desk page built from web/ (npm run build) at / and
 * /desk/..., so there is no second server to run. The page itself is public;
 * everything it shows comes from the token-protected API. When the build is
 * missing the routes answer a short notice instead, and the page appears once
 * it is built, without a restart.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from '../log/logger.js';

const here = dirname(fileURLToPath(import.meta.url));

/** web/dist from the source tree (src/web) or from the compiled one (dist/src/web). */
export function webDistCandidates(): string[] {
  return [resolve(here, '../../web/dist'), resolve(here, '../../../web/dist')];
}

export function findWebDist(candidates = webDistCandidates()): string | null {
  return candidates.find((dir) => existsSync(join(dir, 'index.html'))) ?? null;
}

/**
 * The API token lives in sessionStorage and the live stream carries it in its URL, so the page
 * loads nothing from elsewhere, sends no Referer and cannot be framed.
 */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; " +
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
} as const;

const NOTICE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Faultline service desk</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem">
<h1>Faultline service desk</h1>
<p>The page is not built yet. Run <code>npm run build</code> (or <code>npx vite build web</code>) in the
Faultline directory, then reload. The API at <a href="/docs">/docs</a> works meanwhile.</p>
<p lang="zh-CN">服务台页面尚未构建。请在 Faultline 目录下运行 <code>npm run build</code>，然后刷新本页。</p>
</body></html>
`;

export interface StaticOptions {
  log: Logger;
  /** Where to look for the build; the first holding index.html wins. */
  candidates?: string[];
}

export function webStaticRoutes(options: StaticOptions) {
  const candidates = options.candidates ?? webDistCandidates();
  return async function webStaticPlugin(scope: FastifyInstance): Promise<void> {
    if (!findWebDist(candidates)) {
      options.log.warn(
        { component: 'web' },
        `service desk page not built (no web/dist): \`npm run build\` builds it; serving a notice at / meanwhile`,
      );
    }
    // No root: each reply names the directory, which may appear after start.
    await scope.register(fastifyStatic, { serve: false });

    const page = async (_: unknown, reply: FastifyReply) => {
      reply.headers(PAGE_HEADERS).header('cache-control', 'no-cache');
      const dist = findWebDist(candidates);
      if (!dist) return reply.code(200).type('text/html; charset=utf-8').send(NOTICE);
      return reply.sendFile('index.html', dist, { cacheControl: false });
    };
    const pageRoute = { config: { public: true }, schema: { hide: true } } as const;
    scope.get('/', pageRoute, page);
    scope.get('/desk', pageRoute, page);
    scope.get('/desk/*', pageRoute, page);

    scope.get('/assets/*', pageRoute, async (request, reply) => {
      const dist = findWebDist(candidates);
      const file = (request.params as { '*': string })['*'];
      if (!dist) return reply.callNotFound();
      reply.header('x-content-type-options', 'nosniff');
      // Vite puts a content hash in every asset name: a changed file is a new URL.
      return reply.sendFile(`assets/${file}`, dist, { maxAge: '365d', immutable: true });
    });
  };
}
