/**
 * The ticket lifecycle as the page needs it: which status change each role may
 * make. A copy of src/tickets/model.ts (the page does not bundle server code);
 * test/web/model.test.ts fails when the two differ.
 */
export const ROLES = ['admin', 'engineer', 'staff'] as const;
export type Role = (typeof ROLES)[number];

export const STATUSES = [
  'open',
  'acknowledged',
  'in_progress',
  'waiting',
  'recovered',
  'resolved',
  'closed',
] as const;
export type TicketStatus = (typeof STATUSES)[number];
export const FINAL_STATUSES: readonly TicketStatus[] = ['resolved', 'closed'];

export const TRANSITIONS: Readonly<Record<TicketStatus, Partial<Record<TicketStatus, readonly Role[]>>>> = {
  open: {
    acknowledged: ['admin', 'staff'],
    in_progress: ['admin', 'staff'],
    waiting: ['admin', 'staff'],
    resolved: ['admin', 'staff'],
    closed: ['admin'],
  },
  acknowledged: {
    in_progress: ['admin', 'staff'],
    waiting: ['admin', 'staff'],
    resolved: ['admin', 'staff'],
    closed: ['admin'],
  },
  in_progress: {
    waiting: ['admin', 'staff'],
    resolved: ['admin', 'staff'],
    closed: ['admin'],
  },
  waiting: {
    in_progress: ['admin', 'staff'],
    resolved: ['admin', 'staff'],
    closed: ['admin'],
  },
  recovered: {
    in_progress: ['admin', 'staff'],
    resolved: ['admin', 'staff'],
    closed: ['admin', 'staff'],
  },
  resolved: {
    closed: ['admin', 'staff'],
    open: ['admin', 'staff'],
  },
  closed: {
    open: ['admin', 'staff'],
  },
};

export const WAITING_ON = ['owner', 'parts', 'other'] as const;
export type WaitingOn = (typeof WAITING_ON)[number];

export const EVENT_KINDS = [
  'ticket.opened',
  'ticket.reopened',
  'occurrence.added',
  'severity.changed',
  'priority.changed',
  'status.changed',
  'assignee.changed',
  'comment.added',
  'sla.breached',
  'oncall.paged',
  'fleet.linked',
  'link.added',
  'guide.sent',
  'rule.resolved',
] as const;

/** Route roles of the ticket API (src/tickets/routes.ts): who may work tickets, who may comment. */
export const WORK_ROLES: readonly Role[] = ['admin', 'staff'];
export const COMMENT_ROLES: readonly Role[] = ['admin', 'engineer', 'staff'];

/** Status changes `role` may make from `from` (a change to `open` is a reopen). */
export function allowedTargets(from: TicketStatus, role: Role): TicketStatus[] {
  const row = TRANSITIONS[from];
  return STATUSES.filter((to) => row[to]?.includes(role));
}

export const isFinal = (s: TicketStatus): boolean => FINAL_STATUSES.includes(s);
