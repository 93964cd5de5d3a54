import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sign, verify } from '../../src/webhooks/signature.js';

const SECRET = 'whsec-0123456789abcdef';
const BODY = '{"event":"ticket.opened","ticket":{"id":"1"}}';
const NOW = 1_767_600_000_000;
const T = NOW / 1000;

describe('webhook signatures', () => {
  it('is HMAC-SHA256 of "<t>.<body>" in hex, as docs/tickets.md tells receivers to compute it', () => {
    const expected = createHmac('sha256', SECRET).update(`${T}.${BODY}`).digest('hex');
    expect(sign(SECRET, BODY, T)).toBe(`t=${T},v1=${expected}`);
  });

  it('verifies its own signature and refuses any change', () => {
    const header = sign(SECRET, BODY, T);
    expect(verify(SECRET, header, BODY, { now: NOW })).toBe(true);
    expect(verify(SECRET, header, `${BODY} `, { now: NOW })).toBe(false);
    expect(verify(`${SECRET}x`, header, BODY, { now: NOW })).toBe(false);
    expect(verify(SECRET, header.replace(`t=${T}`, `t=${T + 1}`), BODY, { now: NOW })).toBe(false);
    expect(verify(SECRET, undefined, BODY, { now: NOW })).toBe(false);
    expect(verify(SECRET, 'garbage', BODY, { now: NOW })).toBe(false);
  });

  it('refuses a signature older (or newer) than the tolerance, so a captured request cannot be replayed later', () => {
    const header = sign(SECRET, BODY, T);
    expect(verify(SECRET, header, BODY, { now: NOW + 300_000 })).toBe(true);
    expect(verify(SECRET, header, BODY, { now: NOW + 301_000 })).toBe(false);
    expect(verify(SECRET, header, BODY, { now: NOW - 301_000 })).toBe(false);
    expect(verify(SECRET, header, BODY, { now: NOW + 3_600_000, toleranceSeconds: 3_600 })).toBe(true);
  });

  it('accepts any of several v1 values, for secret rotation', () => {
    const mine = sign(SECRET, BODY, T).split(',')[1]!;
    const other = sign('old-secret-0123456789', BODY, T).split(',')[1]!;
    expect(verify(SECRET, `t=${T},${other},${mine}`, BODY, { now: NOW })).toBe(true);
  });
});
