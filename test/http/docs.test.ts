import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ROLES } from '../../src/config/schema.js';
import { ERROR_CATALOGUE } from '../../src/errors/catalogue.js';
import { buildWithoutDb } from './harness.js';

const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
const server = await buildWithoutDb([]);
afterAll(() => server.close());

/** Rows of a markdown table whose first cell matches `first`, split into trimmed cells. */
function rows(first: RegExp): string[][] {
  return doc
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) =>
      line
        .slice(1, -1)
        .split('|')
        .map((c) => c.trim()),
    )
    .filter((cells) => first.test(cells[0] ?? ''));
}

describe('docs/api.md', () => {
  it('lists every catalogue code with its status, and no code that does not exist', () => {
    const listed = rows(/^`FL_[A-Z_]+`$/).map(([code, status]) => [code!.slice(1, -1), Number(status)]);
    const catalogue = Object.entries(ERROR_CATALOGUE).map(([code, { status }]) => [code, status]);
    expect(listed.sort()).toEqual(catalogue.sort());
  });

  it('has a roles table that matches the roles each route declares', () => {
    const header = rows(/^Route$/)[0];
    expect(header?.slice(1)).toEqual([...ROLES]);
    const documented = rows(/^`(GET|POST|PUT|PATCH|DELETE) \/api\//).map(([route, ...cells]) => {
      expect(
        cells.every((c) => c === 'yes' || c === 'no'),
        route,
      ).toBe(true);
      return `${route!.slice(1, -1)} ${ROLES.filter((_, i) => cells[i] === 'yes').join(',')}`;
    });
    const declared = server.app
      .protectedRoutes()
      .filter((r) => r.method !== 'HEAD')
      .map((r) => `${r.method} ${r.url} ${ROLES.filter((role) => r.roles.includes(role)).join(',')}`);
    expect(documented.sort()).toEqual(declared.sort());
  });
});
