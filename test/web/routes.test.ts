/**
 * The desk's HTTP side without a browser: /api/v1/me for every role, the queue
 * behind a token, and the page: a notice (and one log line) while web/dist is
 * missing, the built page at / and /desk/... once it exists, hashed assets cached
 * for good, nothing outside the build directory.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Queryable } from '../../src/db/db.js';
import { webRoutes } from '../../src/web/index.js';
import { tempDir } from '../helpers/process.js';
import { auth, type Harness, startHarness } from '../http/harness.js';

let h: Harness;
let dist: { path: string; remove(): void };
const lines: Array<{ level: number; msg: string }> = [];

beforeAll(async () => {
  dist = tempDir('web-dist');
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
        done();
      },
    }),
  );
  // The harness opens its own database; the routes reach it through this once it exists.
  let db: Queryable | null = null;
  const lazy: Queryable = { query: (sql, params) => db!.query(sql, params) };
  h = await startHarness({
    extraRoutes: webRoutes({ db: lazy, log, distCandidates: [join(dist.path, 'dist')] }),
  });
  db = h.db;
});

afterAll(async () => {
  await h?.close();
  dist?.remove();
});

describe('desk API', () => {
  it('tells every role who it is, and nobody without a token', async () => {
    for (const [role, name] of [
      ['admin', 'admin'],
      ['engineer', 'field-engineers'],
      ['staff', 'service-desk'],
    ] as const) {
      const res = await h.app.inject({ method: 'GET', url: '/api/v1/me', headers: auth(role) });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ name, role });
    }
    const anonymous = await h.app.inject({ method: 'GET', url: '/api/v1/me' });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json().error.code).toBe('FL_AUTH_MISSING');
  });

  it('serves the queue and the trend to staff, validates the query, and refuses without a token', async () => {
    const q = await h.app.inject({ method: 'GET', url: '/api/v1/desk/queue', headers: auth('staff') });
    expect(q.statusCode).toBe(200);
    expect(q.json()).toMatchObject({ items: [], total: 0, offset: 0, limit: 100 });
    const bad = await h.app.inject({
      method: 'GET',
      url: '/api/v1/desk/queue?status=lost',
      headers: auth('staff'),
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('FL_VALIDATION');
    const facets = await h.app.inject({ method: 'GET', url: '/api/v1/desk/facets', headers: auth('staff') });
    expect(facets.json()).toEqual({ team: [], model: [], rule: [], region: [] });
    const trend = await h.app.inject({
      method: 'GET',
      url: '/api/v1/desk/trend?hours=24',
      headers: auth('engineer'),
    });
    expect(trend.statusCode).toBe(200);
    expect(trend.json().buckets).toHaveLength(24);
    expect((await h.app.inject({ method: 'GET', url: '/api/v1/desk/queue' })).statusCode).toBe(401);
  });

  it('documents the desk routes in the OpenAPI document and leaves the page routes out', async () => {
    const doc = (await h.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, Record<string, { summary?: string; tags?: string[] }>>;
    };
    for (const path of ['/api/v1/me', '/api/v1/desk/queue', '/api/v1/desk/facets', '/api/v1/desk/trend']) {
      expect(doc.paths[path]?.get?.summary, path).toBeTruthy();
      expect(doc.paths[path]?.get?.tags, path).toEqual(['service desk']);
    }
    expect(
      Object.keys(doc.paths).filter((p) => p === '/' || p.startsWith('/desk') || p.startsWith('/assets')),
    ).toEqual([]);
  });
});

describe('the page', () => {
  it('answers a notice that says how to build it while web/dist is missing, and logs that once', async () => {
    const warnings = lines.filter((l) => l.level === 40 && l.msg.includes('npm run build'));
    expect(warnings).toHaveLength(1);
    for (const url of ['/', '/desk', '/desk/tickets/12']) {
      const res = await h.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.body).toContain('npm run build');
    }
    expect((await h.app.inject({ method: 'GET', url: '/assets/index-abc.js' })).statusCode).toBe(404);
  });

  it('serves the build at / and every /desk path, with assets cached for good and nothing outside it', async () => {
    const root = join(dist.path, 'dist');
    mkdirSync(join(root, 'assets'), { recursive: true });
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>desk</title><div id="app"></div>');
    writeFileSync(join(root, 'assets', 'index-abc.js'), 'console.log(1)');
    writeFileSync(join(dist.path, 'secret.txt'), 'outside the build');

    for (const url of ['/', '/desk/', '/desk/tickets/12', '/desk/fleet?x=1']) {
      const res = await h.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      expect(res.body).toContain('<div id="app">');
      expect(res.headers['cache-control']).toBe('no-cache');
      expect(res.headers['content-security-policy']).toContain("default-src 'self'");
      expect(res.headers['referrer-policy']).toBe('no-referrer');
    }
    const js = await h.app.inject({ method: 'GET', url: '/assets/index-abc.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect(js.headers['cache-control']).toContain('immutable');
    for (const url of [
      '/assets/../../secret.txt',
      '/assets/%2e%2e/%2e%2e/secret.txt',
      '/assets/missing.js',
    ]) {
      const res = await h.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
      expect(res.body).not.toContain('outside the build');
    }
  });
});
