/**
 * A real VictoriaMetrics (Debian's victoria-metrics) on a free loopback port with
 * a temp dir, stopped by PID. It accepts InfluxDB line protocol on /write and
 * /api/v2/write and shows what arrived through /api/v1/export, which makes it a
 * real peer for checking v2 write requests. It maps `measurement field=v` to the
 * metric `measurement_field`, tags to labels, and drops string fields.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, until } from './net.js';
import { startProcess, tempDir } from './process.js';

export interface Victoria {
  url: string;
  /** Every sample of the series matching `match` (a PromQL series selector), as exported. */
  exportSeries(match: string): Promise<VictoriaSeries[]>;
  stop(): Promise<void>;
}

export interface VictoriaSeries {
  metric: Record<string, string>;
  values: number[];
  timestamps: number[];
}

function binary(): string {
  for (const candidate of ['/usr/bin/victoria-metrics', '/usr/sbin/victoria-metrics'])
    if (existsSync(candidate)) return candidate;
  return 'victoria-metrics';
}

export async function startVictoria(): Promise<Victoria> {
  const dir = tempDir('victoria');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = startProcess(binary(), [
    `-httpListenAddr=127.0.0.1:${port}`,
    `-storageDataPath=${join(dir.path, 'data')}`,
    '-loggerLevel=ERROR',
    // Old device timestamps must not be refused as out of retention.
    '-retentionPeriod=100y',
  ]);
  // A test that times out may never reach its afterAll: do not leave the server behind the worker.
  const orphanGuard = () => {
    if (server.child.exitCode === null && server.child.signalCode === null)
      process.kill(server.pid, 'SIGKILL');
  };
  process.once('exit', orphanGuard);
  try {
    await until(
      'victoria-metrics to answer /health',
      async () => server.child.exitCode !== null || (await fetch(`${url}/health`)).ok,
      30_000,
    );
    if (server.child.exitCode !== null) throw new Error(`exited with ${server.child.exitCode}`);
  } catch (err) {
    await server.stop('SIGKILL');
    process.off('exit', orphanGuard);
    dir.remove();
    throw new Error(`victoria-metrics did not start: ${String(err)}\n${server.output()}`);
  }
  return {
    url,
    async exportSeries(match) {
      // Ingested rows sit in an in-memory buffer for up to a second; this makes them searchable now.
      await fetch(`${url}/internal/force_flush`);
      const res = await fetch(
        `${url}/api/v1/export?${new URLSearchParams({ 'match[]': match, start: '0' })}`,
      );
      if (!res.ok) throw new Error(`export ${match}: ${res.status} ${await res.text()}`);
      const text = await res.text();
      return text
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as VictoriaSeries);
    },
    async stop() {
      await server.stop();
      process.off('exit', orphanGuard);
      dir.remove();
    },
  };
}
