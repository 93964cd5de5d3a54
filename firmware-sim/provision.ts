/**
 * Registers simulated devices with the bridge's HTTP API. Idempotent: secrets are
 * derived from seed and id, so a device that already exists (409) is taken to be
 * ours from an earlier run. Large fleets go through the CSV import, which refuses
 * a whole file if any id exists, so existing ids are listed and left out first.
 */
import { deriveSecret } from './credentials.js';

export interface ProvisionDevice {
  id: string;
  model: string;
  firmware: string;
  ownerId: string;
  ownerLocale: string;
  region: string;
  batch: string;
  secret: string;
}

/** An owner of simulated devices, registered so guides can reach the owner-app stand-in. */
export interface ProvisionOwner {
  id: string;
  locale: string;
  secret: string;
  /** "off" for simulated owners: a demo at night must not wait for quiet hours to end. */
  quietHours?: string;
}

export interface ProvisionOptions {
  apiUrl: string;
  token: string;
  devices: readonly ProvisionDevice[];
  /** Owners to register (POST /api/v1/owners/import with upsert, so a re-run rotates nothing: same secrets). */
  owners?: readonly ProvisionOwner[];
  /** At or above this many devices, use the CSV import. */
  bulkThreshold?: number;
  /** Rows per import request. */
  chunkSize?: number;
  /** Parallel single-device requests. */
  concurrency?: number;
  fetch?: typeof fetch;
  log?: (line: string) => void;
  /** First wait before retrying an unreachable or not-yet-ready (503) bridge; doubles each time. */
  retryDelayMs?: number;
}

export interface ProvisionResult {
  mode: 'single' | 'bulk';
  created: number;
  /** Already registered: assumed to carry the same derived secret. */
  existing: number;
  failed: Array<{ id: string; status: number; message: string }>;
  /** Owners registered or updated; failures are in `failed` under the owner id. */
  owners: { created: number; updated: number };
}

export class ProvisionError extends Error {}

const RETRIES = 5;
/** Owners per import request (the bridge takes up to 10,000). */
const OWNER_CHUNK = 5_000;
const CSV_HEADER = 'id,model,firmware,owner_id,owner_locale,region,batch,secret';

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** The devices of an expanded fleet as the API registers them, each with its seed-derived secret. */
export function fleetDevices(
  specs: ReadonlyArray<Omit<ProvisionDevice, 'secret'>>,
  seed: string,
): ProvisionDevice[] {
  return specs.map(({ id, model, firmware, ownerId, ownerLocale, region, batch }) => ({
    id,
    model,
    firmware,
    ownerId,
    ownerLocale,
    region,
    batch,
    secret: deriveSecret(seed, id),
  }));
}

export function toCsv(devices: readonly ProvisionDevice[]): string {
  const rows = devices.map((d) =>
    [d.id, d.model, d.firmware, d.ownerId, d.ownerLocale, d.region, d.batch, d.secret]
      .map(csvField)
      .join(','),
  );
  return `${CSV_HEADER}\n${rows.join('\n')}\n`;
}

async function errorMessage(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (body.error?.message) return `${body.error.code ?? res.status}: ${body.error.message}`;
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 300) || res.statusText;
}

