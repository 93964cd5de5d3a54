/**
 * The influx: section: environment overrides, what api v2 requires, the log bound,
 * and that InfluxDB credentials never reach a log line.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { REDACT_PATHS } from '../../src/log/logger.js';

describe('influx config', () => {
  it('takes every FAULTLINE_INFLUX_* variable', () => {
    const c = loadConfig({
      env: {
        FAULTLINE_INFLUX_URL: 'http://influx:8086',
        FAULTLINE_INFLUX_API: 'v2',
        FAULTLINE_INFLUX_DB: 'telemetry_db',
        FAULTLINE_INFLUX_ORG: 'acme',
        FAULTLINE_INFLUX_BUCKET: 'telemetry',
        FAULTLINE_INFLUX_TOKEN: 'tok-0123456789',
        FAULTLINE_INFLUX_USERNAME: 'writer',
        FAULTLINE_INFLUX_PASSWORD: 'pw',
      },
    });
    expect(c.influx).toMatchObject({
      url: 'http://influx:8086',
      api: 'v2',
      database: 'telemetry_db',
      org: 'acme',
      bucket: 'telemetry',
      token: 'tok-0123456789',
      username: 'writer',
      password: 'pw',
      batchSize: 5_000,
      flushIntervalMs: 1_000,
      maxInFlight: 2,
    });
    expect(c.ingest.walMaxBytes).toBe(1024 * 1024 * 1024);
  });

  it('is off without a URL', () => {
    expect(loadConfig({ env: {} }).influx.url).toBeUndefined();
  });

  it('names what api v2 is missing, and where it came from', () => {
    expect(() =>
      loadConfig({ env: { FAULTLINE_INFLUX_URL: 'http://influx:8086', FAULTLINE_INFLUX_API: 'v2' } }),
    ).toThrow(/influx\.org: required when api is v2[\s\S]*influx\.bucket[\s\S]*influx\.token/);
    expect(() => loadConfig({ env: { FAULTLINE_INFLUX_API: 'v3' } })).toThrow(
      /env FAULTLINE_INFLUX_API: influx\.api/,
    );
  });

  it('refuses a log bound the log could never get back under', () => {
    expect(() => loadConfig({ env: {}, overrides: { ingest: { walMaxBytes: 64 * 1024 * 1024 } } })).toThrow(
      /ingest\.walMaxBytes: must be at least twice ingest\.walSegmentBytes/,
    );
  });

  it('keeps the token and password out of log lines', () => {
    const c = loadConfig({
      env: { FAULTLINE_INFLUX_URL: 'http://influx:8086', FAULTLINE_INFLUX_TOKEN: 'sekrit-token-value' },
      overrides: { influx: { username: 'u', password: 'sekrit-password-value' } },
    });
    let out = '';
    const log = pino(
      { redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
      new Writable({
        write(chunk, _e, done) {
          out += String(chunk);
          done();
        },
      }),
    );
    log.info({ config: c }, 'effective config');
    log.info({ influx: c.influx }, 'influx settings');
    expect(out).toContain('http://influx:8086');
    expect(out).not.toContain('sekrit');
  });
});
