/**
 * End-to-end bench: a fleet streams at a sustained rate while some units
 * overheat; for each, the wall time from sending the sample that made the rule
 * fire to the ticket opening (API) and to the guide reaching the owner's app.
 */
import { deriveOwnerSecret, deriveSecret } from './credentials.js';
import { expandFleet, parseFleet } from './fleet/spec.js';
import { FleetStream } from './fleet/stream.js';
import { OwnerApp } from './owner-app.js';
import { fleetDevices, provision } from './provision.js';
import { Fleet, type FleetSummary } from './transport/fleet.js';

export interface BenchOptions {
  brokerUrl: string;
  apiUrl: string;
  wsUrl: string;
  token: string;
  devices: number;
  faulty: number;
  speed: number;
  durationMs: number;
  settleMs?: number;
  now?: () => number;
}

export interface Percentiles {
  n: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

export interface BenchReport {
  devices: number;
  faulty: number;
  speed: number;
  wallMs: number;
  sent: number;
  acked: number;
  /** Messages per second over the run, as the broker acknowledged them. */
  ingestPerSecond: number;
  brokerAckMs: Percentiles;
  /** From sending the firing sample to the ticket's openedAt. */
  telemetryToTicketMs: Percentiles;
  /** From sending the firing sample to the owner's app receiving the guide. */
  telemetryToPushMs: Percentiles;
  missing: { tickets: number; guides: number };
  run: Pick<FleetSummary, 'connectFailures' | 'unacked' | 'publishErrors'>;
}

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { n: 0, p50: null, p99: null, max: null };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]! };
}

interface TicketDetail {
  id: string;
  openedAt: string;
  device: { id: string };
  occurrenceList?: Array<{ kind: string; deviceTime: string }>;
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const now = o.now ?? Date.now;
  if (o.faulty > o.devices) throw new Error('--faulty cannot exceed --devices');
  // A run of its own: fresh ids, so earlier runs' open tickets do not swallow this run's guides.
  const run = now().toString(36);
  const seed = `bench-${run}`;
  const groups: unknown[] = [];
  if (o.faulty > 0) {
    groups.push({
      model: 'AC-9000',
      count: o.faulty,
      idPrefix: `b${run}-hot-`,
      faults: { overheat: { at: '10m' } },
    });
  }
  if (o.devices > o.faulty) groups.push({ model: 'AC-9000', count: o.devices - o.faulty });
  const fleetFile = parseFleet(
    { seed, idPrefix: `b${run}-`, ownerPrefix: `b${run}-owner-`, locales: { en: 1 }, groups },
    'bench',
  );
  const specs = expandFleet(fleetFile, { durationMs: o.durationMs });
  const faulty = specs.filter((s) => s.faults.length > 0);
  const startMs = Math.floor((now() - o.durationMs) / 1000) * 1000;
  const endMs = startMs + o.durationMs;

  const owners = new Map(
    specs.map((s) => [
      s.ownerId,
      { id: s.ownerId, locale: s.ownerLocale, secret: deriveOwnerSecret(seed, s.ownerId), quietHours: 'off' },
    ]),
  );
  const provisioned = await provision({
    apiUrl: o.apiUrl,
    token: o.token,
    devices: fleetDevices(specs, seed),
    owners: [...owners.values()],
  });
  if (provisioned.failed.length > 0)
    throw new Error(`provisioning failed: ${provisioned.failed[0]!.message}`);

  const apps = new Map(
    faulty.map((s) => [
      s.id,
      new OwnerApp({ wsUrl: o.wsUrl, ownerId: s.ownerId, secret: deriveOwnerSecret(seed, s.ownerId) }),
    ]),
  );
  const faultyIds = new Set(faulty.map((s) => s.id));
  // Device time of each telemetry sample of a faulty unit -> wall time it was sent.
  const sentAt = new Map<string, Array<[number, number]>>();
  const ackMs: number[] = [];
  try {
    for (const app of apps.values()) await app.start();
    const fleet = new Fleet({
      brokerUrl: o.brokerUrl,
      source: new FleetStream(specs, { seed, startMs, endMs, qos: 1 }),
      deviceIds: specs.map((s) => s.id),
      secretFor: (id) => deriveSecret(seed, id),
      startMs,
      endMs,
      speed: o.speed,
      connectRate: 500,
      hooks: {
        onSend: (ev) => {
          if (!faultyIds.has(ev.deviceId) || !ev.topic.endsWith('/telemetry')) return;
          const list = sentAt.get(ev.deviceId) ?? [];
          if (list.length === 0) sentAt.set(ev.deviceId, list);
          list.push([ev.at, Date.now()]);
        },
        onAck: (_ev, sent, ack, err) => {
          if (!err) ackMs.push(ack - sent);
        },
      },
    });
    await fleet.start();
    const summary = await fleet.finished;

    const tickets = new Map<string, TicketDetail>();
    const deadline = now() + (o.settleMs ?? 60_000);
    for (;;) {
      for (const s of faulty) {
        if (tickets.has(s.id)) continue;
        const q = new URLSearchParams({ rule: 'ac-compressor-overheat', deviceId: s.id });
        const list = (await (
          await fetch(`${o.apiUrl}/api/v1/tickets?${q}`, { headers: { Authorization: `Bearer ${o.token}` } })
        ).json()) as { items: Array<{ id: string }> };
        const item = list.items[0];
        if (!item) continue;
        const detail = (await (
          await fetch(`${o.apiUrl}/api/v1/tickets/${item.id}`, {
            headers: { Authorization: `Bearer ${o.token}` },
          })
        ).json()) as TicketDetail;
        tickets.set(s.id, detail);
      }
      const guides = [...apps.values()].filter((a) =>
        a.received.some((r) => r.notification.kind === 'guide'),
      );
      if ((tickets.size === faulty.length && guides.length === faulty.length) || now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }

    const toTicket: number[] = [];
    const toPush: number[] = [];
    for (const s of faulty) {
      const t = tickets.get(s.id);
      const fired = t?.occurrenceList?.find((x) => x.kind === 'fired') ?? t?.occurrenceList?.[0];
      if (!t || !fired) continue;
      const firedAt = Date.parse(fired.deviceTime);
      // The firing sample: the first one sent at or after the device time the rule fired at.
      const sample = sentAt.get(s.id)?.find(([at]) => at >= firedAt);
      if (!sample) continue;
      toTicket.push(Date.parse(t.openedAt) - sample[1]);
      const guide = apps.get(s.id)!.received.find((r) => r.notification.kind === 'guide');
      if (guide) toPush.push(guide.receivedAt - sample[1]);
    }
    return {
      devices: specs.length,
      faulty: faulty.length,
      speed: o.speed,
      wallMs: summary.wallMs,
      sent: summary.sent.total,
      acked: summary.acked,
      ingestPerSecond: summary.wallMs > 0 ? Math.round((summary.acked / summary.wallMs) * 1000) : 0,
      brokerAckMs: percentiles(ackMs),
      telemetryToTicketMs: percentiles(toTicket),
      telemetryToPushMs: percentiles(toPush),
      missing: { tickets: faulty.length - toTicket.length, guides: faulty.length - toPush.length },
      run: {
        connectFailures: summary.connectFailures,
        unacked: summary.unacked,
        publishErrors: summary.publishErrors,
      },
    };
  } finally {
    for (const app of apps.values()) await app.stop();
  }
}
