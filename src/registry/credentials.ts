/**
 * Device secret hashing.
 *
 * Why a fast hash (salted SHA-256) and not scrypt/bcrypt/argon2: device secrets are
 * machine credentials, not passwords people choose. The registry must import
 * 100k devices in well under a minute and authenticate a storm of 10k reconnects
 * (after a broker restart) quickly; at interactive cost (~50-100 ms per hash) that
 * is 1.5-3 hours of CPU for the import and minutes of stalled connects. A slow
 * hash exists to protect low-entropy secrets against offline guessing; here the
 * protection is the entropy itself: secrets must be at least 16 characters, and
 * a randomly generated one (e.g. `openssl rand -base64 18`) carries ~96 bits,
 * beyond any brute force at any hash speed. So the length rule is the security
 * control and must stay. The per-credential random salt stops precomputed tables
 * and makes equal secrets hash differently. Secrets must be generated randomly:
 * the minimum length cannot detect "aaaaaaaaaaaaaaaa".
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { FaultlineError } from '../errors/catalogue.js';

export const MIN_SECRET_LENGTH = 16;
/** Bounds the work one credential check can cost (MQTT passwords may be 64 KiB). */
export const MAX_SECRET_LENGTH = 1024;
export const SALT_BYTES = 16;
const PREFIX = 'sha256';

export function secretProblem(secret: string): string | null {
  if (secret.length < MIN_SECRET_LENGTH) {
    return `device secrets must be at least ${MIN_SECRET_LENGTH} characters (use a random one, e.g. openssl rand -base64 18)`;
  }
  if (secret.length > MAX_SECRET_LENGTH) {
    return `device secrets must be at most ${MAX_SECRET_LENGTH} characters`;
  }
  return null;
}

function digest(salt: Buffer, secret: string): Buffer {
  return createHash('sha256').update(salt).update(secret, 'utf8').digest();
}

/** `sha256$<salt b64url>$<hash b64url>`; throws FL_VALIDATION for a secret that is too short. */
export function hashSecret(secret: string, salt: Buffer = randomBytes(SALT_BYTES)): string {
  const problem = secretProblem(secret);
  if (problem) throw new FaultlineError('FL_VALIDATION', problem);
  if (salt.length !== SALT_BYTES) throw new Error(`a salt must be ${SALT_BYTES} bytes`);
  return `${PREFIX}$${salt.toString('base64url')}$${digest(salt, secret).toString('base64url')}`;
}

/** Constant-time check; false (never a throw) for a wrong, short or overlong secret or a malformed hash. */
export function verifySecret(secret: string, hash: string): boolean {
  const parts = hash.split('$');
  if (parts.length !== 3 || parts[0] !== PREFIX) return false;
  const salt = Buffer.from(parts[1]!, 'base64url');
  const expected = Buffer.from(parts[2]!, 'base64url');
  if (salt.length !== SALT_BYTES || expected.length !== 32) return false;
  if (secret.length > MAX_SECRET_LENGTH) return false;
  // A short secret cannot match any stored hash (storing requires the minimum), but it is hashed
  // anyway so the answer takes the same time either way.
  const ok = timingSafeEqual(digest(salt, secret), expected);
  return ok && secret.length >= MIN_SECRET_LENGTH;
}

/** A well-formed hash no secret is known for, to spend the same time on an unknown device. */
export const DUMMY_HASH = hashSecret(randomBytes(24).toString('base64url'));
