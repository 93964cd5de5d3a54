/** Provisioning against a stand-in for the bridge's device API (same routes, auth and error shapes). */
import { once } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  deriveOwnerSecret,
  deriveSecret,
  readCredentials,
  readOwnerCredentials,
} from '../../firmware-sim/credentials.js';
import { buildProgram } from '../../firmware-sim/program.js';
import { type ProvisionDevice, provision, toCsv } from '../../firmware-sim/provision.js';
import { DEVICE_ID_PATTERN } from '../../src/contract/index.js';
import { tempDir } from '../helpers/process.js';

const TOKEN = 'test-admin-token-0123456789';
const NO_OWNERS = { created: 0, updated: 0 };

interface Api {
  url: string;
  devices: Map<string, Record<string, string>>;
  owners: Map<string, Record<string, string>>;
  requests: Array<{ method: string; path: string; type: string | undefined; auth: string | undefined }>;
  /** Pretend the bridge cannot list devices (an older bridge, or a token without the role). */
  listing: boolean;
  /** Answer this many more requests with 503 FL_NOT_READY, as a starting bridge does. */
  notReady: number;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
}

async function startApi(): Promise<Api> {
  const api = {
    devices: new Map(),
    owners: new Map(),
    requests: [],
    listing: true,
    notReady: 0,
  } as unknown as Api;
  const error = (code: string, message: string, details?: unknown) =>
    JSON.stringify({ error: { code, message, details } });
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    api.requests.push({
      method: req.method ?? '',
      path: url.pathname,
      type: req.headers['content-type'],
      auth: req.headers.authorization,
    });
    const send = (status: number, payload: string) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(payload);
    };
    if (api.notReady > 0) {
      api.notReady--;
      return send(503, error('FL_NOT_READY', 'Faultline is not ready'));
    }
    if (req.headers.authorization !== `Bearer ${TOKEN}`)
      return send(401, error('FL_UNAUTHORIZED', 'bad token'));
    if (req.method === 'POST' && url.pathname === '/api/v1/devices') {
      const d = JSON.parse(await body(req)) as Record<string, string>;
      if (api.devices.has(d.id!))
        return send(409, error('FL_DEVICE_EXISTS', 'A device with this id already exists'));
      api.devices.set(d.id!, d);
      return send(201, JSON.stringify({ id: d.id }));
    }
    if (req.method === 'GET' && url.pathname === '/api/v1/devices') {
      if (!api.listing) return send(404, error('FL_NOT_FOUND', 'No such resource'));
      const ids = [...api.devices.keys()].sort();
      const limit = Number(url.searchParams.get('limit') ?? 50);
      const from = Number(url.searchParams.get('cursor') ?? 0);
      const items = ids.slice(from, from + limit).map((id) => ({ id }));
      return send(
        200,
        JSON.stringify({ items, nextCursor: from + limit < ids.length ? String(from + limit) : null }),
      );
    }
    if (req.method === 'POST' && url.pathname === '/api/v1/devices/import') {
      const rows = parseCsv(await body(req), { columns: true }) as Array<Record<string, string>>;
      const taken = rows.filter((r) => api.devices.has(r.id!));
      if (taken.length > 0) {
        return send(400, error('FL_IMPORT_INVALID', `${taken.length} invalid rows; nothing was imported`));
      }
      for (const r of rows) {
        api.devices.set(r.id!, {
          id: r.id!,
          model: r.model!,
          firmware: r.firmware!,
          ownerId: r.owner_id!,
          ownerLocale: r.owner_locale!,
          region: r.region!,
          batch: r.batch!,
          secret: r.secret!,
        });
      }
      return send(200, JSON.stringify({ imported: rows.length }));
    }
    if (req.method === 'POST' && url.pathname === '/api/v1/owners/import') {
      const { owners, upsert } = JSON.parse(await body(req)) as {
        owners: Array<Record<string, string>>;
        upsert: boolean;
      };
      const taken = owners.filter((o) => api.owners.has(o.id!));
      if (taken.length > 0 && !upsert) return send(400, error('FL_IMPORT_INVALID', 'owners exist'));
      for (const o of owners) api.owners.set(o.id!, o);
      return send(200, JSON.stringify({ created: owners.length - taken.length, updated: taken.length }));
    }
    send(404, error('FL_NOT_FOUND', 'No such resource'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('no address');
  api.url = `http://127.0.0.1:${address.port}`;
  api.close = () => new Promise((resolve) => server.close(() => resolve()));
  return api;
}

function fleet(n: number, prefix = 'p-'): ProvisionDevice[] {
  return Array.from({ length: n }, (_, i) => {
    const id = `${prefix}${String(i + 1).padStart(4, '0')}`;
    return {
      id,
      model: 'AC-9000',
      firmware: '3.2.1',
      ownerId: `o-${i}`,
      ownerLocale: 'zh-CN',
      region: i % 2 ? 'cn-east' : 'cn, "south"',
      batch: 'B1',
      secret: deriveSecret('s', id),
    };
  });
}

let api: Api;
let dir: ReturnType<typeof tempDir>;
beforeEach(async () => {
  api = await startApi();
  dir = tempDir('prov');
});
afterEach(async () => {
  await api.close();
  dir.remove();
});

async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  let out = '';
  let err = '';
  let code = 0;
  const sink = (f: (s: string) => void) =>
    ({
      write: (s: string) => {
        f(s);
        return true;
      },
    }) as unknown as NodeJS.WritableStream;
  await buildProgram({
    stdout: sink((s) => {
      out += s;
    }),
    stderr: sink((s) => {
      err += s;
    }),
    env,
    now: Date.now,
    signals: { on: () => undefined, off: () => undefined } as never,
    exit: () => undefined,
    setExitCode: (c) => {
      code = c;
    },
  }).parseAsync(['node', 'firmware-sim', ...args]);
  return { out, err, code };
}

