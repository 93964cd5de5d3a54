/**
 * Device secrets. Derived from seed and id (HMAC-SHA256), so `provision` and
 * `run` agree without sharing a file and a re-run provisions the same secrets.
 * Anyone who knows the seed knows the secrets: simulated fleets only.
 */
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { DEVICE_ID_PATTERN } from '../src/contract/index.js';

/** 32 base64url characters (192 bits); the bridge requires at least 16. */
export const SECRET_LENGTH = 32;

export function deriveSecret(seed: string, deviceId: string): string {
  return createHmac('sha256', `firmware-sim\u0000${seed}`)
    .update(deviceId)
    .digest('base64url')
    .slice(0, SECRET_LENGTH);
}

/** An owner's app secret: same scheme as devices, under a key of its own so no owner shares a device's secret. */
export function deriveOwnerSecret(seed: string, ownerId: string): string {
  return createHmac('sha256', `firmware-sim-owner\u0000${seed}`)
    .update(ownerId)
    .digest('base64url')
    .slice(0, SECRET_LENGTH);
}

const ownerCredentialSchema = z.object({
  id: z.string().min(1),
  locale: z.string().optional(),
  secret: z.string().min(16),
});

const credentialSchema = z.object({
  id: z.string().regex(DEVICE_ID_PATTERN),
  model: z.string().optional(),
  firmware: z.string().optional(),
  ownerId: z.string().optional(),
  ownerLocale: z.string().optional(),
  region: z.string().optional(),
  batch: z.string().optional(),
  secret: z.string().min(16),
});

export const credentialsFileSchema = z.object({
  version: z.literal(1),
  seed: z.string().optional(),
  api: z.string().optional(),
  broker: z.string().optional(),
  createdAt: z.string().optional(),
  devices: z.array(credentialSchema),
  owners: z.array(ownerCredentialSchema).optional(),
});

export type CredentialsFile = z.infer<typeof credentialsFileSchema>;
export type Credential = z.infer<typeof credentialSchema>;
export type OwnerCredential = z.infer<typeof ownerCredentialSchema>;

export function writeCredentials(path: string, file: CredentialsFile): void {
  // Secrets: readable by the owner only.
  writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
}

export function readCredentials(path: string): Map<string, string> {
  return new Map(readCredentialsFile(path).devices.map((d) => [d.id, d.secret]));
}

/** Owner id -> app secret, from a credentials file written by `provision`. */
export function readOwnerCredentials(path: string): Map<string, string> {
  return new Map((readCredentialsFile(path).owners ?? []).map((o) => [o.id, o.secret]));
}

export function readCredentialsFile(path: string): CredentialsFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read credentials ${path}: ${(err as Error).message}`);
  }
  const parsed = credentialsFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new Error(
      `invalid credentials file ${path}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}

/** Secret lookup for a run: the credentials file when given (every device must be in it), else derived. */
export function secretSource(
  seed: string,
  credentials: Map<string, string> | undefined,
  deviceIds: Iterable<string>,
) {
  if (credentials) {
    const missing = [...deviceIds].filter((id) => !credentials.has(id));
    if (missing.length > 0) {
      const shown = missing.slice(0, 5).join(', ');
      throw new Error(
        `credentials file lacks ${missing.length} device(s): ${shown}${missing.length > 5 ? ', ...' : ''}`,
      );
    }
    return (id: string) => credentials.get(id)!;
  }
  return (id: string) => deriveSecret(seed, id);
}
