/**
 * The ticket feature as the composition root sees it: the service, its outbox,
 * its routes, the bus subscriptions and the scheduled checks, with one start()
 * and one stop(). app.ts wires this and nothing inside it.
 */
import type { FastifyInstance } from 'fastify';
import cron, { type ScheduledTask } from 'node-cron';
import type { Config } from '../config/schema.js';
import type { Db } from '../db/db.js';
import type { EventBus } from '../events/bus.js';
import type { FaultlineEvents } from '../events/types.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import { webhookTransport } from '../webhooks/http.js';
import { Outbox } from '../webhooks/outbox.js';
import { webhookRoutes } from '../webhooks/routes.js';
import { ticketRoutes } from './routes.js';
import { TicketService } from './service.js';

export interface TicketsFeature {
  service: TicketService;
  /** Generic: other features may add transports and enqueue their own messages. */
  outbox: Outbox;
  routes: Array<(app: FastifyInstance) => Promise<void>>;
  /** One run of the scheduled checks (SLA, fleet incidents, outbox pruning); what the cron job calls. */
  runChecks(): Promise<void>;
  /** Starts delivering and schedules the checks. */
  start(): void;
  /** Stops taking rule events, waits for those in flight, stops the checks and the deliveries. */
  stop(): Promise<void>;
}

export interface TicketsOptions {
  config: Readonly<Config>;
  db: Db;
  bus: EventBus<FaultlineEvents>;
  metrics: Metrics;
  log: Logger;
  now?: () => number;
}

/** Delivered and dead outbox rows are kept this long for the delivery log, then deleted. */
const OUTBOX_RETENTION_MS = 30 * 24 * 3_600_000;

export function createTickets(options: TicketsOptions): TicketsFeature {
  const { config, db, bus, metrics, log } = options;
  const tc = config.tickets;
  const now = options.now ?? Date.now;
  const outbox = new Outbox(db, {
    now,
    log: log.child({ component: 'outbox' }),
    maxAttempts: tc.delivery.maxAttempts,
    initialBackoffMs: tc.delivery.initialBackoffMs,
    maxBackoffMs: tc.delivery.maxBackoffMs,
    pollMs: tc.delivery.pollMs,
    leaseMs: Math.max(60_000, ...tc.receivers.map((r) => 2 * r.timeoutMs)),
    onAttempt: (receiver, outcome) => metrics.webhookAttempts.inc({ receiver, outcome }),
  });
  for (const r of tc.receivers) outbox.setTransport(r.name, webhookTransport(r, now));

  const service = new TicketService({
    db,
    config: tc,
    outbox,
    now,
    log,
    observer: {
      opened: (priority, team) => metrics.ticketsOpened.inc({ priority, team }),
      reopened: () => metrics.ticketsReopened.inc(),
      escalated: (target) => metrics.ticketEscalations.inc({ target }),
      paged: () => metrics.onCallPages.inc(),
      retried: () => metrics.dbErrors.inc({ op: 'ticket_event' }),
    },
  });

  metrics.sources.tickets = async () => {
    const [stats, open, deliveries] = await Promise.all([
      service.stats(),
      service.openGroups(),
      outbox.counts(),
    ]);
    const seconds = (ms: number | null) => (ms === null ? null : ms / 1000);
    return {
      open,
      figures: {
        median_response_seconds: seconds(stats.window.medianResponseMs),
        median_resolution_seconds: seconds(stats.window.medianResolutionMs),
        sla_breach_ratio: stats.window.slaBreachRate,
        resolution_ratio: stats.window.resolutionRate,
        fleet_incidents_open: stats.incidentsOpen,
        webhook_deliveries_pending: deliveries.pending,
        webhook_deliveries_dead: deliveries.dead,
      },
    };
  };

  // Handlers are tracked so stop() can wait for them before the database closes.
  const inflight = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    inflight.add(p);
    return p.finally(() => inflight.delete(p));
  };
  const unsubscribe = tc.enabled
    ? [
        bus.on('rule.fired', 'tickets', (e) => track(service.handleFired(e)).then(() => undefined)),
        bus.on('rule.updated', 'tickets', (e) => track(service.handleUpdated(e)).then(() => undefined)),
        bus.on('rule.resolved', 'tickets', (e) => track(service.handleResolved(e)).then(() => undefined)),
      ]
    : [];

  let checking: Promise<void> | null = null;
  async function runChecks(): Promise<void> {
    const { escalations, incidentsClosed } = await service.checkSla();
    const pruned = await outbox.prune(new Date(now() - OUTBOX_RETENTION_MS));
    if (escalations || incidentsClosed || pruned) {
      log.info({ component: 'tickets', escalations, incidentsClosed, pruned }, 'ticket checks ran');
    }
  }

  let task: ScheduledTask | null = null;
  return {
    service,
    outbox,
    routes: [ticketRoutes(service), webhookRoutes(outbox)],
    runChecks,
    start() {
      outbox.start();
      if (!tc.enabled) return;
      task = cron.createTask(
        tc.checkSchedule,
        async () => {
          // node-cron's noOverlap skips a run while one is going; this also lets stop() wait for it.
          if (checking !== null) return;
          checking = runChecks()
            .catch((err: unknown) =>
              log.warn({ err, component: 'tickets' }, 'ticket checks failed; next run retries'),
            )
            .finally(() => {
              checking = null;
            });
          await checking;
        },
        { name: 'faultline-ticket-checks', noOverlap: true },
      );
      void task.start();
    },
    async stop() {
      for (const off of unsubscribe) off();
      service.close();
      if (task) await task.destroy();
      task = null;
      await checking;
      while (inflight.size > 0) await Promise.allSettled([...inflight]);
      await outbox.stop();
      metrics.sources.tickets = async () => null;
    },
  };
}
