/** Rule events as the engine emits them, a clock tests move by hand, and a service over a test database. */
import type { Db } from '../../src/db/db.js';
import type { RuleEventBase, RuleFired, RuleResolved, RuleUpdated } from '../../src/rules/types.js';
import { type TicketsConfigInput, ticketsConfig } from '../../src/tickets/config.js';
import { type Actor, TicketService } from '../../src/tickets/service.js';
import { Outbox } from '../../src/webhooks/outbox.js';

export const T0 = Date.UTC(2026, 0, 5, 9, 0, 0);
export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;

export interface Clock {
  now(): number;
  set(ms: number): void;
  advance(ms: number): number;
}

export function clock(start = T0): Clock {
  let t = start;
  return {
    now: () => t,
    set: (ms) => {
      t = ms;
    },
    advance: (ms) => {
      t += ms;
      return t;
    },
  };
}

export const STAFF: Actor = { name: 'service-desk', role: 'staff' };
export const ADMIN: Actor = { name: 'admin', role: 'admin' };
export const ENGINEER: Actor = { name: 'field-engineers', role: 'engineer' };

export interface EventOptions extends Partial<Omit<RuleEventBase, 'device'>> {
  deviceId?: string;
  model?: string;
  owner?: string | null;
  batch?: string | null;
  region?: string | null;
}

let incidentSeq = 0;

/** A rule event for a device; the fingerprint is "<rule>:<device>" like the engine's. */
export function base(o: EventOptions = {}): RuleEventBase {
  const ruleId = o.ruleId ?? 'ac-compressor-overheat';
  const deviceId = o.deviceId ?? 'ac-0001';
  const fingerprint = o.fingerprint ?? `${ruleId}:${deviceId}`;
  const firingSince = o.firingSince ?? T0 - 5 * MINUTE;
  const { deviceId: _d, model: _m, owner: _o, batch: _b, region: _r, ...rest } = o;
  return {
    ruleId,
    ruleVersion: 'v1-3f2a',
    ruleFile: 'rules/ac.yaml',
    fingerprint,
    incidentId: `${fingerprint}@${firingSince}#${++incidentSeq}`,
    title: `Compressor overheating on ${deviceId}`,
    description: `compressor_temp stayed above 90 °C for 5 minutes (95.4 °C).`,
    severity: 'major',
    category: 'hardware_fault',
    safety: false,
    actions: { ticket: true, guide: 'ac-overheat', autoClose: false },
    labels: { component: 'compressor' },
    device: {
      id: deviceId,
      model: o.model ?? 'AC-9000',
      firmware: '2.4.1',
      region: o.region === undefined ? 'cn-east' : o.region,
      batch: o.batch === undefined ? 'B2025-11' : o.batch,
      ownerId: o.owner === undefined ? `owner-${deviceId}` : o.owner,
      ownerLocale: 'zh-CN',
    },
    deviceTime: T0 - MINUTE,
    serverTime: T0,
    pendingSince: firingSince - 5 * MINUTE,
    firingSince,
    metric: 'compressor_temp',
    value: 95.4,
    threshold: 90,
    params: { limit: 90 },
    occurrences: null,
    code: null,
    flapCount: 0,
    evidence: {
      samples: [
        { ts: T0 - 3 * MINUTE, metrics: { compressor_temp: 93.1 } },
        { ts: T0 - 2 * MINUTE, metrics: { compressor_temp: 94.8 } },
        { ts: T0 - MINUTE, metrics: { compressor_temp: 95.4 } },
      ],
      faults: [],
      windows: [],
      truncated: false,
    },
    late: false,
    stale: false,
    ...rest,
  };
}

export function fired(o: EventOptions = {}): RuleFired {
  return { ...base(o), type: 'rule.fired' };
}

export function updated(
  o: EventOptions & {
    reason?: RuleUpdated['reason'];
    previousSeverity?: RuleUpdated['previousSeverity'];
  } = {},
): RuleUpdated {
  const { reason = 'occurrence', previousSeverity = null, ...rest } = o;
  return { ...base(rest), type: 'rule.updated', reason, previousSeverity };
}

/** A resolve of the same incident as `of` (the engine pairs them by incidentId). */
export function resolved(of: RuleEventBase, o: { autoClose?: boolean } = {}): RuleResolved {
  return {
    ...of,
    actions: { ...of.actions, autoClose: o.autoClose ?? of.actions.autoClose },
    type: 'rule.resolved',
    reason: 'cleared',
    resolvedAt: of.deviceTime + 10 * MINUTE,
    durationMs: 10 * MINUTE,
  };
}

export interface ServiceRig {
  service: TicketService;
  outbox: Outbox;
  clock: Clock;
}

export function rig(db: Db, config: TicketsConfigInput = {}, c: Clock = clock()): ServiceRig {
  const outbox = new Outbox(db, { now: c.now, random: () => 0.5 });
  const service = new TicketService({ db, config: ticketsConfig(config), outbox, now: c.now });
  return { service, outbox, clock: c };
}

export async function count(db: Db, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT (${sql})::int AS n`, params);
  return rows[0]!.n;
}
