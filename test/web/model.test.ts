/**
 * The page takes the ticket lifecycle from src/tickets/model.ts and adds its own role
 * helpers, and carries one dictionary per locale. These fail when the page's view
 * drifts from the server, or when a value the page translates has no entry.
 */
import { describe, expect, it } from 'vitest';
import { ROLES } from '../../src/config/schema.js';
import * as server from '../../src/tickets/model.js';
import { COMMENT, WORK } from '../../src/tickets/routes.js';
import { en } from '../../web/src/i18n/en.js';
import { zh } from '../../web/src/i18n/zh.js';
import * as page from '../../web/src/model.js';

describe("the page's copy of the ticket model", () => {
  it('matches the server: statuses, transitions, event kinds, waiting reasons, roles', () => {
    expect(page.STATUSES).toEqual(server.STATUSES);
    expect(page.FINAL_STATUSES).toEqual(server.FINAL_STATUSES);
    expect(page.TRANSITIONS).toEqual(server.TRANSITIONS);
    expect(page.EVENT_KINDS).toEqual(server.EVENT_KINDS);
    expect(page.WAITING_ON).toEqual(server.WAITING_ON);
    expect(page.ROLES).toEqual(ROLES);
    expect(page.WORK_ROLES).toEqual(WORK);
    expect(page.COMMENT_ROLES).toEqual(COMMENT);
  });

  it('offers staff no admin-only change: closing an unfixed ticket', () => {
    expect(page.allowedTargets('open', 'staff')).toEqual([
      'acknowledged',
      'in_progress',
      'waiting',
      'resolved',
    ]);
    expect(page.allowedTargets('open', 'admin')).toContain('closed');
    expect(page.allowedTargets('open', 'engineer')).toEqual([]);
  });
});

describe('dictionaries', () => {
  it('translate every status, event kind, role, waiting reason, severity and category the page shows', () => {
    const keys = [
      ...server.STATUSES.map((s) => `status.${s}`),
      ...server.EVENT_KINDS.map((k) => `kind.${k}`),
      ...ROLES.map((r) => `role.${r}`),
      ...server.WAITING_ON.map((w) => `waitingOn.${w}`),
      ...['info', 'minor', 'major', 'critical'].map((s) => `severity.${s}`),
      ...['hardware_fault', 'performance', 'usability', 'feature_request', 'service_complaint'].map(
        (c) => `category.${c}`,
      ),
    ];
    expect(keys.filter((k) => !(k in en))).toEqual([]);
  });

  it('have the same keys, every value filled, and the same placeholders', () => {
    expect(Object.keys(zh).sort()).toEqual(Object.keys(en).sort());
    const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const [key, text] of Object.entries(en)) {
      const other = zh[key as keyof typeof en];
      if (key !== 'unit.sep') expect(other.trim(), key).not.toBe('');
      expect(placeholders(other), key).toEqual(placeholders(text));
    }
  });
});
