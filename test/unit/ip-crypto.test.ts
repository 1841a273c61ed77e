import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadCloudConfig } from '../../cloud/config.js';
import { decryptIp, encryptIp, parseKey32, resolveSecurityLogKey } from '../../cloud/ip-crypto.js';

describe('IP addresses in the security log: AES-256-GCM', () => {
  const key = randomBytes(32);

  it('round-trips IPv4 and IPv6 addresses, with a fresh IV each time, and no address in the stored form', () => {
    for (const ip of ['127.0.0.1', '203.0.113.77', '2001:db8::1', '::ffff:198.51.100.4']) {
      const a = encryptIp(key, ip);
      const b = encryptIp(key, ip);
      expect(a).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
      expect(a).not.toBe(b);
      expect(a).not.toContain(ip);
      expect(Buffer.from(a.slice(3), 'base64url').toString('latin1')).not.toContain(ip);
      expect(decryptIp(key, a)).toBe(ip);
      expect(decryptIp(key, b)).toBe(ip);
    }
  });

  it('reads nothing with another key, a changed byte, a cut entry or another format', () => {
    const stored = encryptIp(key, '198.51.100.23');
    expect(decryptIp(randomBytes(32), stored)).toBeNull();
    const raw = Buffer.from(stored.slice(3), 'base64url');
    for (const i of [0, 12, 20, raw.length - 1]) {
      const bad = Buffer.from(raw);
      bad[i] = (bad[i] as number) ^ 1;
      expect(decryptIp(key, `v1.${bad.toString('base64url')}`), `byte ${i} changed`).toBeNull();
    }
    expect(decryptIp(key, `v1.${raw.subarray(0, 20).toString('base64url')}`)).toBeNull();
    expect(decryptIp(key, stored.replace(/^v1\./, 'v2.'))).toBeNull();
    expect(decryptIp(key, '198.51.100.23')).toBeNull();
    expect(() => encryptIp(randomBytes(16), '127.0.0.1')).toThrow(/32 bytes/);
  });

  it('takes a key as 64 hex digits or as base64 (padded or not, url-safe or not), and nothing else', () => {
    expect(parseKey32(key.toString('hex'))?.equals(key)).toBe(true);
    expect(parseKey32(key.toString('hex').toUpperCase())?.equals(key)).toBe(true);
    expect(parseKey32(key.toString('base64'))?.equals(key)).toBe(true);
    expect(parseKey32(key.toString('base64url'))?.equals(key)).toBe(true);
    expect(parseKey32(` ${key.toString('base64')}\n`)?.equals(key)).toBe(true);
    for (const bad of ['', 'x'.repeat(64), key.toString('hex').slice(2), randomBytes(31).toString('base64'), randomBytes(48).toString('base64'), 'correct horse battery staple']) {
      expect(parseKey32(bad), JSON.stringify(bad)).toBeNull();
    }
  });
});

describe('the security-log key in the configuration', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camvault-seclog-key-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('CAMVAULT_SECURITY_LOG_KEY: a good value is taken; a bad one is one line naming the variable, never the value', () => {
    const key = randomBytes(32).toString('base64');
    expect(loadCloudConfig({ env: { CAMVAULT_SECURITY_LOG_KEY: key } }).securityLogKey).toBe(key);
    const secret = 'my-secret-but-short';
    let err: unknown;
    try {
      loadCloudConfig({ env: { CAMVAULT_SECURITY_LOG_KEY: secret } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toMatch(/^invalid config: CAMVAULT_SECURITY_LOG_KEY must be 32 bytes/);
    expect(message).not.toContain(secret);
    expect(message).not.toContain('\n');
    // the file's securityLogKey is checked the same way
    expect(() => loadCloudConfig({ overrides: { securityLogKey: 'abc' } })).toThrow(/securityLogKey: must be 32 bytes/);
  });

  it('without a configured key, one is made once, kept in the data directory (0600) and read again', async () => {
    const dataDir = join(dir, 'made');
    const first = await resolveSecurityLogKey({ dataDir });
    expect(first).toHaveLength(32);
    const file = join(dataDir, 'security-log-key');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await readFile(file, 'utf8')).trim()).toBe(first.toString('hex'));
    expect((await resolveSecurityLogKey({ dataDir })).equals(first)).toBe(true);
    // two starts at once agree on one key
    const other = join(dir, 'race');
    const keys = await Promise.all([resolveSecurityLogKey({ dataDir: other }), resolveSecurityLogKey({ dataDir: other })]);
    expect(keys[0]!.equals(keys[1]!)).toBe(true);
    // a configured key wins over the file
    const configured = randomBytes(32);
    expect((await resolveSecurityLogKey({ dataDir, securityLogKey: configured.toString('hex') })).equals(configured)).toBe(true);
  });

  it('a key file that holds no key stops start-up with one line naming the file (a new key would make old entries unreadable)', async () => {
    const dataDir = join(dir, 'broken');
    await resolveSecurityLogKey({ dataDir });
    await writeFile(join(dataDir, 'security-log-key'), 'not a key\n');
    await expect(resolveSecurityLogKey({ dataDir })).rejects.toThrow(/security-log-key does not hold a security-log key/);
  });
});
