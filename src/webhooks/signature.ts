/**
 * Webhook signatures: HMAC-SHA256 over "<unix seconds>.<body>", sent as
 * `X-Faultline-Signature: t=<unix seconds>,v1=<hex>`. Signing the timestamp
 * with the body lets a receiver refuse replays of an old, validly signed request.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-faultline-signature';

export function sign(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`, 'utf8').digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

export interface VerifyOptions {
  /** Current time in ms; default Date.now(). */
  now?: number;
  /** Oldest (or furthest-future) timestamp accepted, in seconds. */
  toleranceSeconds?: number;
}

/**
 * True when `header` carries a v1 signature of `body` under `secret` made within the tolerance.
 * Several v1 values are allowed (a receiver rotating secrets may be sent both).
 */
export function verify(
  secret: string,
  header: string | undefined,
  body: string,
  options: VerifyOptions = {},
): boolean {
  if (!header) return false;
  let t: number | null = null;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const [k, v] = part.trim().split('=', 2);
    if (k === 't' && v && /^\d{1,12}$/.test(v)) t = Number(v);
    else if (k === 'v1' && v && /^[0-9a-f]{64}$/.test(v)) candidates.push(v);
  }
  if (t === null || candidates.length === 0) return false;
  const now = options.now ?? Date.now();
  if (Math.abs(now / 1000 - t) > (options.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`, 'utf8').digest('hex'));
  return candidates.some((c) => timingSafeEqual(Buffer.from(c), expected));
}
