/**
 * Signed, short-lived guide links: what a push notification carries so a phone
 * can open the full guide without holding a credential (a browser, a webview,
 * a notification tapped before the app has logged in). The signature covers the
 * guide, the locale, the owner and the expiry, so a link opens one guide for
 * one owner until it expires, and nothing else.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const OWNER_GUIDE_PATH = '/app/v1/guides';

export interface GuideLinkParams {
  guideId: string;
  locale: string;
  ownerId: string;
  /** Unix seconds. */
  exp: number;
}

function mac(key: string, p: GuideLinkParams): Buffer {
  return createHmac('sha256', key)
    .update(`${p.guideId}\n${p.locale}\n${p.ownerId}\n${p.exp}`, 'utf8')
    .digest();
}

export function signGuideLink(key: string, p: GuideLinkParams, base = ''): string {
  const qs = new URLSearchParams({
    locale: p.locale,
    owner: p.ownerId,
    exp: String(p.exp),
    sig: mac(key, p).toString('base64url'),
  });
  return `${base.replace(/\/$/, '')}${OWNER_GUIDE_PATH}/${encodeURIComponent(p.guideId)}?${qs}`;
}

/** True when sig is the link signature of these parameters and the link has not expired. */
export function verifyGuideLink(key: string, p: GuideLinkParams, sig: string, nowMs: number): boolean {
  if (!Number.isSafeInteger(p.exp) || p.exp * 1000 < nowMs) return false;
  const presented = Buffer.from(sig, 'base64url');
  const expected = mac(key, p);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

/** The configured key, else one generated once and kept in the data dir (mode 0600). */
export async function linkKey(configured: string | undefined, dataDir: string): Promise<string> {
  if (configured) return configured;
  const file = join(dataDir, 'push-link-key');
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length >= 32) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = randomBytes(32).toString('base64url');
  await writeFile(file, `${key}\n`, { mode: 0o600 });
  return key;
}
