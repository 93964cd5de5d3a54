/**
 * Guides, owners and pushes as the composition root sees them: one create,
 * one start, one stop, the routes, and the hooks into the broker.
 */
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { EmbeddedBroker } from '../broker/embedded.js';
import type { Config } from '../config/schema.js';
import type { Db } from '../db/db.js';
import type { EventBus } from '../events/bus.js';
import type { FaultlineEvents } from '../events/types.js';
import { GuideLibrary } from '../guides/library.js';
import { guideRoutes } from '../guides/routes.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import { ownerRoutes } from '../owners/routes.js';
import { OwnerStore } from '../owners/store.js';
import type { TicketsFeature } from '../tickets/index.js';
import { webhookTransport } from '../webhooks/http.js';
import { ExternalInAppChannel, embeddedChannel, ownerAuthenticator } from './channels.js';
import { GATEWAY_RECEIVER } from './config.js';
import { linkKey } from './links.js';
import { pushRoutes } from './routes.js';
import { PushService } from './service.js';
import { ticketPort } from './tickets-port.js';

export interface PushFeature {
  guides: GuideLibrary;
  owners: OwnerStore;
  service: PushService;
  routes: Array<(app: FastifyInstance) => Promise<void>>;
  /** Embedded mode: owner apps log in to this broker and receive notifications through it. */
  attachBroker(broker: EmbeddedBroker): void;
  /** External mode: publish to and read receipts from the external broker. */
  attachExternal(): Promise<void>;
  start(): void;
  stop(): Promise<void>;
}

export interface PushOptions {
  config: Readonly<Config>;
  dataDir: string;
  db: Db;
  bus: EventBus<FaultlineEvents>;
  metrics: Metrics;
  log: Logger;
  tickets: TicketsFeature;
  /** Whether the rule engine still sees a fault (rule, device, code). */
  stillFiring?: (ruleId: string, deviceId: string, code: string | null) => boolean;
  now?: () => number;
}

export async function createPush(o: PushOptions): Promise<PushFeature> {
  const { config, db, bus, metrics, log } = o;
  const now = o.now ?? Date.now;
  const pc = config.push;
  const guides = new GuideLibrary({
    paths: config.guides.paths.map((p) => resolve(p)),
    defaultLocale: config.guides.defaultLocale,
    log: log.child({ component: 'guides' }),
  });
  const owners = new OwnerStore(db, { now });
  const key = await linkKey(pc.linkSecret, o.dataDir);
  if (pc.gateway) {
    if (config.tickets.receivers.some((r) => r.name === GATEWAY_RECEIVER)) {
      log.warn(`a tickets receiver is named ${GATEWAY_RECEIVER}: the push gateway takes that name over`);
    }
    o.tickets.outbox.setTransport(
      GATEWAY_RECEIVER,
      webhookTransport(
        {
          name: GATEWAY_RECEIVER,
          url: pc.gateway.url,
          secret: pc.gateway.secret,
          timeoutMs: pc.gateway.timeoutMs,
        },
        now,
      ),
    );
  }
  const service = new PushService({
    db,
    config: pc,
    guides,
    owners,
    tickets: config.tickets.enabled ? ticketPort(o.tickets.service, db) : null,
    outbox: o.tickets.outbox,
    linkKey: key,
    now,
    log: log.child({ component: 'push' }),
    ...(o.stillFiring ? { stillFiring: o.stillFiring } : {}),
    observer: {
      notification: (kind, outcome) => metrics.ownerNotifications.inc({ kind, outcome }),
      receipt: (status) => metrics.ownerReceipts.inc({ status }),
    },
  });

  if (pc.enabled) await service.init();

  const inflight = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>): Promise<void> => {
    inflight.add(p);
    return p.finally(() => inflight.delete(p)).then(() => undefined);
  };
  const unsubscribe = pc.enabled
    ? [
        bus.on('rule.fired', 'push', (e) => track(service.noteRuleEvent(e))),
        bus.on('rule.updated', 'push', (e) => track(service.noteRuleEvent(e))),
      ]
    : [];
  let external: ExternalInAppChannel | null = null;

  return {
    guides,
    owners,
    service,
    routes: [
      guideRoutes(guides),
      ownerRoutes(owners, db, now),
      pushRoutes({ push: service, owners, guides, linkKey: key, metrics, now }),
    ],
    attachBroker(broker) {
      if (!pc.enabled) return;
      service.setInApp(embeddedChannel(broker));
      broker.setOwnerAuthenticator(ownerAuthenticator(owners, service, log.child({ component: 'push' })));
    },
    async attachExternal() {
      if (!pc.enabled) return;
      external = new ExternalInAppChannel(config, service, log.child({ component: 'push' }));
      await external.start();
      service.setInApp(external);
    },
    start() {
      if (config.guides.watch) guides.startWatching();
      if (pc.enabled) service.start();
    },
    async stop() {
      for (const off of unsubscribe) off();
      while (inflight.size > 0) await Promise.allSettled([...inflight]);
      await service.stop();
      guides.stop();
      await external?.stop();
      service.setInApp(null);
    },
  };
}
