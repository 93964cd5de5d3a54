/**
 * One prom-client registry per app instance (tests run several bridges in one
 * process, so the global default registry would mix them). Every refusal has a
 * counter with a reason label; the reasons are listed in src/contract.
 */

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export interface TicketScrape {
  open: Array<{ rule: string; model: string; team: string; priority: string; count: number }>;
  figures: Record<string, number | null>;
}

/** Default metrics whose collection costs O(open sockets) per scrape. */
export const PER_HANDLE_METRICS = [
  'process_open_fds',
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
] as const;

export class Metrics {
  readonly registry = new Registry();
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 20 });

  readonly connections = new Gauge({
    name: 'faultline_mqtt_connections',
    help: 'MQTT clients currently connected',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'faultline_mqtt_connections_refused_total',
    help: 'MQTT connections refused, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly messagesAccepted = new Counter({
    name: 'faultline_messages_accepted_total',
    help: 'Device messages durably accepted, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly samplesAccepted = new Counter({
    name: 'faultline_samples_accepted_total',
    help: 'Samples and fault events accepted (a batch message counts each item)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly messagesRejected = new Counter({
    name: 'faultline_messages_rejected_total',
    help: 'Device messages refused, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly subscriptionsRefused = new Counter({
    name: 'faultline_mqtt_subscriptions_refused_total',
    help: 'SUBSCRIBE requests refused by the topic ACL',
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'faultline_dead_letters_total',
    help: 'Messages written to the dead-letter store, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly pipelineQueue = new Gauge({
    name: 'faultline_pipeline_queue_depth',
    help: 'Accepted records waiting for the pipeline',
    registers: [this.registry],
  });
  /** Read at scrape time; the app points these at live components. */
  readonly sources = {
    walBytes: () => 0,
    walConsumerLag: (): Record<string, number> => ({}),
    rules: (): Array<{
      id: string;
      evaluations: number;
      firedTotal: number;
      errors: number;
      firing: number;
    }> => [],
    ruleStateBytes: () => 0,
    /** Ticket figures from the database; null when tickets are off or the query failed. */
    tickets: async (): Promise<TicketScrape | null> => null,
  };
  // Per-rule figures are counted inside the engine (a label lookup per evaluation would cost more
  // than the evaluation) and copied here at scrape time.
  readonly ruleEvaluations: Counter<'rule'> = new Counter({
    name: 'faultline_rule_evaluations_total',
    help: 'Rule evaluations (one rule on one device), by rule',
    labelNames: ['rule'] as const,
    registers: [this.registry],
    collect: () => this.copyRules(),
  });
  readonly ruleFirings = new Counter({
    name: 'faultline_rule_firings_total',
    help: 'Incidents opened, by rule',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });
  readonly ruleErrors = new Counter({
    name: 'faultline_rule_errors_total',
    help: 'Runtime errors while evaluating a rule, by rule',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });
  readonly rulesFiring = new Gauge({
    name: 'faultline_rule_incidents_open',
    help: 'Incidents open now, by rule',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });
  readonly ruleStateBytes: Gauge = new Gauge({
    name: 'faultline_rule_state_bytes',
    help: 'Estimated memory held by per-device rule state',
    registers: [this.registry],
    collect: () => this.ruleStateBytes.set(this.sources.ruleStateBytes()),
  });

  private copyRules(): void {
    this.ruleEvaluations.reset();
    this.ruleFirings.reset();
    this.ruleErrors.reset();
    this.rulesFiring.reset();
    for (const r of this.sources.rules()) {
      this.ruleEvaluations.inc({ rule: r.id }, r.evaluations);
      this.ruleFirings.inc({ rule: r.id }, r.firedTotal);
      this.ruleErrors.inc({ rule: r.id }, r.errors);
      this.rulesFiring.set({ rule: r.id }, r.firing);
    }
  }
  readonly ticketsOpened = new Counter({
    name: 'faultline_tickets_opened_total',
    help: 'Tickets opened, by priority at opening and team',
    labelNames: ['priority', 'team'] as const,
    registers: [this.registry],
  });
  readonly ticketsReopened = new Counter({
    name: 'faultline_tickets_reopened_total',
    help: 'Resolved or closed tickets reopened (by a recurrence or by staff)',
    registers: [this.registry],
  });
  readonly ticketEscalations = new Counter({
    name: 'faultline_ticket_sla_escalations_total',
    help: 'SLA breaches escalated, by target (response, resolution)',
    labelNames: ['target'] as const,
    registers: [this.registry],
  });
  readonly onCallPages = new Counter({
    name: 'faultline_oncall_pages_total',
    help: 'On-call pages (P1 and safety tickets), at most one per ticket cycle',
    registers: [this.registry],
  });
  readonly ownerNotifications = new Counter({
    name: 'faultline_owner_notifications_total',
    help: 'Owner notifications by kind (guide, survey) and outcome (created, held, sent, expired, no_guide, no_owner, guide_off, failed)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly ownerReceipts = new Counter({
    name: 'faultline_owner_receipts_total',
    help: 'Receipts from owner apps, by status (delivered, opened, fixed, not_fixed, survey)',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly webhookAttempts = new Counter({
    name: 'faultline_webhook_attempts_total',
    help: 'Outbox delivery attempts, by receiver and outcome (delivered, retry, dead)',
    labelNames: ['receiver', 'outcome'] as const,
    registers: [this.registry],
  });
  // Ticket figures come from the database (they must agree across bridges sharing it), once per
  // scrape however many gauges ask.
  readonly ticketsOpen: Gauge<'rule' | 'model' | 'team' | 'priority'> = new Gauge({
    name: 'faultline_tickets_open',
    help: 'Tickets neither resolved nor closed, by rule, model, team and priority',
    labelNames: ['rule', 'model', 'team', 'priority'] as const,
    registers: [this.registry],
    collect: async () => {
      const s = await this.scrapeTickets();
      this.ticketsOpen.reset();
      for (const { rule, model, team, priority, count } of s?.open ?? []) {
        this.ticketsOpen.set({ rule, model, team, priority }, count);
      }
    },
  });
  readonly ticketFigures: Gauge<'figure'> = new Gauge({
    name: 'faultline_ticket_figure',
    help:
      'Over tickets opened in the last 30 days: median_response_seconds, median_resolution_seconds ' +
      '(SLA clock), sla_breach_ratio, resolution_ratio; and fleet_incidents_open, webhook_deliveries_pending, ' +
      'webhook_deliveries_dead',
    labelNames: ['figure'] as const,
    registers: [this.registry],
    collect: async () => {
      const s = await this.scrapeTickets();
      this.ticketFigures.reset();
      if (!s) return;
      for (const [figure, value] of Object.entries(s.figures)) {
        if (value !== null) this.ticketFigures.set({ figure }, value);
      }
    },
  });
  private ticketScrape: { at: number; value: Promise<TicketScrape | null> } | null = null;

  private scrapeTickets(): Promise<TicketScrape | null> {
    const now = Date.now();
    if (!this.ticketScrape || now - this.ticketScrape.at > 1_000) {
      this.ticketScrape = { at: now, value: this.sources.tickets().catch(() => null) };
    }
    return this.ticketScrape.value;
  }

  readonly walBytes: Gauge = new Gauge({
    name: 'faultline_wal_bytes',
    help: 'Bytes held in the write-ahead log',
    registers: [this.registry],
    collect: () => this.walBytes.set(this.sources.walBytes()),
  });
  readonly walConsumerLag: Gauge<'consumer'> = new Gauge({
    name: 'faultline_wal_consumer_lag_records',
    help: 'Records in the write-ahead log a consumer has not confirmed yet',
    labelNames: ['consumer'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [consumer, lag] of Object.entries(this.sources.walConsumerLag()))
        this.walConsumerLag.set({ consumer }, lag);
    },
  });
  readonly walCommitSeconds = new Histogram({
    name: 'faultline_wal_commit_seconds',
    help: 'Time from append to durable commit',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
    registers: [this.registry],
  });
  readonly clientsPaused = new Counter({
    name: 'faultline_mqtt_clients_paused_total',
    help: 'Times a client socket was paused for backpressure',
    registers: [this.registry],
  });
  readonly listenerErrors = new Counter({
    name: 'faultline_listener_errors_total',
    help: 'Errors thrown by event listeners, by event and listener',
    labelNames: ['event', 'listener'] as const,
    registers: [this.registry],
  });
  readonly dbErrors = new Counter({
    name: 'faultline_db_errors_total',
    help: 'Database operations that failed, by operation',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly httpAuthFailures = new Counter({
    name: 'faultline_http_auth_failures_total',
    help: 'HTTP requests refused by authentication or role checks',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly walFull = new Counter({
    name: 'faultline_wal_full_total',
    help: 'Times the write-ahead log reached ingest.walMaxBytes and ingest paused',
    registers: [this.registry],
  });
  readonly influxPointsWritten = new Counter({
    name: 'faultline_influx_points_written_total',
    help: 'Points InfluxDB confirmed (2xx), by measurement',
    labelNames: ['measurement'] as const,
    registers: [this.registry],
  });
  readonly influxBatches = new Counter({
    name: 'faultline_influx_batches_total',
    help: 'Batches done with, by outcome: written, or quarantined (some points refused)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly influxRetries = new Counter({
    name: 'faultline_influx_write_retries_total',
    help: 'Write requests that will be retried, by reason (network, throttled, server, auth, not_found, unconfirmed)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly influxQuarantined = new Counter({
    name: 'faultline_influx_quarantined_points_total',
    help: 'Points InfluxDB refused with a 4xx, kept in <dataDir>/influx-quarantine',
    registers: [this.registry],
  });
  readonly influxWriteSeconds = new Histogram({
    name: 'faultline_influx_write_seconds',
    help: 'Duration of write requests InfluxDB confirmed',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly eventLoopLag: Gauge = new Gauge({
    name: 'faultline_event_loop_lag_seconds',
    help: 'Event-loop delay p99 since the last scrape',
    registers: [this.registry],
    // Read and reset on each scrape so the figure describes the last interval, not all time.
    collect: () => {
      this.eventLoopLag.set(this.loopDelay.percentile(99) / 1e9);
      this.loopDelay.reset();
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'faultline_process_' });
    // These walk every socket on each scrape (/proc/self/fd, the active handles): with 10k devices
    // connected a scrape blocked the event loop for 70-700 ms, delaying every PUBACK meanwhile.
    // The connection gauges say the same for free.
    for (const name of PER_HANDLE_METRICS) this.registry.removeSingleMetric(`faultline_process_${name}`);
    this.loopDelay.enable();
  }

  async render(): Promise<string> {
    return this.registry.metrics();
  }

  close(): void {
    this.loopDelay.disable();
  }
}
