/**
 * The ticket lifecycle as the page needs it: the server's own tables, imported from
 * src/tickets/model.ts (a dependency-free module, so only it enters the bundle), plus the role
 * helpers the page uses to hide what a role may not do.
 */
import {
  EVENT_KINDS,
  FINAL_STATUSES,
  STATUSES,
  type TicketStatus,
  TRANSITIONS,
  WAITING_ON,
  type WaitingOn,
} from '../../src/tickets/model.js';

export type { TicketStatus, WaitingOn };
export { EVENT_KINDS, FINAL_STATUSES, STATUSES, TRANSITIONS, WAITING_ON };

export const ROLES = ['admin', 'engineer', 'staff'] as const;
export type Role = (typeof ROLES)[number];

/** Route roles of the ticket API (src/tickets/routes.ts): who may work tickets, who may comment. */
export const WORK_ROLES: readonly Role[] = ['admin', 'staff'];
export const COMMENT_ROLES: readonly Role[] = ['admin', 'engineer', 'staff'];

/** Status changes `role` may make from `from` (a change to `open` is a reopen). */
export function allowedTargets(from: TicketStatus, role: Role): TicketStatus[] {
  const row = TRANSITIONS[from];
  return STATUSES.filter((to) => row[to]?.includes(role));
}

export const isFinal = (s: TicketStatus): boolean => FINAL_STATUSES.includes(s);
