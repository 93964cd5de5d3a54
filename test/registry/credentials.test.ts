import { describe, expect, it } from 'vitest';
import { hashSecret, MIN_SECRET_LENGTH, verifySecret } from '../../src/registry/credentials.js';

const SECRET = 'n3k8Qz-Vb7mW2pLx9rT4';

describe('device credentials', () => {
  it('hashes as sha256$<salt>$<hash> and verifies the right secret only', () => {
    const hash = hashSecret(SECRET);
    expect(hash).toMatch(/^sha256\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(hash).not.toContain(SECRET);
    expect(verifySecret(SECRET, hash)).toBe(true);
    expect(verifySecret(`${SECRET}x`, hash)).toBe(false);
    expect(verifySecret(SECRET.slice(0, -1), hash)).toBe(false);
    expect(verifySecret('', hash)).toBe(false);
  });

  it('salts each credential, so equal secrets hash differently', () => {
    const a = hashSecret(SECRET);
    const b = hashSecret(SECRET);
    expect(a).not.toBe(b);
    expect(verifySecret(SECRET, a)).toBe(true);
    expect(verifySecret(SECRET, b)).toBe(true);
  });

  it('refuses secrets shorter than 16 characters with a clear error', () => {
    expect(MIN_SECRET_LENGTH).toBe(16);
    expect(() => hashSecret('fifteen-chars-x')).toThrow(
      expect.objectContaining({
        code: 'FL_VALIDATION',
        message: expect.stringMatching(/at least 16 characters/),
      }),
    );
    expect(() => hashSecret('sixteen-chars-xx')).not.toThrow();
  });

  it('answers false, never throws, for malformed or foreign hashes', () => {
    const good = hashSecret(SECRET);
    const [, salt, digest] = good.split('$');
    for (const bad of [
      '',
      'sha256',
      `md5$${salt}$${digest}`,
      `sha256$${salt}`,
      `sha256$${salt}$${digest}$extra`,
      `sha256$${salt}$${digest!.slice(0, 20)}`,
      `sha256$$${digest}`,
      '$2b$10$abcdefghijklmnopqrstuv',
    ]) {
      expect(verifySecret(SECRET, bad)).toBe(false);
    }
  });
});
