import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadCloudConfig, resolveUrlSigningSecret } from '../../cloud/config.js';

describe('cloud configuration', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camvault-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('has the documented defaults', () => {
    const c = loadCloudConfig({ env: {} });
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      sessionTtlHours: 720,
      uploadUrlTtlSec: 900,
      viewUrlTtlSec: 300,
      bodyLimitBytes: 65536,
      logLevel: 'info',
    });
    expect(c.dataDir).toBe(join(process.cwd(), '.data/cloud'));
    expect(c.publicUrl).toBeUndefined();
    expect(c.plans.basic).toEqual({ retentionDays: 7, cameras: 1, storageBytes: 30e9 });
  });

  it('reads a JSON file, and the environment wins over it', async () => {
    const file = join(dir, 'cloud.json');
    await writeFile(file, JSON.stringify({ port: 9000, host: '0.0.0.0', plans: { solo: { retentionDays: 3, cameras: 1, storageBytes: 1000 } } }));
    const c = loadCloudConfig({ file, env: { CAMVAULT_PORT: '0', CAMVAULT_PUBLIC_URL: 'https://cams.example.com/' } });
    expect(c.port).toBe(0);
    expect(c.host).toBe('0.0.0.0');
    expect(c.publicUrl).toBe('https://cams.example.com');
    expect(Object.keys(c.plans)).toEqual(['solo']);
  });

  it.each([
    [{ CAMVAULT_PORT: 'eighty' }, /CAMVAULT_PORT must be an integer/],
    [{ CAMVAULT_PORT: '70000' }, /port:/],
    [{ CAMVAULT_PUBLIC_URL: 'ftp://x' }, /publicUrl: must be an http/],
    [{ CAMVAULT_URL_SECRET: 'short' }, /urlSigningSecret: must be at least 16/],
    [{ CAMVAULT_LOG_LEVEL: 'loud' }, /logLevel: must be one of/],
    [{ CAMVAULT_DATABASE_URL: 'postgres://u:p@db:port/camvault' }, /^invalid config: CAMVAULT_DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [{ CAMVAULT_DATABASE_URL: 'mysql://u:p@db' }, /CAMVAULT_DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [{ CAMVAULT_DATABASE_URL: 'postgres://u:p@db/x', CAMVAULT_DATABASE_POOL_SIZE: '0' }, /databasePoolSize:/],
  ])('a wrong value (%o) stops it with one clear line', (env, message) => {
    let err: unknown;
    try {
      loadCloudConfig({ env });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
    expect((err as Error).message).not.toContain('u:p');
  });

  it('CAMVAULT_DATABASE_URL selects PostgreSQL; unset keeps SQLite', () => {
    const pgConfig = loadCloudConfig({ env: { CAMVAULT_DATABASE_URL: 'postgresql://u:p@db:5433/camvault', CAMVAULT_DATABASE_POOL_SIZE: '25' } });
    expect(pgConfig.databaseUrl).toBe('postgresql://u:p@db:5433/camvault');
    expect(pgConfig.databasePoolSize).toBe(25);
    const sqliteConfig = loadCloudConfig({ env: { CAMVAULT_DATABASE_URL: '' } });
    expect(sqliteConfig.databaseUrl).toBeUndefined();
  });

  it('CAMVAULT_TRUST_PROXY: off by default; true, a hop count, or a list of proxy addresses', () => {
    expect(loadCloudConfig({ env: {} }).trustProxy).toBe(false);
    expect(loadCloudConfig({ env: { CAMVAULT_TRUST_PROXY: 'true' } }).trustProxy).toBe(true);
    expect(loadCloudConfig({ env: { CAMVAULT_TRUST_PROXY: '2' } }).trustProxy).toBe(2);
    expect(loadCloudConfig({ env: { CAMVAULT_TRUST_PROXY: '10.0.0.0/8, 192.168.1.5' } }).trustProxy).toEqual(['10.0.0.0/8', '192.168.1.5']);
    expect(() => loadCloudConfig({ env: { CAMVAULT_TRUST_PROXY: '0' } })).toThrow(/trustProxy/);
  });

  it('refuses an unknown key and a file that is not JSON', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ prot: 1 }));
    expect(() => loadCloudConfig({ file: bad, env: {} })).toThrow(/invalid config: .*prot/);
    await writeFile(bad, '{ nope');
    expect(() => loadCloudConfig({ file: bad, env: {} })).toThrow(/not valid JSON/);
    expect(() => loadCloudConfig({ file: join(dir, 'missing.json'), env: {} })).toThrow(/cannot read config file .*ENOENT/);
  });

  it('makes a URL-signing secret once, private to its owner, and keeps it across restarts', async () => {
    const dataDir = join(dir, 'data');
    const config = loadCloudConfig({ env: { CAMVAULT_DATA_DIR: dataDir } });
    const first = await resolveUrlSigningSecret(config);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect((await stat(join(dataDir, 'url-secret'))).mode & 0o777).toBe(0o600);
    expect(await resolveUrlSigningSecret(config)).toBe(first);
    expect((await readFile(join(dataDir, 'url-secret'), 'utf8')).trim()).toBe(first);
    const given = loadCloudConfig({ env: { CAMVAULT_DATA_DIR: dataDir, CAMVAULT_URL_SECRET: 'x'.repeat(32) } });
    expect(await resolveUrlSigningSecret(given)).toBe('x'.repeat(32));
  });
});
