/**
 * Sends one batch of line protocol and says what happened, in terms the sink can
 * act on: written, retry later, too large (split it), or rejected (quarantine it).
 * Neither writer retries or buffers: the write-ahead log is the buffer and the
 * sink owns the retries, so a batch counts as written only on a 2xx seen here.
 *
 * v1 (`POST /write?db=`) goes over node:http rather than node-influx: node-influx
 * serialises its own point objects (the quarantined bytes must be the bytes
 * sent), drops the body of a 5xx, and after a network error disables the host on
 * a timer of its own during which requests fail without reaching the network.
 * v2 (`POST /api/v2/write`) goes through @influxdata/influxdb-client with its
 * retry buffer off (maxRetries 0).
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { type HttpError, InfluxDB, type Transport } from '@influxdata/influxdb-client';
import type { Config } from '../config/schema.js';

export type InfluxSettings = Config['influx'] & { url: string };

export type RetryReason = 'network' | 'throttled' | 'server' | 'auth' | 'not_found' | 'unconfirmed';

export type WriteResult =
  | { kind: 'ok'; status: number }
  | { kind: 'retry'; reason: RetryReason; status: number | null; message: string; retryAfterMs?: number }
  | { kind: 'too_large'; status: number; message: string }
  | { kind: 'rejected'; status: number; message: string };

export interface InfluxWriter {
  /** Where writes go, without credentials, for logs and quarantine sidecars. */
  readonly target: string;
  /** Sends `points` lines of line protocol (newline-separated, as they go on the wire). */
  write(body: Buffer, points: number, signal: AbortSignal): Promise<WriteResult>;
}

export interface WriterHooks {
  /** v1: called on a 404 (database not found); the write is retried at once if it resolves. */
  onMissingDatabase?: (() => Promise<void>) | undefined;
}

export function createWriter(settings: InfluxSettings, hooks: WriterHooks = {}): InfluxWriter {
  return settings.api === 'v2' ? new V2Writer(settings) : new V1Writer(settings, hooks);
}

/** The database InfluxQL reads use: on 2.x through a DBRP mapping (a bucket has a virtual one named after it). */
export function readDatabase(settings: Config['influx']): string {
  return settings.database ?? (settings.api === 'v2' && settings.bucket ? settings.bucket : 'faultline');
}

/**
 * Maps an HTTP answer to what the sink should do with the batch. `body` is the raw answer: early
 * InfluxDB 3 answered a partial write with 201 and the refused lines in the body, so a 201 that says
 * something is treated like the 400 later versions send (the batch is split to find those lines).
 */
export function classify(
  status: number,
  message: string,
  retryAfter: string | null = null,
  body = '',
): WriteResult {
  if (status === 201 && body.trim() !== '') return { kind: 'rejected', status, message };
  if (status >= 200 && status < 300) return { kind: 'ok', status };
  if (status === 413) return { kind: 'too_large', status, message };
  const retry = (reason: RetryReason): WriteResult => {
    const retryAfterMs = parseRetryAfter(retryAfter);
    return retryAfterMs === undefined
      ? { kind: 'retry', reason, status, message }
      : { kind: 'retry', reason, status, message, retryAfterMs };
  };
  if (status === 429) return retry('throttled');
  if (status >= 500 || status === 408) return retry('server');
  // Credentials and a missing database or bucket are configuration, not bad points: the data is
  // fine and must wait in the log for the fix rather than be quarantined wholesale.
  if (status === 401 || status === 403) return retry('auth');
  if (status === 404) return retry('not_found');
  if (status >= 400) return { kind: 'rejected', status, message };
  return retry('unconfirmed');
}

function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The server's own words: `{"error": ...}` (1.x, 3.x) or `{"message": ...}` (2.x), else the text. */
export function serverMessage(body: string | undefined, fallback: string): string {
  const text = (body ?? '').trim();
  if (text === '') return fallback;
  try {
    const json = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof json.error === 'string') return json.error;
    if (typeof json.message === 'string') return json.message;
  } catch {
    // not JSON: the text itself
  }
  return text.length > 4096 ? `${text.slice(0, 4096)}…` : text;
}

