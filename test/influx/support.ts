/**
 * Shared by the InfluxDB tests: waiting for the sink to catch up, a fault-injecting
 * HTTP proxy in front of a real server, and reading points back.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import type { TestBridge } from '../helpers/bridge.js';
import { until } from '../helpers/net.js';

export function sink(bridge: TestBridge) {
  const s = bridge.app.parts.influx.sink;
  if (!s) throw new Error('InfluxDB sink is not running');
  return s;
}

/** Waits until every record in the bridge's log is confirmed by InfluxDB (or quarantined). */
export async function caughtUp(bridge: TestBridge, timeoutMs = 20_000): Promise<void> {
  const wal = bridge.app.parts.wal;
  await until(
    'InfluxDB sink to catch up with the log',
    () => sink(bridge).position >= wal.lastLsn,
    timeoutMs,
  );
}

export interface ProxyRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

const FORWARDED_HEADERS = ['content-type', 'content-encoding', 'authorization', 'accept'];

export type ProxyAnswer =
  | 'forward'
  | { status: number; body?: string; headers?: Record<string, string> }
  | Promise<'forward' | { status: number; body?: string; headers?: Record<string, string> }>;

export interface FaultProxy {
  url: string;
  requests: ProxyRequest[];
  /** How many requests got an answer (forwarded or injected). */
  answered: number;
  stop(): Promise<void>;
}

/** An HTTP proxy that lets a test answer any request itself or pass it to the real server. */
export async function startFaultProxy(
  target: string,
  decide: (req: ProxyRequest, index: number) => ProxyAnswer,
): Promise<FaultProxy> {
  const requests: ProxyRequest[] = [];
  const state = { answered: 0 };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const entry: ProxyRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    const index = requests.push(entry) - 1;
    try {
      const answer = await decide(entry, index);
      if (answer === 'forward') {
        const upstream = await fetch(`${target}${entry.url}`, {
          method: entry.method,
          // Only what the servers read: hop-by-hop headers (transfer-encoding, connection) must not be copied.
          headers: Object.fromEntries(
            Object.entries(req.headers).filter(([k]) => FORWARDED_HEADERS.includes(k)),
          ) as Record<string, string>,
          body: entry.method === 'GET' || entry.method === 'HEAD' ? undefined : entry.body,
        });
        const text = await upstream.text();
        res.writeHead(upstream.status, {
          'content-type': upstream.headers.get('content-type') ?? 'text/plain',
        });
        res.end(text);
      } else {
        res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        res.end(answer.body ?? '');
      }
    } catch (err) {
      res.writeHead(599);
      res.end(String(err));
    } finally {
      state.answered++;
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get answered() {
      return state.answered;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export function writeRequests(proxy: FaultProxy): ProxyRequest[] {
  return proxy.requests.filter((r) => r.url.startsWith('/write') || r.url.startsWith('/api/v2/write'));
}

export interface QuarantinedFile {
  lines: string[];
  sidecar: { status: number; message: string; points: number; target: string; lsnRange: [number, number] };
}

export function quarantined(dataDir: string): QuarantinedFile[] {
  const dir = join(dataDir, 'influx-quarantine');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.lp'))
    .sort()
    .map((n) => ({
      lines: readFileSync(join(dir, n), 'utf8').trim().split('\n'),
      sidecar: JSON.parse(readFileSync(join(dir, n.replace(/\.lp$/, '.json')), 'utf8')),
    }));
}

export async function metricValue(bridge: TestBridge, name: string, labels: Record<string, string> = {}) {
  const metric = await bridge.app.metrics.registry.getSingleMetric(name)?.get();
  if (!metric) return 0;
  return metric.values
    .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((sum, v) => sum + v.value, 0);
}
