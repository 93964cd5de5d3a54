/**
 * The ticket lifecycle: statuses, which change a person may make, and the
 * shapes the store and the API share. docs/tickets.md prints TRANSITIONS; a
 * test keeps the two in step.
 */
import type { Role } from '../config/schema.js';
import type { Category, EvidenceFault, EvidenceSample, EvidenceWindow, Severity } from '../rules/types.js';
import type { Priority } from './config.js';

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

/** Statuses in which a ticket no longer counts as the open ticket of its fingerprint. */
export const FINAL_STATUSES: readonly TicketStatus[] = ['resolved', 'closed'];
export const isFinal = (s: TicketStatus): boolean => FINAL_STATUSES.includes(s);

/**
 * What a person may change a status to, and which roles may. `recovered` is never set by a
 * person: only the rule engine's resolve event sets it. Moving a resolved or closed ticket to
 * `open` is a reopen. Closing a ticket that was never resolved or recovered is for admins: it
 * discards a problem without a fix (a false alarm, a duplicate).
 */
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

/** Timeline entry kinds. Webhooks and the live stream carry the same names. */
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
export type TicketEventKind = (typeof EVENT_KINDS)[number];

export interface TicketDevice {
  id: string;
  model: string;
  firmware: string | null;
  batch: string | null;
  region: string | null;
}

export interface Ticket {
  id: string;
  fingerprint: string;
  status: TicketStatus;
  title: string;
  description: string;
  ruleId: string;
  ruleVersion: string;
  code: string | null;
  /** The rule engine's id of the latest episode. */
  incidentId: string;
  device: TicketDevice;
  owner: { id: string | null; locale: string | null };
  severity: Severity;
  category: Category;
  safety: boolean;
  labels: Record<string, string>;
  team: string;
  priority: Priority;
  priorityScore: number;
  autoClose: boolean;
  assignee: string | null;
  occurrences: number;
  /** Every occurrence so far was stale (old data): the ticket was recorded and never paged. */
  stale: boolean;
  /** Times it was reopened; SLA escalations are once per cycle. */
  cycle: number;
  waitingOn: WaitingOn | null;
  previousTicketId: string | null;
  openedAt: string;
  lastFiredAt: string;
  acknowledgedAt: string | null;
  recoveredAt: string | null;
  resolvedAt: string | null;
  closedAt: string | null;
  reopenedAt: string | null;
  updatedAt: string;
  sla: {
    responseDueAt: string;
    resolutionDueAt: string;
    responseBreachedAt: string | null;
    resolutionBreachedAt: string | null;
    /** Time spent waiting (the clock was paused), in ms, including a wait in progress. */
    pausedMs: number;
    /** SLA-clock time from open (or reopen) to acknowledgement / resolution, waiting excluded. */
    responseMs: number | null;
    resolutionMs: number | null;
  };
}

export interface TimelineEntry {
  id: string;
  at: string;
  actor: string;
  kind: TicketEventKind;
  data: Record<string, unknown>;
}

export interface Occurrence {
  id: string;
  incidentId: string;
  kind: 'fired' | 'updated';
  reason: string | null;
  at: string;
  deviceTime: string;
  severity: Severity;
  metric: string | null;
  value: unknown;
  threshold: unknown;
  stale: boolean;
  late: boolean;
  evidence: {
    samples: EvidenceSample[];
    faults: EvidenceFault[];
    windows: EvidenceWindow[];
    truncated: boolean;
  };
}

export interface TicketLink {
  kind: string;
  ref: string;
  at: string;
  data: Record<string, unknown>;
}

export interface SlaPause {
  startedAt: string;
  endedAt: string | null;
  reason: string | null;
}

export interface TicketDetail extends Ticket {
  timeline: TimelineEntry[];
  occurrenceList: Occurrence[];
  links: TicketLink[];
  comments: Array<{ id: string; at: string; actor: string; text: string }>;
  pauses: SlaPause[];
}

export interface FleetIncident {
  id: string;
  status: 'open' | 'closed';
  ruleId: string;
  code: string | null;
  scope: 'model' | 'batch';
  scopeValue: string;
  model: string;
  title: string;
  severity: Severity;
  category: Category;
  safety: boolean;
  team: string;
  priority: Priority;
  priorityScore: number;
  affectedDevices: number;
  affectedCustomers: number;
  openedAt: string;
  lastLinkedAt: string;
  closedAt: string | null;
  updatedAt: string;
}

/** What the service tells live screens and webhooks after each committed change. */
export interface TicketChange {
  /** The timeline entry's id: increases with every change, so it orders and resumes streams. */
  eventId: string;
  kind: TicketEventKind;
  at: string;
  actor: string;
  data: Record<string, unknown>;
  ticket: Ticket;
}

/**
 * A place in the timeline for readers that must see every entry exactly once: the writing
 * transaction (xid8, as text) and the entry id. Entries are read in (tx, id) order and only once
 * their transaction is older than every transaction still running, so none can commit behind it.
 */
export interface TimelinePosition {
  tx: string;
  id: string;
}

/** A timeline entry with the position right after it (what a reader stores as its cursor). */
export type PositionedChange = TicketChange & { position: TimelinePosition };