export async function provision(o: ProvisionOptions): Promise<ProvisionResult> {
  const doFetch = o.fetch ?? fetch;
  const base = `${o.apiUrl.replace(/\/+$/, '')}/api/v1`;
  const auth = { Authorization: `Bearer ${o.token}` };
  const log = o.log ?? (() => {});
  const result: ProvisionResult = {
    mode: o.devices.length >= (o.bulkThreshold ?? 100) ? 'bulk' : 'single',
    created: 0,
    existing: 0,
    failed: [],
    owners: { created: 0, updated: 0 },
  };

  const call = async (path: string, init: RequestInit): Promise<Response> => {
    let res: Response | undefined;
    // A bridge that is starting answers 503 (FL_NOT_READY) or not at all for a moment: wait for it briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        res = await doFetch(`${base}${path}`, { ...init, headers: { ...auth, ...(init.headers ?? {}) } });
        if (res.status !== 503 || attempt >= RETRIES) break;
        await res.body?.cancel();
      } catch (err) {
        if (attempt >= RETRIES) {
          throw new ProvisionError(`cannot reach the bridge API at ${o.apiUrl}: ${(err as Error).message}`);
        }
      }
      await new Promise((r) => setTimeout(r, (o.retryDelayMs ?? 250) * 2 ** attempt));
    }
    if (res.status === 401 || res.status === 403) {
      throw new ProvisionError(
        `the bridge refused the admin token (${res.status}: ${await errorMessage(res)}); set FAULTLINE_ADMIN_TOKEN or --token`,
      );
    }
    return res;
  };

  const registerOne = async (d: ProvisionDevice): Promise<void> => {
    const res = await call('/devices', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(d),
    });
    if (res.ok) {
      await res.body?.cancel();
      result.created++;
    } else if (res.status === 409) {
      await res.body?.cancel();
      result.existing++;
    } else {
      result.failed.push({ id: d.id, status: res.status, message: await errorMessage(res) });
    }
  };

  const registerEach = async (devices: readonly ProvisionDevice[]): Promise<void> => {
    let next = 0;
    const worker = async () => {
      while (next < devices.length) await registerOne(devices[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 8, devices.length) }, worker));
  };

  const registerOwners = async (): Promise<ProvisionResult> => {
    const owners = o.owners ?? [];
    for (let i = 0; i < owners.length; i += OWNER_CHUNK) {
      const chunk = owners.slice(i, i + OWNER_CHUNK);
      const res = await call('/owners/import', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ owners: chunk, upsert: true }),
      });
      if (res.ok) {
        const body = (await res.json().catch(() => ({}))) as { created?: number; updated?: number };
        result.owners.created += body.created ?? 0;
        result.owners.updated += body.updated ?? 0;
      } else {
        const message = await errorMessage(res);
        for (const owner of chunk) result.failed.push({ id: owner.id, status: res.status, message });
      }
    }
    return result;
  };

  if (result.mode === 'single') {
    await registerEach(o.devices);
    return registerOwners();
  }

  const existing = await listExisting(call, new Set(o.devices.map((d) => d.id)));
  if (existing === undefined) log('could not list registered devices; importing everything');
  const fresh = o.devices.filter((d) => !existing?.has(d.id));
  result.existing += o.devices.length - fresh.length;
  const chunkSize = o.chunkSize ?? 5_000;
  for (let i = 0; i < fresh.length; i += chunkSize) {
    const chunk = fresh.slice(i, i + chunkSize);
    const res = await call('/devices/import', {
      method: 'POST',
      headers: { 'Content-Type': 'text/csv' },
      body: toCsv(chunk),
    });
    if (res.ok) {
      const body = (await res.json().catch(() => ({}))) as { imported?: number };
      result.created += typeof body.imported === 'number' ? body.imported : chunk.length;
      log(`imported ${Math.min(i + chunkSize, fresh.length)}/${fresh.length}`);
    } else if (res.status === 400 || res.status === 409) {
      // All or nothing: one row registered meanwhile refuses the file, so fall back to one by one.
      log(`import refused (${await errorMessage(res)}); registering this chunk one by one`);
      await registerEach(chunk);
    } else {
      throw new ProvisionError(`device import failed: ${res.status} ${await errorMessage(res)}`);
    }
  }
  return registerOwners();
}

/** Ids among `wanted` that the bridge already has, or undefined when it cannot list them. */
async function listExisting(
  call: (path: string, init: RequestInit) => Promise<Response>,
  wanted: Set<string>,
): Promise<Set<string> | undefined> {
  const found = new Set<string>();
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ limit: '1000' });
    if (cursor) query.set('cursor', cursor);
    const res = await call(`/devices?${query}`, { method: 'GET' });
    if (!res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    const page = (await res.json()) as { items?: Array<{ id: string }>; nextCursor?: string | null };
    for (const item of page.items ?? []) if (wanted.has(item.id)) found.add(item.id);
    cursor = page.nextCursor ?? null;
  } while (cursor);
  return found;
}
