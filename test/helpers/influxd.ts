/**
 * A real InfluxDB 1.x (Debian's influxd 1.6.7) on free loopback ports with a temp
 * dir, stopped by PID. It can be killed and started again on the same port and
 * data, which is what the outage tests need.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, until } from './net.js';
import { type Server, startProcess, tempDir } from './process.js';

export interface Influxd {
  url: string;
  port: number;
  /** Runs an InfluxQL statement through /query and returns the parsed JSON. */
  query(q: string, db?: string): Promise<InfluxQueryResult>;
  /** Kills the server by PID (SIGKILL: an outage, not a shutdown). */
  kill(): Promise<void>;
  /** Starts it again on the same port and data after kill(). */
  restart(): Promise<void>;
  stop(): Promise<void>;
  output(): string;
}

export interface InfluxQueryResult {
  results: Array<{
    statement_id?: number;
    error?: string;
    series?: Array<{
      name: string;
      tags?: Record<string, string>;
      columns: string[];
      values: unknown[][];
    }>;
  }>;
  error?: string;
}

function binary(): string {
  for (const candidate of ['/usr/bin/influxd', '/usr/sbin/influxd'])
    if (existsSync(candidate)) return candidate;
  return 'influxd';
}

export async function startInfluxd(): Promise<Influxd> {
  const dir = tempDir('influxd');
  const port = await freePort();
  const rpcPort = await freePort();
  const conf = join(dir.path, 'influxdb.conf');
  writeFileSync(
    conf,
    [
      'reporting-disabled = true',
      // The RPC (backup/restore) service binds :8088 by default, which parallel tests would fight over.
      `bind-address = "127.0.0.1:${rpcPort}"`,
      '[meta]',
      `  dir = "${join(dir.path, 'meta')}"`,
      '  logging-enabled = false',
      '[data]',
      `  dir = "${join(dir.path, 'data')}"`,
      `  wal-dir = "${join(dir.path, 'wal')}"`,
      '  query-log-enabled = false',
      '[http]',
      `  bind-address = "127.0.0.1:${port}"`,
      '  log-enabled = false',
      '  pprof-enabled = false',
      '[monitor]',
      '  store-enabled = false',
      '[subscriber]',
      '  enabled = false',
      '[continuous_queries]',
      '  enabled = false',
      '[retention]',
      '  enabled = false',
      '[logging]',
      '  level = "warn"',
      '  suppress-logo = true',
      '',
    ].join('\n'),
  );
  const url = `http://127.0.0.1:${port}`;
  let server: Server | null = null;
  let previousOutput = '';

  // A test that times out may never reach its afterAll: do not leave the server behind the worker.
  const orphanGuard = () => {
    const s = server as Server | null;
    if (s && s.child.exitCode === null && s.child.signalCode === null) process.kill(s.pid, 'SIGKILL');
  };
  process.once('exit', orphanGuard);

  const launch = async () => {
    server = startProcess(binary(), ['-config', conf], { env: { ...process.env, HOME: dir.path } });
    const s = server;
    try {
      await until(
        'influxd to answer /ping',
        async () => s.child.exitCode !== null || (await fetch(`${url}/ping`)).status === 204,
        30_000,
      );
      if (s.child.exitCode !== null) throw new Error(`influxd exited with ${s.child.exitCode}`);
    } catch (err) {
      await s.stop('SIGKILL');
      throw new Error(`influxd did not start: ${String(err)}\n${s.output()}`);
    }
  };
  await launch();

  const query = async (q: string, db?: string): Promise<InfluxQueryResult> => {
    const params = new URLSearchParams({ q, epoch: 'ms' });
    if (db) params.set('db', db);
    const res = await fetch(`${url}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: params.toString(),
    });
    return (await res.json()) as InfluxQueryResult;
  };

  return {
    url,
    port,
    query,
    output: () => previousOutput + ((server as Server | null)?.output() ?? ''),
    async kill() {
      const s = server as Server | null;
      if (!s) return;
      previousOutput += s.output();
      await s.stop('SIGKILL');
      server = null;
    },
    async restart() {
      if (server) throw new Error('influxd is running');
      await launch();
    },
    async stop() {
      const s = server as Server | null;
      if (s) await s.stop();
      server = null;
      process.off('exit', orphanGuard);
      dir.remove();
    },
  };
}

/** The rows of the first series of the first statement, as objects keyed by column. */
export function rows(result: InfluxQueryResult): Array<Record<string, unknown>> {
  const statement = result.results[0];
  if (!statement) throw new Error(`no result: ${JSON.stringify(result)}`);
  if (statement.error) throw new Error(statement.error);
  const out: Array<Record<string, unknown>> = [];
  for (const series of statement.series ?? []) {
    for (const values of series.values) {
      const row: Record<string, unknown> = { ...series.tags };
      series.columns.forEach((c, i) => {
        row[c] = values[i];
      });
      out.push(row);
    }
  }
  return out;
}
