import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** An opaque bearer secret: 32 random bytes, base64url (43 characters). */
export function newSecretToken(): string {
  return randomBytes(32).toString('base64url');
}

export const SECRET_TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

/** Tokens are stored as their SHA-256: they carry 256 bits, so a slow hash adds nothing. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

export function hexEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A bind code: 10 Crockford base32 characters = 50 random bits. */
export function newBindCode(): string {
  let bits = BigInt(`0x${randomBytes(7).toString('hex')}`); // 56 bits, 50 used
  let code = '';
  for (let i = 0; i < 10; i++) {
    code += CROCKFORD[Number(bits & 31n)];
    bits >>= 5n;
  }
  return code;
}
