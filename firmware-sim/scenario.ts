/**
 * Scenarios: a fleet with known faults, run against a live bridge, then checked
 * through the ticket API and the owners' notification topics. Everything the
 * checks read comes over HTTP and MQTT, like any other client of the bridge.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { deriveOwnerSecret, deriveSecret } from './credentials.js';
import { type DeviceSpec, expandFleet, type FleetFile, parseFleet } from './fleet/spec.js';
import { FleetStream } from './fleet/stream.js';
import { OwnerApp, type OwnerNotification } from './owner-app.js';
import { fleetDevices, type ProvisionResult, provision } from './provision.js';
import { Fleet, type FleetSummary } from './transport/fleet.js';
import { formatDuration, parseDuration, parseInstant } from './units.js';

/** "2m" or "2m device time": device time either way. */
const deviceDuration = z.string().transform((s, ctx) => {
  try {
    return parseDuration(s.replace(/\s*device time\s*$/, '').trim());
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const ticketsExpectation = z.strictObject({
  rule: z.string().min(1),
  /** A device id; without it, tickets of the rule on any device of the fleet. */
  device: z.string().optional(),
  count: z.number().int().min(0).default(1),
  priority: z.enum(['P1', 'P2', 'P3', 'P4']).optional(),
  safety: z.boolean().optional(),
  /** Device time from the device's first injected fault to the incident the ticket is for. */
  within: deviceDuration.optional(),
});

const guideExpectation = z
  .strictObject({
    /** The owner whose app must get the guide; or `device:` for that device's owner. */
    owner: z.string().optional(),
    device: z.string().optional(),
    guide: z.string().optional(),
    locale: z.string().optional(),
    signal: z.string().optional(),
  })
  .refine((g) => g.owner !== undefined || g.device !== undefined, 'give owner: or device:');

const expectation = z.union([
  z.strictObject({ tickets: ticketsExpectation }),
  z.strictObject({ guide: guideExpectation }),
]);

const scenarioSchema = z.strictObject({
  name: z.string().optional(),
  description: z.string().optional(),
  /** A fleet file's content (see docs/firmware-sim.md), inline. */
  fleet: z.unknown(),
  speed: z.number().positive().default(360),
  duration: z.string(),
  /**
   * Device time at the start, with a zone (2026-07-15T00:00:00+08:00): a fixed time of day
   * for a fault whose signature depends on it. Without it the run ends now.
   */
  start: z.string().optional(),
  /** Wall time the checks keep polling after the run before they count as failed. */
  settle: z.string().default('60s'),
  expect: z.array(expectation).min(1),
});

export type TicketsExpectation = z.infer<typeof ticketsExpectation>;
export type GuideExpectation = z.infer<typeof guideExpectation>;
export type Expectation = z.infer<typeof expectation>;

export interface Scenario {
  name: string;
  fleet: FleetFile;
  speed: number;
  durationMs: number;
  /** Fixed device time at the start; undefined: the run ends now. */
  startMs: number | undefined;
  settleMs: number;
  expect: Expectation[];
}

export function parseScenario(raw: unknown, source = 'scenario'): Scenario {
  const parsed = scenarioSchema.safeParse(raw);
  if (!parsed.success) {
    throw new Error(
      `${source}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`,
    );
  }
  const s = parsed.data;
  const fleet = parseFleet(s.fleet, `${source}: fleet`);
  const startText = s.start ?? fleet.start;
  let startMs: number | undefined;
  try {
    startMs = startText === undefined ? undefined : parseInstant(startText);
  } catch (err) {
    throw new Error(`${source}: start: ${(err as Error).message}`);
  }
  return {
    name: s.name ?? source,
    fleet,
    speed: s.speed,
    durationMs: parseDuration(s.duration),
    startMs,
    settleMs: parseDuration(s.settle),
    expect: s.expect,
  };
}

/** How far ahead of its own clock the bridge takes device timestamps (ingest.maxFutureSkewMs). */
const BRIDGE_FUTURE_SKEW_MS = 5 * 60_000;

/**
 * Device time of a scenario's run. Without a start it ends now: faster than real time, its
 * samples never lie in the bridge's future. A fixed start must keep them out of it too: the
 * device clock at wall time w is start + (w - now) * speed.
 */
export function scenarioTiming(sc: Scenario, now: number): { startMs: number; endMs: number } {
  if (sc.startMs === undefined) {
    const startMs = Math.floor((now - sc.durationMs) / 1000) * 1000;
    return { startMs, endMs: startMs + sc.durationMs };
  }
  const endMs = sc.startMs + sc.durationMs;
  const endWall = now + sc.durationMs / sc.speed;
  if (endMs > endWall + BRIDGE_FUTURE_SKEW_MS) {
    throw new Error(
      `${sc.name}: the run would reach device time ${new Date(endMs).toISOString()}, ahead of the bridge's clock, which refuses samples more than 5 min in the future; start earlier`,
    );
  }
  return { startMs: sc.startMs, endMs };
}

export function loadScenario(path: string): Scenario {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read scenario ${path}: ${(err as Error).message}`);
  }
  return parseScenario(raw, path);
}

export interface ExpectationResult {
  expectation: Expectation;
  pass: boolean;
  /** What was wanted, in words. */
  wanted: string;
  /** What was seen. */
  seen: string;
}

export interface ScenarioReport {
  name: string;
  pass: boolean;
  startMs: number;
  endMs: number;
  provisioned: ProvisionResult | undefined;
  run: FleetSummary;
  results: ExpectationResult[];
  /** Wall ms from the end of the run until every check passed (or the settle time ran out). */
  settledAfterMs: number;
}

export interface ScenarioOptions {
  brokerUrl: string;
  apiUrl: string;
  wsUrl: string;
  token: string;
  /** Register devices and owners first (idempotent). Default true. */
  provision?: boolean;
  connectRate?: number;
  now?: () => number;
  log?: (line: string) => void;
  pollMs?: number;
}

interface TicketItem {
  id: string;
  ruleId: string;
  incidentId: string;
  priority: string;
  safety: boolean;
  status: string;
  device: { id: string };
}

/** Device time (ms) of the incident a ticket is for: engine incident ids end in `@<ms>`. */
function incidentTime(t: TicketItem): number | undefined {
  const m = /@(\d+)$/.exec(t.incidentId);
  return m ? Number(m[1]) : undefined;
}

function ownerOf(specs: DeviceSpec[], g: GuideExpectation): string {
  if (g.owner !== undefined) return g.owner;
  const spec = specs.find((s) => s.id === g.device);
  if (!spec) throw new Error(`guide expectation names device ${g.device}, which is not in the fleet`);
  return spec.ownerId;
}

export async function runScenario(sc: Scenario, o: ScenarioOptions): Promise<ScenarioReport> {
  const now = o.now ?? Date.now;
  const log = o.log ?? (() => {});
  const seed = sc.fleet.seed;
  const specs = expandFleet(sc.fleet, { durationMs: sc.durationMs });
  const byId = new Map(specs.map((s) => [s.id, s]));
  for (const e of sc.expect) {
    const device = 'tickets' in e ? e.tickets.device : e.guide.device;
    if (device !== undefined && !byId.has(device))
      throw new Error(`${sc.name}: expectation names device ${device}, which is not in the fleet`);
  }
  // Refuse a start in the bridge's future before registering anything.
  scenarioTiming(sc, now());

  let provisioned: ProvisionResult | undefined;
  if (o.provision !== false) {
    const owners = new Map<string, { id: string; locale: string; secret: string; quietHours: string }>();
    for (const s of specs) {
      if (!owners.has(s.ownerId)) {
        owners.set(s.ownerId, {
          id: s.ownerId,
          locale: s.ownerLocale,
          secret: deriveOwnerSecret(seed, s.ownerId),
          quietHours: 'off',
        });
      }
    }
    provisioned = await provision({
      apiUrl: o.apiUrl,
      token: o.token,
      devices: fleetDevices(specs, seed),
      owners: [...owners.values()],
    });
    if (provisioned.failed.length > 0) {
      const f = provisioned.failed[0]!;
      throw new Error(
        `provisioning failed for ${provisioned.failed.length}: ${f.id}: ${f.status} ${f.message}`,
      );
    }
    log(`provisioned ${specs.length} device(s) and ${owners.size} owner(s)`);
  }

  // The owners' apps are connected before the run, as phones would be.
  const apps = new Map<string, OwnerApp>();
  for (const e of sc.expect) {
    if (!('guide' in e)) continue;
    const owner = ownerOf(specs, e.guide);
    if (!apps.has(owner)) {
      apps.set(
        owner,
        new OwnerApp({ wsUrl: o.wsUrl, ownerId: owner, secret: deriveOwnerSecret(seed, owner) }),
      );
    }
  }
  try {
    for (const app of apps.values()) await app.start();

    // After registration: a run that ends now ends after its devices were registered.
    const { startMs, endMs } = scenarioTiming(sc, now());
    const fleet = new Fleet({
      brokerUrl: o.brokerUrl,
      source: new FleetStream(specs, { seed, startMs, endMs, qos: 1 }),
      deviceIds: specs.map((s) => s.id),
      secretFor: (id) => deriveSecret(seed, id),
      startMs,
      endMs,
      speed: sc.speed,
      connectRate: o.connectRate ?? 500,
    });
    log(
      `running ${specs.length} device(s), ${formatDuration(sc.durationMs)} of device time from ${new Date(startMs).toISOString()} at ${sc.speed}x`,
    );
    await fleet.start();
    const run = await fleet.finished;
    if (run.connectFailures > 0 || run.unacked > 0 || run.publishErrors > 0) {
      log(
        `run: ${run.connectFailures} connect failure(s), ${run.unacked} unacknowledged, ${run.publishErrors} publish error(s)`,
      );
    }

    const runEnded = now();
    const deadline = runEnded + sc.settleMs;
    let results: ExpectationResult[];
    for (;;) {
      results = await checkAll(sc, specs, byId, apps, o, { startMs, endMs });
      if (results.every((r) => r.pass) || now() >= deadline) break;
      await new Promise((r) => setTimeout(r, o.pollMs ?? 500));
    }
    const runOk = run.connectFailures === 0 && run.unacked === 0 && run.publishErrors === 0;
    return {
      name: sc.name,
      pass: runOk && results.every((r) => r.pass),
      startMs,
      endMs,
      provisioned,
      run,
      results,
      settledAfterMs: now() - runEnded,
    };
  } finally {
    for (const app of apps.values()) await app.stop();
  }
}

async function checkAll(
  sc: Scenario,
  specs: DeviceSpec[],
  byId: Map<string, DeviceSpec>,
  apps: Map<string, OwnerApp>,
  o: ScenarioOptions,
  run: { startMs: number; endMs: number },
): Promise<ExpectationResult[]> {
  const results: ExpectationResult[] = [];
  for (const e of sc.expect) {
    if ('tickets' in e) results.push(await checkTickets(e, byId, o, run));
    else results.push(checkGuide(e, specs, apps));
  }
  return results;
}

async function listTickets(
  o: ScenarioOptions,
  rule: string,
  device: string | undefined,
): Promise<TicketItem[]> {
  const items: TicketItem[] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ rule, limit: '500' });
    if (device) q.set('deviceId', device);
    if (cursor) q.set('cursor', cursor);
    const res = await fetch(`${o.apiUrl.replace(/\/+$/, '')}/api/v1/tickets?${q}`, {
      headers: { Authorization: `Bearer ${o.token}` },
    });
    if (!res.ok) throw new Error(`GET /api/v1/tickets: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { items: TicketItem[]; nextCursor: string | null };
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

async function checkTickets(
  e: { tickets: TicketsExpectation },
  byId: Map<string, DeviceSpec>,
  o: ScenarioOptions,
  run: { startMs: number; endMs: number },
): Promise<ExpectationResult> {
  const x = e.tickets;
  const wanted = [
    `${x.count} ticket(s) for ${x.rule}`,
    x.device ? `on ${x.device}` : 'on the fleet',
    x.priority ? `priority ${x.priority}` : '',
    x.safety !== undefined ? `safety ${x.safety}` : '',
    x.within !== undefined ? `within ${formatDuration(x.within)} (device time) of the fault` : '',
  ]
    .filter(Boolean)
    .join(', ');
  // Tickets of this run: on its devices, for an incident in its device time (a re-run uses later times).
  const all = await listTickets(o, x.rule, x.device);
  const tickets = all.filter((t) => {
    const at = incidentTime(t);
    return byId.has(t.device.id) && at !== undefined && at >= run.startMs && at <= run.endMs + 60_000;
  });
  const problems: string[] = [];
  if (tickets.length !== x.count) problems.push(`${tickets.length} ticket(s)`);
  for (const t of tickets) {
    if (x.priority && t.priority !== x.priority) problems.push(`#${t.id} is ${t.priority}`);
    if (x.safety !== undefined && t.safety !== x.safety) problems.push(`#${t.id} safety ${t.safety}`);
    if (x.within !== undefined) {
      const fault = byId.get(t.device.id)!.faults[0];
      if (!fault) {
        problems.push(`#${t.id}: no fault was injected on ${t.device.id}`);
      } else {
        const after = incidentTime(t)! - (run.startMs + fault.atMs);
        if (after > x.within) problems.push(`#${t.id} ${formatDuration(after)} after the fault`);
      }
    }
  }
  const describe = (t: TicketItem) => {
    const fault = byId.get(t.device.id)?.faults[0];
    const after = fault
      ? ` ${formatDuration(Math.max(0, incidentTime(t)! - (run.startMs + fault.atMs)))} after ${fault.name}`
      : '';
    return `#${t.id} ${t.device.id} ${t.priority}${t.safety ? ' safety' : ''} ${t.status}${after}`;
  };
  const seen =
    tickets.length === 0 ? 'no ticket' : `${tickets.length} ticket(s): ${tickets.map(describe).join('; ')}`;
  return {
    expectation: e,
    pass: problems.length === 0,
    wanted,
    seen: problems.length === 0 ? seen : `${seen} (${problems.join(', ')})`,
  };
}

function checkGuide(
  e: { guide: GuideExpectation },
  specs: DeviceSpec[],
  apps: Map<string, OwnerApp>,
): ExpectationResult {
  const g = e.guide;
  const owner = ownerOf(specs, g);
  const wanted = [
    `a guide${g.guide ? ` ${g.guide}` : ''} reaches owner ${owner}'s app`,
    g.device ? `for ${g.device}` : '',
    g.locale ? `in ${g.locale}` : '',
    g.signal ? `signal ${g.signal}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  const guides = apps.get(owner)!.notifications.filter((n) => n.kind === 'guide');
  const matches = (n: OwnerNotification) =>
    (g.device === undefined || n.deviceId === g.device) &&
    (g.guide === undefined || n.guide?.id === g.guide) &&
    (g.locale === undefined || n.locale === g.locale) &&
    (g.signal === undefined || n.signal === g.signal);
  const hit = guides.find(matches);
  const describe = (n: OwnerNotification) =>
    `${n.guide?.id ?? '?'} (${n.locale ?? '?'}, ${n.signal ?? '?'}) for ${n.deviceId ?? '?'}, ticket #${n.ticketId ?? '?'}`;
  return {
    expectation: e,
    pass: hit !== undefined,
    wanted,
    seen: hit
      ? describe(hit)
      : guides.length === 0
        ? 'no guide'
        : `other guides: ${guides.map(describe).join('; ')}`,
  };
}

export function formatReport(r: ScenarioReport): string {
  const lines = [
    `scenario ${r.name}: ${r.pass ? 'PASS' : 'FAIL'}`,
    `  run       ${r.run.devices} device(s), sent ${r.run.sent.total}, acked ${r.run.acked}, connect failures ${r.run.connectFailures}, unacked ${r.run.unacked}; ${(r.run.wallMs / 1000).toFixed(1)} s`,
  ];
  for (const x of r.results) {
    lines.push(`  ${x.pass ? 'pass' : 'FAIL'}      ${x.wanted}`);
    lines.push(`            seen: ${x.seen}`);
  }
  lines.push(`  checked   ${(r.settledAfterMs / 1000).toFixed(1)} s after the run`);
  return `${lines.join('\n')}\n`;
}
