/**
 * IP addresses in the security log are encrypted at rest (DESIGN P8):
 * AES-256-GCM under the security-log key, a fresh 96-bit IV per entry, the
 * 128-bit tag checked on the way out. A database dump, a backup or a replica
 * holds no address in clear; only a cloud node that has the key can read one
 * (the owner's export, GET /v1/account/export).
 *
 * Stored form: `v1.<base64url(iv | tag | ciphertext)>`. The version names the
 * format (and, once keys rotate, the key), so entries written under another
 * scheme are told apart instead of failing to decrypt as garbage.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { keptSecret } from './secret-file.js';

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** authenticated with every entry: a ciphertext is valid only as a camvault security-log IP */
const AAD = Buffer.from('camvault security-log ip v1', 'utf8');

/** the 32 bytes of a key written as 64 hex digits or as base64 (standard or url-safe, padded or not); null otherwise */
export function parseKey32(text: string): Buffer | null {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === 32) return b;
  }
  return null;
}

/** what a wrong key is told, in the one-line config error (never the value) */
export const KEY32_RULE = 'must be 32 bytes, written as 64 hex digits or as base64 (openssl rand -base64 32)';

export function encryptIp(key: Buffer, ip: string): string {
  if (key.length !== 32) throw new Error('the security-log key must be 32 bytes');
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(AAD);
  const body = Buffer.concat([cipher.update(ip, 'utf8'), cipher.final()]);
  return `${VERSION}.${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`;
}

/**
 * The address, or null when the entry cannot be read with this key (another
 * key, a changed byte, another format): an export shows it as unreadable
 * rather than failing.
 */
export function decryptIp(key: Buffer, stored: string): string | null {
  const dot = stored.indexOf('.');
  if (dot < 0 || stored.slice(0, dot) !== VERSION || key.length !== 32) return null;
  const raw = Buffer.from(stored.slice(dot + 1), 'base64url');
  if (raw.length < IV_BYTES + TAG_BYTES) return null;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    decipher.setAAD(AAD);
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return null;
  }
}

/** A key file that is there but holds no key: one line, naming the file, never its content. */
export class SecurityLogKeyError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'SecurityLogKeyError';
  }
}

/**
 * The security-log key: the configured one (securityLogKey,
 * CAMVAULT_SECURITY_LOG_KEY), else the one kept in <dataDir>/security-log-key
 * (64 hex digits, mode 0600), made on the first start. Several cloud nodes on
 * one database must be given the same key in the configuration: a key each
 * node made for itself reads only the entries that node wrote.
 */
export async function resolveSecurityLogKey(config: { securityLogKey?: string; dataDir: string }): Promise<Buffer> {
  if (config.securityLogKey !== undefined) {
    const key = parseKey32(config.securityLogKey);
    if (!key) throw new SecurityLogKeyError(`invalid config: securityLogKey ${KEY32_RULE}`);
    return key;
  }
  return keptSecret(join(config.dataDir, 'security-log-key'), {
    make: () => randomBytes(32).toString('hex'),
    parse: (text) => parseKey32(text) ?? undefined,
    bad: (file) =>
      new SecurityLogKeyError(`${file} does not hold a security-log key (64 hex digits); restore it from a backup, or set CAMVAULT_SECURITY_LOG_KEY`),
  });
}
