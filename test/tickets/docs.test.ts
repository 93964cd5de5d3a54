/** docs/tickets.md states the transition table, the route roles and the priority example: check them against the code. */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ROLES } from '../../src/config/schema.js';
import { ticketsConfig } from '../../src/tickets/config.js';
import { STATUSES, TRANSITIONS } from '../../src/tickets/model.js';
import { priorityOf } from '../../src/tickets/priority.js';
import { ticketRoutes } from '../../src/tickets/routes.js';
import { TicketService } from '../../src/tickets/service.js';
import { Outbox } from '../../src/webhooks/outbox.js';
import { webhookRoutes } from '../../src/webhooks/routes.js';
import { buildWithoutDb, unusedDb } from '../http/harness.js';

const doc = readFileSync(new URL('../../docs/tickets.md', import.meta.url), 'utf8');

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

const server = await buildWithoutDb([
  ticketRoutes(new TicketService({ db: unusedDb, config: ticketsConfig() })),
  webhookRoutes(new Outbox(unusedDb)),
]);
afterAll(() => server.close());

describe('docs/tickets.md', () => {
  it('prints the transition table the service enforces', () => {
    const header = rows(/^from \\ to$/)[0]!
      .slice(1)
      .map((c) => c.replaceAll('`', ''));
    const documented: Record<string, Record<string, string>> = {};
    for (const [from, ...cells] of rows(new RegExp(`^\`(${STATUSES.join('|')})\`$`))) {
      documented[from!.replaceAll('`', '')] = Object.fromEntries(
        header.map((to, i) => [to, cells[i]!]).filter(([, c]) => c !== '—'),
      );
    }
    const actual = Object.fromEntries(
      STATUSES.map((from) => [
        from,
        Object.fromEntries(Object.entries(TRANSITIONS[from]).map(([to, roles]) => [to, roles!.join(', ')])),
      ]),
    );
    expect(documented).toEqual(actual);
  });

  it('has a roles table that matches the roles each ticket route declares', () => {
    const documented = rows(/^`(GET|POST) \/api\//)
      .map(
        ([route, ...cells]) =>
          `${route!.slice(1, -1)} ${ROLES.filter((_, i) => cells[i] === 'yes').join(',')}`,
      )
      .sort();
    const declared = server.app
      .protectedRoutes()
      .filter((r) => r.method !== 'HEAD')
      .filter((r) => /^\/api\/v1\/(tickets|incidents|stats\/tickets|webhooks)/.test(r.url))
      .map((r) => `${r.method} ${r.url} ${ROLES.filter((role) => r.roles.includes(role)).join(',')}`)
      .sort();
    expect(documented).toEqual(declared);
  });

  it('works the priority example the way the code does', () => {
    const p = ticketsConfig().priority;
    const one = priorityOf({ severity: 'major', category: 'hardware_fault', customers: 1, safety: false }, p);
    expect(one).toMatchObject({ score: 3.1, priority: 'P2' });
    expect(doc).toContain('`1 × 0.3 + 4 × 0.4 + 4 × 0.3 = 3.1` → **P2**');
    expect(
      priorityOf({ severity: 'major', category: 'hardware_fault', customers: 19, safety: false }, p),
    ).toMatchObject({ score: 3.7, priority: 'P2' });
    expect(
      priorityOf({ severity: 'major', category: 'hardware_fault', customers: 60, safety: false }, p),
    ).toMatchObject({ score: 4, priority: 'P1' });
    expect(
      priorityOf({ severity: 'minor', category: 'performance', customers: 1, safety: false }, p),
    ).toMatchObject({
      score: 2,
      priority: 'P3',
    });
    expect(
      priorityOf({ severity: 'info', category: 'feature_request', customers: 1, safety: true }, p).priority,
    ).toBe('P1');
  });
});