describe('provisioning', { timeout: 120_000 }, () => {
  it('registers small fleets one by one with the admin token, and a re-run finds them all (409)', async () => {
    const devices = fleet(5);
    const first = await provision({ apiUrl: api.url, token: TOKEN, devices });
    expect(first).toEqual({ mode: 'single', created: 5, existing: 0, failed: [], owners: NO_OWNERS });
    expect(api.devices.get('p-0001')).toEqual(devices[0]);
    expect(api.requests.every((r) => r.auth === `Bearer ${TOKEN}` && r.type === 'application/json')).toBe(
      true,
    );
    const again = await provision({ apiUrl: api.url, token: TOKEN, devices });
    expect(again).toEqual({ mode: 'single', created: 0, existing: 5, failed: [], owners: NO_OWNERS });
  });

  it('imports large fleets as CSV, leaving out devices that already exist', async () => {
    const devices = fleet(250);
    for (const d of devices.slice(0, 20)) api.devices.set(d.id, { ...d });
    const result = await provision({ apiUrl: api.url, token: TOKEN, devices, chunkSize: 100 });
    expect(result).toEqual({ mode: 'bulk', created: 230, existing: 20, failed: [], owners: NO_OWNERS });
    const imports = api.requests.filter((r) => r.path === '/api/v1/devices/import');
    expect(imports).toHaveLength(3);
    expect(imports.every((r) => r.type === 'text/csv')).toBe(true);
    expect(api.devices.get('p-0250')).toEqual(devices[249]);
    // RFC 4180 quoting survives the round trip.
    expect(api.devices.get('p-0021')!.region).toBe('cn, "south"');
    expect(toCsv(devices.slice(0, 1)).split('\n')[0]).toBe(
      'id,model,firmware,owner_id,owner_locale,region,batch,secret',
    );
  });

  it('falls back to one by one when the import is refused and the bridge cannot list devices', async () => {
    api.listing = false;
    const devices = fleet(120);
    for (const d of devices.slice(50, 55)) api.devices.set(d.id, { ...d });
    const result = await provision({ apiUrl: api.url, token: TOKEN, devices });
    expect(result).toEqual({ mode: 'bulk', created: 115, existing: 5, failed: [], owners: NO_OWNERS });
    expect(api.devices.size).toBe(120);
  });

  it('waits for a bridge that is still starting (503), then registers', async () => {
    api.notReady = 3;
    const result = await provision({
      apiUrl: api.url,
      token: TOKEN,
      devices: fleet(2),
      concurrency: 1,
      retryDelayMs: 1,
    });
    expect(result).toEqual({ mode: 'single', created: 2, existing: 0, failed: [], owners: NO_OWNERS });
    expect(api.requests).toHaveLength(5);
    api.notReady = 100;
    const gaveUp = await provision({ apiUrl: api.url, token: TOKEN, devices: fleet(1), retryDelayMs: 1 });
    expect(gaveUp.failed).toEqual([
      { id: 'p-0001', status: 503, message: 'FL_NOT_READY: Faultline is not ready' },
    ]);
  });

  it('stops at once on a refused token, saying which setting to fix', async () => {
    await expect(provision({ apiUrl: api.url, token: 'wrong', devices: fleet(3) })).rejects.toThrow(
      /refused the admin token \(401: FL_UNAUTHORIZED: bad token\); set FAULTLINE_ADMIN_TOKEN/,
    );
    expect(api.requests).toHaveLength(1);
  });

  it('provision command: writes credentials (600) that run can use, deterministic across re-runs', async () => {
    const out = join(dir.path, 'creds.json');
    const env = { FAULTLINE_ADMIN_TOKEN: TOKEN };
    const res = await cli(
      ['provision', '--devices', '4', '--model', 'RV-200', '--seed', 'x', '--out', out, '--api', api.url],
      env,
    );
    expect(res.code, res.err).toBe(0);
    expect(res.out).toMatch(
      /provisioned 4 device\(s\) via POST \/api\/v1\/devices: 4 created, 0 already registered/,
    );
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const file = JSON.parse(readFileSync(out, 'utf8'));
    expect(file.devices.map((d: { id: string }) => d.id)).toEqual([
      'dev-rv200-00001',
      'dev-rv200-00002',
      'dev-rv200-00003',
      'dev-rv200-00004',
    ]);
    const secrets = readCredentials(out);
    for (const [id, secret] of secrets) {
      expect(DEVICE_ID_PATTERN.test(id)).toBe(true);
      expect(secret.length).toBeGreaterThanOrEqual(24);
      expect(secret).toBe(deriveSecret('x', id));
      expect(api.devices.get(id)!.secret).toBe(secret);
    }
    expect(new Set(secrets.values()).size).toBe(4);
    // Each device's owner is registered too, with a derived app secret written next to the device secrets.
    const owners = readOwnerCredentials(out);
    expect([...owners.keys()]).toEqual(file.devices.map((d: { ownerId: string }) => d.ownerId));
    for (const [id, secret] of owners) {
      expect(secret).toBe(deriveOwnerSecret('x', id));
      expect(secret).not.toBe(deriveSecret('x', id));
      expect(api.owners.get(id)).toMatchObject({ id, secret, quietHours: 'off' });
    }
    expect(res.out).toMatch(/4 owner\(s\) \(4 new, 0 updated\)/);
    const again = await cli(
      ['provision', '--devices', '4', '--model', 'RV-200', '--seed', 'x', '--out', out, '--api', api.url],
      env,
    );
    expect(again.out).toMatch(/0 created, 4 already registered, 0 failed; 4 owner\(s\) \(0 new, 4 updated\)/);
    expect(readOwnerCredentials(out)).toEqual(owners);
    expect(readCredentials(out)).toEqual(secrets);
  });

  it('provision --recording --remap registers a recording under its new ids', async () => {
    const rec = join(dir.path, 'r.jsonl');
    await cli([
      'generate',
      '--devices',
      '2',
      '--seed',
      'r',
      '--duration',
      '5m',
      '--start',
      '2026-01-01T00:00:00Z',
      '--out',
      rec,
    ]);
    const out = join(dir.path, 'lab.json');
    const res = await cli(
      [
        'provision',
        '--recording',
        rec,
        '--remap',
        'dev-(.*)=lab-$1',
        '--out',
        out,
        '--api',
        api.url,
        '--token',
        TOKEN,
      ],
      {},
    );
    expect(res.code, res.err).toBe(0);
    expect([...api.devices.keys()].sort()).toEqual(['lab-ac9000-00001', 'lab-ac9000-00002']);
    expect(api.devices.get('lab-ac9000-00001')).toMatchObject({
      model: 'AC-9000',
      secret: deriveSecret('r', 'lab-ac9000-00001'),
    });
  });

  it('--no-register only writes the file; without a token it refuses to call the API', async () => {
    const out = join(dir.path, 'c.json');
    const res = await cli(['provision', '--devices', '2', '--out', out, '--no-register', '--api', api.url]);
    expect(res.out).toMatch(/wrote credentials for 2 device\(s\)/);
    expect(api.requests).toHaveLength(0);
    await expect(cli(['provision', '--devices', '2', '--out', out, '--api', api.url])).rejects.toThrow(
      /no admin token/,
    );
  });
});
