/**
 * The composition root: the only place that knows every component. buildApp()
 * wires; start() opens storage, replays the log, then opens the doors (broker,
 * HTTP) and logs one line per component with its address; stop() closes the
 * doors first and flushes everything accepted before releasing the data dir.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { type BrokerAddresses, EmbeddedBroker } from './broker/embedded.js';
import { ExternalSubscriber } from './broker/external.js';
import type { Config } from './config/schema.js';
import { type Db, openDb } from './db/db.js';
import { acquireDataDirLock, type DataDirLock, updateLock } from './db/lock.js';
import { DeadLetterStore } from './deadletters/store.js';
import { EventBus } from './events/bus.js';
import type { DeviceInfo, FaultlineEvents } from './events/types.js';
import { buildHttpServer } from './http/server.js';
import { type InfluxFeature, startInflux } from './influx/index.js';
import { DbSink } from './ingest/db-sink.js';
import { IngestPipeline } from './ingest/pipeline.js';
import { createLogger, type Logger } from './log/logger.js';
import { Metrics } from './metrics/registry.js';
import { createPush, type PushFeature } from './push/index.js';
import { type DeviceChange, type DeviceRecord, DeviceRegistry } from './registry/devices.js';
import { RulesService } from './rules/service.js';
import { createTickets, type TicketsFeature } from './tickets/index.js';
import { WriteAheadLog } from './wal/index.js';
import { webRoutes } from './web/index.js';

export interface AppAddresses {
  mqtt: string | null;
  ws: string | null;
  tls: string | null;
  external: string | null;
  http: string;
}

export interface App {
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly bus: EventBus<FaultlineEvents>;
  start(): Promise<AppAddresses>;
  stop(): Promise<void>;
  /** Live components, for tests and later features; undefined before start(). */
  readonly parts: Readonly<AppParts>;
}

export interface AppParts {
  db: Db;
  devices: DeviceRegistry;
  deadLetters: DeadLetterStore;
  wal: WriteAheadLog;
  pipeline: IngestPipeline;
  rules: RulesService;
  tickets: TicketsFeature;
  push: PushFeature;
  broker: EmbeddedBroker | null;
  external: ExternalSubscriber | null;
  http: FastifyInstance;
  addresses: AppAddresses;
  influx: InfluxFeature;
}

export interface BuildOptions {
  log?: Logger;
}

