/**
 * pino, with secrets redacted by path so a config dump or a request log never
 * carries a password or token. Logging is asynchronous so it stays off the hot path.
 */
import { type Logger, pino } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'password',
  'secret',
  'token',
  'adminToken',
  '*.password',
  '*.secret',
  '*.token',
  '*.adminToken',
  'req.headers.authorization',
  'headers.authorization',
  'config.http.adminToken',
  'config.http.tokens',
  'config.mqtt.external.password',
  'config.influx.token',
  'config.influx.password',
];

export interface LoggerOptions {
  level?: string;
  /** Destination file descriptor; 1 (stdout) by default, 2 for CLI commands whose stdout is data. */
  fd?: number;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: options.fd ?? 1, sync: false }),
  );
}

/** A logger for tests and library use that discards everything. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
