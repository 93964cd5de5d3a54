/**
 * The push service over a real ticket service, outbox and guide set on a test
 * database, with a hand-moved clock and an in-app channel that records what it
 * was asked to publish.
 */
import type { Db } from '../../src/db/db.js';
import { GuideLibrary } from '../../src/guides/library.js';
import { OwnerStore } from '../../src/owners/store.js';
import { GATEWAY_RECEIVER, type PushConfigInput, pushConfig } from '../../src/push/config.js';
import { type InAppMessage, PushService } from '../../src/push/service.js';
import { ticketPort } from '../../src/push/tickets-port.js';
import type { RuleFired } from '../../src/rules/types.js';
import { type TicketsConfigInput, ticketsConfig } from '../../src/tickets/config.js';
import { TicketService } from '../../src/tickets/service.js';
import { webhookTransport } from '../../src/webhooks/http.js';
import { Outbox } from '../../src/webhooks/outbox.js';
import { type Clock, clock, fired, T0 } from '../tickets/fixtures.js';

export const LINK_KEY = 'test-link-key-0123456789abcdef';
export const GATEWAY_SECRET = 'gateway-secret-0123456789';
/** 17:00 in Shanghai, the owners' default zone: outside the default quiet hours. */
export const DAYTIME = T0;

export interface PushRig {
  clock: Clock;
  tickets: TicketService;
  outbox: Outbox;
  owners: OwnerStore;
  guides: GuideLibrary;
  push: PushService;
  /** What the in-app channel published, in order. */
  published: Array<{ ownerId: string; message: InAppMessage }>;
  /** The rule engine's view, as a test sets it. */
  firing: Set<string>;
  /** A rule event through both listeners, as the bus would deliver it. */
  fire(e: RuleFired): Promise<string | null>;
}

export async function pushRig(
  db: Db,
  o: { push?: PushConfigInput; tickets?: TicketsConfigInput; gatewayUrl?: string; clock?: Clock } = {},
): Promise<PushRig> {
  const c = o.clock ?? clock(DAYTIME);
  const outbox = new Outbox(db, {
    now: c.now,
    random: () => 0.5,
    initialBackoffMs: 1_000,
    maxBackoffMs: 60_000,
    maxAttempts: 5,
  });
  const tickets = new TicketService({ db, config: ticketsConfig(o.tickets ?? {}), outbox, now: c.now });
  const guides = new GuideLibrary({ paths: ['guides'] });
  const owners = new OwnerStore(db, { now: c.now });
  const firing = new Set<string>();
  const push = new PushService({
    db,
    config: pushConfig({
      ...(o.gatewayUrl ? { gateway: { url: o.gatewayUrl, secret: GATEWAY_SECRET, timeoutMs: 5_000 } } : {}),
      ...o.push,
    }),
    guides,
    owners,
    tickets: ticketPort(tickets, db),
    outbox,
    linkKey: LINK_KEY,
    now: c.now,
    stillFiring: (ruleId, deviceId) => firing.has(`${ruleId}:${deviceId}`),
  });
  if (o.gatewayUrl) {
    outbox.setTransport(
      GATEWAY_RECEIVER,
      webhookTransport(
        { name: GATEWAY_RECEIVER, url: o.gatewayUrl, secret: GATEWAY_SECRET, timeoutMs: 5_000 },
        c.now,
      ),
    );
  }
  const published: PushRig['published'] = [];
  push.setInApp({
    publish: async (ownerId, payload) => {
      published.push({ ownerId, message: JSON.parse(payload) as InAppMessage });
    },
  });
  // The cursor starts at the newest timeline entry: set it before any ticket exists.
  await push.runOnce();
  return {
    clock: c,
    tickets,
    outbox,
    owners,
    guides,
    push,
    published,
    firing,
    async fire(e) {
      await push.noteRuleEvent(e);
      return (await tickets.handleFired(e)).ticketId;
    },
  };
}

/** A rule event of a shipped rule for a device of an owner. */
export function ruleEvent(
  ruleId: string,
  deviceId: string,
  ownerId: string,
  o: { locale?: string; model?: string; guide?: string | null; safety?: boolean; firingSince?: number } = {},
): RuleFired {
  const e = fired({
    ruleId,
    deviceId,
    model: o.model ?? (ruleId.startsWith('rv-') ? 'RV-200' : 'AC-9000'),
    owner: ownerId,
    severity: 'minor',
    category: 'usability',
    safety: o.safety ?? false,
    actions: { ticket: true, guide: o.guide === undefined ? ruleId : o.guide, autoClose: false },
    ...(o.firingSince !== undefined ? { firingSince: o.firingSince } : {}),
  });
  e.device.ownerLocale = o.locale ?? 'zh-CN';
  return e;
}

export const ownerSecret = (id: string) => `secret-of-${id}-0123456789`;