function networkMessage(err: unknown): string {
  const e = err as { message?: string; code?: string; cause?: { message?: string; code?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return [e.code, e.message, cause].filter(Boolean).join(': ') || String(err);
}

/** `http://host:8086/prefix` + `/write`, keeping any path prefix a reverse proxy needs. */
export function endpoint(base: string, path: string, query: Record<string, string | undefined>): string {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${path}`;
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
  url.username = '';
  url.password = '';
  return url.toString();
}

/** Authorization for the v1 API: a token (2.x compat, 3.x) or a 1.x user. */
export function v1AuthHeader(settings: Config['influx']): string | undefined {
  if (settings.token) return `Token ${settings.token}`;
  if (settings.username)
    return `Basic ${Buffer.from(`${settings.username}:${settings.password ?? ''}`).toString('base64')}`;
  return undefined;
}

class V1Writer implements InfluxWriter {
  readonly target: string;
  private readonly url: string;
  private readonly headers: Record<string, string>;
  /** node:http rather than fetch: about half the client CPU per point, which on a small box is InfluxDB's. */
  private readonly request: typeof httpRequest;
  private readonly agent: HttpAgent;

  constructor(
    private readonly settings: InfluxSettings,
    private readonly hooks: WriterHooks,
  ) {
    const db = readDatabase(settings);
    this.url = endpoint(settings.url, '/write', { db, rp: settings.retentionPolicy, precision: 'ms' });
    this.target = this.url;
    const auth = v1AuthHeader(settings);
    this.headers = { 'content-type': 'text/plain; charset=utf-8', ...(auth ? { authorization: auth } : {}) };
    const https = this.url.startsWith('https:');
    this.request = https ? httpsRequest : httpRequest;
    this.agent = https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  async write(body: Buffer, _points: number, signal: AbortSignal): Promise<WriteResult> {
    const result = await this.post(body, signal);
    if (result.kind !== 'retry' || result.reason !== 'not_found' || !this.hooks.onMissingDatabase)
      return result;
    try {
      await this.hooks.onMissingDatabase();
    } catch (err) {
      return { ...result, message: `${result.message}; creating it failed: ${networkMessage(err)}` };
    }
    return this.post(body, signal);
  }

  private post(body: Buffer, signal: AbortSignal): Promise<WriteResult> {
    return new Promise<WriteResult>((resolve) => {
      let settled = false;
      const settle = (result: WriteResult) => {
        if (settled) return;
        settled = true;
        resolve(result);
      };
      const req = this.request(
        this.url,
        {
          method: 'POST',
          agent: this.agent,
          signal,
          headers: { ...this.headers, 'content-length': body.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) =>
            settle({ kind: 'retry', reason: 'network', status: null, message: networkMessage(err) }),
          );
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const retryAfter = res.headers['retry-after'];
            settle(
              classify(
                res.statusCode ?? 0,
                serverMessage(text, res.statusMessage ?? ''),
                typeof retryAfter === 'string' ? retryAfter : null,
                text,
              ),
            );
          });
        },
      );
      req.setTimeout(this.settings.timeoutMs, () =>
        req.destroy(new Error(`no answer within ${this.settings.timeoutMs} ms`)),
      );
      req.on('error', (err) =>
        settle({ kind: 'retry', reason: 'network', status: null, message: networkMessage(err) }),
      );
      req.end(body);
    });
  }
}

class V2Writer implements InfluxWriter {
  readonly target: string;
  private readonly client: InfluxDB;

  constructor(private readonly settings: InfluxSettings) {
    this.target = endpoint(settings.url, '/api/v2/write', {
      org: settings.org,
      bucket: settings.bucket,
      precision: 'ms',
    });
    this.client = new InfluxDB({
      url: settings.url.replace(/\/+$/, ''),
      token: settings.token,
      timeout: settings.timeoutMs,
    });
  }

  async write(body: Buffer, points: number, signal: AbortSignal): Promise<WriteResult> {
    // The status comes from the transport itself: WriteApi's close() and flush() can resolve without
    // having sent anything (after close, or with an empty buffer), so only a status seen here counts.
    let status: number | undefined;
    let answer = '';
    const base = this.client.transport;
    const observing: Transport = {
      chunkCombiner: base.chunkCombiner,
      request: (path, body, options, started) => base.request(path, body, options, started),
      iterate: (path, body, options) => base.iterate(path, body, options),
      send(path, body, options, callbacks) {
        base.send(
          path,
          body,
          { ...options, signal },
          {
            ...callbacks,
            responseStarted(headers, statusCode) {
              status = statusCode;
              callbacks?.responseStarted?.(headers, statusCode);
            },
            next(chunk) {
              if (answer.length < 65_536) answer += Buffer.from(chunk).toString('utf8');
              return callbacks?.next?.(chunk) ?? true;
            },
          },
        );
      },
    };
    const writeApi = new InfluxDB({
      url: this.settings.url.replace(/\/+$/, ''),
      token: this.settings.token,
      timeout: this.settings.timeoutMs,
      transport: observing,
    }).getWriteApi(this.settings.org ?? '', this.settings.bucket ?? '', 'ms', {
      // One request per call, sent by close(); no timer, no retry buffer: the sink retries from the log.
      batchSize: 2,
      maxBatchBytes: Number.MAX_SAFE_INTEGER,
      flushInterval: 0,
      maxRetries: 0,
      maxBufferLines: points + 1,
      // Returning a promise makes it the outcome and keeps the client from logging on its own.
      writeFailed: (error) => Promise.reject(error),
    });
    try {
      // One record holding every line: the client joins records with newlines, so this is the same body.
      writeApi.writeRecord(body.toString('utf8'));
      await writeApi.close();
    } catch (err) {
      return this.failure(err);
    }
    if (status !== undefined && status >= 200 && status < 300)
      return classify(status, serverMessage(answer, `HTTP ${status}`), null, answer);
    return {
      kind: 'retry',
      reason: 'unconfirmed',
      status: status ?? null,
      message: `the client reported success without a 2xx answer (status ${status ?? 'none'})`,
    };
  }

  private failure(err: unknown): WriteResult {
    const http = err as Partial<HttpError>;
    if (typeof http.statusCode === 'number' && http.statusCode > 0) {
      const retryAfter = http.headers?.['retry-after'];
      return classify(
        http.statusCode,
        serverMessage(http.body, http.message ?? `HTTP ${http.statusCode}`),
        typeof retryAfter === 'string' ? retryAfter : null,
      );
    }
    return { kind: 'retry', reason: 'network', status: null, message: networkMessage(err) };
  }
}