export function buildApp(config: Readonly<Config>, options: BuildOptions = {}): App {
  const log = options.log ?? createLogger({ level: config.log.level });
  const metrics = new Metrics();
  const bus = new EventBus<FaultlineEvents>(log, {
    listenerError: (event, listener) => metrics.listenerErrors.inc({ event, listener }),
  });
  const dataDir = resolve(config.dataDir);
  let parts: AppParts | undefined;
  let lock: DataDirLock | null = null;
  let sink: DbSink | null = null;
  let ready = false;
  let stopping: Promise<void> | null = null;
  const cleanups: Array<() => Promise<void>> = [];

  async function start(): Promise<AppAddresses> {
    await mkdir(dataDir, { recursive: true });
    // PGlite's open takes the data-dir lock itself; with PostgreSQL the WAL still needs one owner.
    if (config.database.url) {
      lock = await acquireDataDirLock(dataDir, log);
      cleanups.unshift(async () => lock?.release());
    }
    try {
      return await startParts();
    } catch (err) {
      await runCleanups();
      throw err;
    }
  }

  async function startParts(): Promise<AppAddresses> {
    const db = await openDb({ url: config.database.url, dataDir, log });
    cleanups.unshift(() => db.close());
    log.info({ component: 'database', backend: db.kind }, `database ready (${db.kind})`);
    let onDeviceChange: (change: DeviceChange) => void = () => undefined;
    const devices = new DeviceRegistry(db, {
      log: log.child({ component: 'registry' }),
      onChange: (c) => onDeviceChange(c),
    });
    const deadLetters = new DeadLetterStore(db);
    // Subscribed before the log replay, so rule events it produces open tickets too; one handled
    // before a restart is recognised by its incident id and not counted twice.
    const tickets = createTickets({ config, db, bus, metrics, log: log.child({ component: 'tickets' }) });
    // Runs after the pipeline and the rules have stopped (no new rule events) and before the
    // database closes, so events in flight are written and pending deliveries stay in the outbox.
    cleanups.unshift(() => tickets.stop());
    const adminToken = config.http.adminToken ?? (await bootstrapAdminToken(dataDir, log));
    const effective: Readonly<Config> = Object.freeze({
      ...config,
      http: Object.freeze({ ...config.http, adminToken }),
    });

    const wal = await WriteAheadLog.open({
      dir: join(dataDir, 'wal'),
      segmentBytes: config.ingest.walSegmentBytes,
      groupCommitMs: config.ingest.walGroupCommitMs,
      maxBytes: config.ingest.walMaxBytes,
    });
    cleanups.unshift(() => wal.close());
    wal.on('commit', (c: { durableMs: number }) => metrics.walCommitSeconds.observe(c.durableMs / 1000));
    wal.on('full', (full: boolean) => {
      if (full) {
        metrics.walFull.inc();
        // Name the consumer holding the log back: usually InfluxDB or the database being down.
        const { lastLsn, cursors } = wal.stats();
        const slowest = Object.entries(cursors).sort((x, y) => x[1] - y[1])[0];
        const behind = slowest ? `${slowest[0]} (${lastLsn - slowest[1]} records behind)` : 'none';
        log.error(
          { component: 'wal', bytes: wal.bytes, maxBytes: config.ingest.walMaxBytes, behind },
          `ALARM write-ahead log is full (ingest.walMaxBytes ${config.ingest.walMaxBytes} bytes): ingest ` +
            `paused until consumers catch up; furthest behind: ${behind}`,
        );
      } else log.info({ component: 'wal' }, 'write-ahead log has room again');
    });
    wal.on('backgroundError', (err: Error) =>
      log.warn({ err, component: 'wal' }, 'write-ahead log background task failed; retrying'),
    );
    metrics.sources.walBytes = () => wal.bytes;
    metrics.sources.walConsumerLag = () => {
      const { lastLsn, cursors } = wal.stats();
      return Object.fromEntries(Object.entries(cursors).map(([name, pos]) => [name, lastLsn - pos]));
    };

    const deviceInfo = async (id: string): Promise<DeviceInfo | null> => {
      const d = await devices.get(id);
      if (!d) return null;
      return {
        id: d.id,
        model: d.model,
        firmware: d.firmware,
        ownerId: d.ownerId,
        ownerLocale: d.ownerLocale,
        region: d.region,
        batch: d.batch,
      };
    };
    let replyError: IngestPipelineReply = () => undefined;
    const pipeline = new IngestPipeline({
      wal,
      bus,
      metrics,
      log: log.child({ component: 'ingest' }),
      dataDir,
      maxFutureSkewMs: config.ingest.maxFutureSkewMs,
      dedupWindow: config.ingest.dedupWindow,
      maxQueue: config.ingest.maxQueue,
      deviceInfo,
      replyError: (...args) => replyError(...args),
    });
    const rules = new RulesService({
      paths: config.rules.paths.map((p) => resolve(p)),
      watch: config.rules.watch,
      bus,
      metrics,
      log: log.child({ component: 'rules' }),
    });
    // Before the replay too: replayed rule events say again which incidents want a guide.
    const push = await createPush({
      config,
      dataDir,
      db,
      bus,
      metrics,
      log: log.child({ component: 'push' }),
      tickets,
      stillFiring: (ruleId, deviceId, code) =>
        rules.engine
          .ruleStates(deviceId)
          .some(
            (s) =>
              s.ruleId === ruleId &&
              (code === null || s.code === code) &&
              s.phase === 'firing' &&
              s.condition === 'on',
          ),
    });
    // Stops after the doors and the pipeline (no new receipts or rule events), before tickets.
    cleanups.unshift(() => push.stop());
    // Registered before the replay, so restored timers and replayed samples meet the same engine.
    pipeline.addCheckpointed('rules', rules);
    const { replayed } = await pipeline.start();
    rules.registerDevices((await allDevices(devices)).filter((d) => !d.disabled));
    rules.start();
    cleanups.unshift(async () => rules.stop());
    cleanups.unshift(() => pipeline.stop());
    log.info(
      { component: 'wal', dir: join(dataDir, 'wal'), lastLsn: wal.lastLsn, replayed },
      'write-ahead log ready',
    );

    sink = new DbSink({ wal, deadLetters, devices, metrics, log: log.child({ component: 'db-sink' }) });
    sink.start();
    const dbSink = sink;
    cleanups.unshift(() => dbSink.stop());
    bus.on('message.rejected', 'db-sink.wake', () => dbSink.notify());

    const influx = await startInflux({
      config,
      dataDir,
      wal,
      deviceInfo,
      metrics,
      log: log.child({ component: 'influx' }),
    });
    cleanups.unshift(() => influx.stop());

    let broker: EmbeddedBroker | null = null;
    let external: ExternalSubscriber | null = null;
    let brokerAddresses: BrokerAddresses | null = null;
    let externalUrl: string | null = null;
    if (config.mqtt.mode === 'embedded') {
      broker = new EmbeddedBroker({
        config,
        log: log.child({ component: 'broker' }),
        metrics,
        devices,
        pipeline,
      });
      const b = broker;
      replyError = (...args) => b.replyError(...args);
      push.attachBroker(broker);
      brokerAddresses = await broker.start();
      cleanups.unshift(() => b.stop());
      log.info(
        { component: 'broker', ...brokerAddresses },
        `MQTT broker listening on ${brokerAddresses.mqtt}`,
      );
      if (brokerAddresses.ws)
        log.info({ component: 'broker' }, `MQTT over WebSocket on ${brokerAddresses.ws}`);
      if (brokerAddresses.tls) log.info({ component: 'broker' }, `MQTT over TLS on ${brokerAddresses.tls}`);
    } else {
      external = new ExternalSubscriber({
        config,
        log: log.child({ component: 'external' }),
        metrics,
        pipeline,
        deviceInfo,
      });
      const e = external;
      replyError = (...args) => e.replyError(...args);
      const started = await external.start();
      externalUrl = started.url;
      cleanups.unshift(() => e.stop());
      await push.attachExternal();
      log.info({ component: 'external', ...started }, `subscribed to external broker ${started.url}`);
    }

    onDeviceChange = (change) => {
      if (change.kind === 'added') rules.registerDevices(change.devices);
      else if (change.kind === 'disabled') {
        rules.removeDevice(change.id);
        broker?.disconnectDevice(change.id, 'device disabled');
      } else {
        // An import (up to 100k ids) or a re-enabled device: re-read what the engine should watch.
        allDevices(devices).then(
          (all) => rules.registerDevices(all.filter((d) => !d.disabled)),
          (err: unknown) => log.error({ err }, 'could not refresh devices for the rule engine'),
        );
      }
    };

    const http = await buildHttpServer({
      config: effective,
      log,
      metrics,
      devices,
      deadLetters,
      extraRoutes: [
        rules.routes,
        influx.routes,
        ...tickets.routes,
        ...push.routes,
        ...webRoutes({ db, log: log.child({ component: 'web' }) }),
      ],
      readiness: () => ({
        ready,
        components: {
          database: { ok: true, detail: db.kind },
          ingest: { ok: !pipeline.paused, detail: pipeline.paused ? 'paused: backpressure' : 'accepting' },
          wal: { ok: !wal.full, detail: `${wal.bytes} bytes` },
        },
      }),
    });
    await http.listen({ host: config.http.host, port: config.http.port });
    cleanups.unshift(() => http.close());
    const address = http.server.address();
    const httpPort = typeof address === 'object' && address ? address.port : config.http.port;
    const httpUrl = `http://${displayHost(config.http.host)}:${httpPort}`;
    await updateLock(dataDir, { httpUrl });
    tickets.start();
    push.start();
    log.info(
      { component: 'http' },
      `HTTP API on ${httpUrl}/api/v1 (docs ${httpUrl}/docs, metrics ${httpUrl}/metrics)`,
    );

    const addresses: AppAddresses = {
      mqtt: brokerAddresses?.mqtt ?? null,
      ws: brokerAddresses?.ws ?? null,
      tls: brokerAddresses?.tls ?? null,
      external: externalUrl,
      http: httpUrl,
    };
    parts = {
      db,
      devices,
      deadLetters,
      wal,
      pipeline,
      rules,
      tickets,
      push,
      broker,
      external,
      http,
      addresses,
      influx,
    };
    ready = true;
    log.info({ component: 'faultline' }, 'ready');
    return addresses;
  }

  async function runCleanups(): Promise<void> {
    // Reverse order of start: doors first, then the pipeline flush, the log, the database, the lock.
    while (cleanups.length > 0) {
      const cleanup = cleanups.shift()!;
      try {
        await cleanup();
      } catch (err) {
        log.error({ err }, 'error during shutdown');
      }
    }
  }

  async function stop(): Promise<void> {
    if (!stopping) {
      ready = false;
      stopping = (async () => {
        await runCleanups();
        await bus.idle();
        metrics.close();
        log.info({ component: 'faultline' }, 'stopped');
        log.flush?.();
      })();
    }
    return stopping;
  }

  return {
    config,
    log,
    metrics,
    bus,
    start,
    stop,
    get parts() {
      if (!parts) throw new Error('app not started');
      return parts;
    },
  };
}

/** Every registered device, page by page (fleets of 100k: keyset pages of 1,000). */
async function allDevices(devices: DeviceRegistry): Promise<DeviceRecord[]> {
  const out: DeviceRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await devices.list({ limit: 1000, ...(cursor ? { cursor } : {}) });
    out.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return out;
}

type IngestPipelineReply = ConstructorParameters<typeof IngestPipeline>[0]['replyError'];

/**
 * Without a configured admin token, one is generated on first start and kept in
 * the data dir (mode 0600). The log says where it is, never what it is.
 */
async function bootstrapAdminToken(dataDir: string, log: Logger): Promise<string> {
  const file = join(dataDir, 'admin-token');
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length >= 16) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(24).toString('base64url');
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  log.warn({ file }, `no http.adminToken configured: generated one and wrote it to ${file}`);
  return token;
}

function displayHost(host: string): string {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
}
