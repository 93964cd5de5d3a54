/**
 * The InfluxDB feature as the app sees it: a sink that writes the log into
 * InfluxDB, a reader for history, and the history route. Without influx.url the
 * feature is off: one log line says so, the route answers 503, and no 'influx'
 * cursor holds back the write-ahead log.
 */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.js';
import type { DeviceInfo } from '../events/types.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { WriteAheadLog } from '../wal/index.js';
import { Quarantine } from './quarantine.js';
import { InfluxReader } from './reader.js';
import { DISABLED_MESSAGE, influxRoutes } from './routes.js';
import { InfluxSink } from './sink.js';
import { createWriter, type InfluxSettings, readDatabase } from './writer.js';

export { InfluxReader } from './reader.js';
export { InfluxSink } from './sink.js';

export const INFLUX_CURSOR = 'influx';
export const QUARANTINE_DIR = 'influx-quarantine';

export interface InfluxFeature {
  sink: InfluxSink | null;
  reader: InfluxReader | null;
  routes: (app: FastifyInstance) => Promise<void>;
  stop(): Promise<void>;
}

export interface InfluxFeatureOptions {
  config: Readonly<Config>;
  dataDir: string;
  wal: WriteAheadLog;
  deviceInfo(id: string): Promise<DeviceInfo | null>;
  metrics: Metrics;
  log: Logger;
}

export async function startInflux(o: InfluxFeatureOptions): Promise<InfluxFeature> {
  const settings = o.config.influx;
  if (!settings.url) {
    o.log.info(`${DISABLED_MESSAGE}; rules, tickets and pushes are unaffected`);
    if (INFLUX_CURSOR in o.wal.stats().cursors) {
      // A cursor left from when InfluxDB was configured would pin the log until it fills and pauses ingest.
      o.log.warn(
        { lag: o.wal.lastLsn - (o.wal.stats().cursors[INFLUX_CURSOR] ?? 0) },
        'InfluxDB was configured before and is not now: dropping its log cursor (its unsent points will not be sent)',
      );
      await o.wal.dropCursor(INFLUX_CURSOR);
    }
    return {
      sink: null,
      reader: null,
      routes: influxRoutes({ reader: null, deviceInfo: o.deviceInfo, maxPoints: settings.maxSeriesPoints }),
      stop: async () => undefined,
    };
  }
  const s = settings as InfluxSettings;
  const reader = new InfluxReader(s);
  const writer = createWriter(s, {
    // 1.x answers 404 for a database that does not exist yet; create it then rather than at start,
    // so an InfluxDB that is down at start does not hold the bridge up.
    onMissingDatabase:
      s.api === 'v1' && s.createDatabase
        ? async () => {
            await reader.createDatabase();
            o.log.info({ database: reader.database }, `created InfluxDB database "${reader.database}"`);
          }
        : undefined,
  });
  const sink = new InfluxSink({
    wal: o.wal,
    writer,
    quarantine: new Quarantine(join(o.dataDir, QUARANTINE_DIR)),
    deviceInfo: o.deviceInfo,
    metrics: o.metrics,
    log: o.log,
    batchSize: s.batchSize,
    flushIntervalMs: s.flushIntervalMs,
    maxInFlight: s.maxInFlight,
    maxRetryDelayMs: s.maxRetryDelayMs,
    writeStatus: s.writeStatus,
    cursorName: INFLUX_CURSOR,
  });
  sink.start();
  o.log.info(
    { target: writer.target, api: s.api, readDatabase: readDatabase(s), lag: sink.lag },
    `writing telemetry to InfluxDB (${s.api}) at ${writer.target}`,
  );
  return {
    sink,
    reader,
    routes: influxRoutes({ reader, deviceInfo: o.deviceInfo, maxPoints: s.maxSeriesPoints }),
    stop: () => sink.stop(),
  };
}
