/**
 * The security log (DESIGN P8, issue 6): sign-ins, failed sign-ins, password
 * changes, binding, sharing, deletions and exports, each with the client's
 * address, which is encrypted at rest (AES-256-GCM) and shown decrypted to
 * the owner only, in the export; entries older than 30 days are erased. A
 * failed sign-in for an address that has no account leaves no trace of the
 * address typed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emailHash } from '../../cloud/auth/email-codes.js';
import { sha256Hex } from '../../cloud/auth/tokens.js';
import type { CloudConfig } from '../../cloud/config.js';
import { decryptIp, encryptIp, parseKey32 } from '../../cloud/ip-crypto.js';
import { eraseOldSecurityLog, SECURITY_LOG_DAYS } from '../../cloud/security-log.js';
import { expectCatalogueError } from '../helpers/api-checks.js';
import {
  api,
  randomSerial,
  registerAndLogin,
  setPlan,
  startTestCloud,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';
import { runCloud } from '../helpers/run-cloud.js';
import { uploadClip } from '../helpers/upload.js';

const DAY = 24 * 3600_000;

/** every row of a table of the cloud's database (SQLite file or PostgreSQL schema) */
async function rawRows(config: CloudConfig, table: string): Promise<Record<string, unknown>[]> {
  if (config.databaseUrl) {
    const c = new pg.Client({ connectionString: config.databaseUrl });
    await c.connect();
    try {
      return (await c.query(`SELECT * FROM ${pg.escapeIdentifier(table)}`)).rows;
    } finally {
      await c.end();
    }
  }
  const db = new Database(join(config.dataDir, 'camvault.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT * FROM "${table}"`).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

/** the whole database as text (every table), to look for what must not be there */
async function wholeDatabase(config: CloudConfig): Promise<string> {
  const tables = config.databaseUrl
    ? ((await rawRowsOfCatalog(config)) as string[])
    : ((await rawRows(config, 'sqlite_master')).filter((r) => r.type === 'table').map((r) => r.name) as string[]);
  const parts: string[] = [];
  for (const t of tables) parts.push(`${t}: ${JSON.stringify(await rawRows(config, t))}`);
  return parts.join('\n');
}

async function rawRowsOfCatalog(config: CloudConfig): Promise<string[]> {
  const c = new pg.Client({ connectionString: config.databaseUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
    );
    return rows.map((r) => r.table_name);
  } finally {
    await c.end();
  }
}

async function exportedLog(base: string, token: string): Promise<{ event: string; at: string; ip: string | null }[]> {
  const res = await api(base, 'GET', '/v1/account/export', { token });
  expect(res.status).toBe(200);
  return res.body.securityLog;
}

describe('the security log', () => {
  let cloud: TestCloud;
  let key: Buffer;

  beforeAll(async () => {
    // behind "a load balancer": X-Forwarded-For names the client, as CAMVAULT_TRUST_PROXY=true allows;
    // no scheduled jobs: the erase test counts what eraseOldSecurityLog removes, which the job would race
    cloud = await startTestCloud({ trustProxy: true, jobs: { enabled: false } });
    // no key configured: the cloud made one and keeps it in its data directory
    key = parseKey32(await readFile(join(cloud.config.dataDir, 'security-log-key'), 'utf8'))!;
    expect(key).toHaveLength(32);
  });
  afterAll(async () => {
    await cloud?.close();
  });

  const from = (ip: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': ip } });

  it('records sign-ins, failed sign-ins, password changes, binding, sharing, deletions and exports, each with the client address', async () => {
    const a = await registerAndLogin(cloud.url);
    const b = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, a.token, 'standard');
    const ip = (n: number): string => `198.51.100.${n}`;
    const login = await api(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password }, ...from(ip(1)) });
    expect(login.status).toBe(200);
    const token = login.body.token as string;
    expectCatalogueError(await api(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: 'not it at all' }, ...from(ip(2)) }), 'INVALID_CREDENTIALS');
    const newPassword = 'another long password';
    expect((await api(cloud.url, 'PATCH', '/v1/account', { token, body: { currentPassword: a.password, newPassword }, ...from(ip(3)) })).status).toBe(200);
    const code = (await api(cloud.url, 'POST', '/v1/devices/bind-codes', { token })).body.code as string;
    const serial = randomSerial('SLOG');
    const claim = await api(cloud.url, 'POST', '/v1/device/claim', { body: { serial, model: 'SIM-1', bindCode: code }, ...from(ip(4)) });
    expect(claim.status).toBe(200);
    const device = { serial, token: claim.body.deviceToken as string };
    expect((await api(cloud.url, 'POST', `/v1/devices/${serial}/shares`, { token, body: { accountId: b.accountId, role: 'viewer' }, ...from(ip(5)) })).status).toBe(201);
    expect((await api(cloud.url, 'DELETE', `/v1/devices/${serial}/shares/${b.accountId}`, { token, ...from(ip(6)) })).status).toBe(204);
    const clip = await uploadClip(cloud.url, { ...device, mqtt: { username: serial, password: 'x' } }, { body: randomBytes(64), startMs: Date.now() - 60_000 });
    expect(clip.complete?.status).toBe(200);
    expect((await api(cloud.url, 'DELETE', `/v1/clips/${clip.clipId}`, { token, ...from(ip(7)) })).status).toBe(204);
    expect((await api(cloud.url, 'DELETE', `/v1/devices/${serial}`, { token, ...from(ip(8)) })).status).toBe(204);

    const log = await api(cloud.url, 'GET', '/v1/account/export', { token, ...from(ip(9)) });
    const entries = (log.body.securityLog as { event: string; ip: string }[]).filter((e) => e.ip.startsWith('198.51.100.'));
    expect(entries.map((e) => [e.event, e.ip])).toEqual([
      ['sign-in', ip(1)],
      ['sign-in-failed', ip(2)],
      ['password-changed', ip(3)],
      ['device-bound', ip(4)],
      ['share-granted', ip(5)],
      ['share-revoked', ip(6)],
      ['clips-deleted', ip(7)],
      ['device-unbound', ip(8)],
      ['data-exported', ip(9)],
    ]);
    // B's log holds B's own events, none of A's
    const bLog = await exportedLog(cloud.url, b.token);
    expect(bLog.some((e) => e.ip?.startsWith('198.51.100.'))).toBe(false);
  });

  it('keeps each address only as AES-256-GCM ciphertext: the database holds none in clear, and the key reads every entry', async () => {
    const a = await registerAndLogin(cloud.url);
    const marker = `203.0.113.${10 + Math.floor(Math.random() * 200)}`;
    expect((await api(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password }, ...from(marker) })).status).toBe(200);
    const rows = (await rawRows(cloud.config, 'security_log')).filter((r) => r.account_id === a.accountId);
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const r of rows) {
      expect(r.ip).toMatch(/^v1\./);
      expect(decryptIp(key, r.ip as string)).toMatch(/^(127\.0\.0\.1|::ffff:127\.0\.0\.1|::1|203\.0\.113\.\d+)$/);
    }
    expect(rows.map((r) => decryptIp(key, r.ip as string))).toContain(marker);
    expect(await wholeDatabase(cloud.config)).not.toContain(marker);
    // an entry is the account, the event, the time and the ciphertext: nothing else
    expect(Object.keys(rows[0]!).sort()).toEqual(['account_id', 'at', 'event', 'id', 'ip']);
  });

  it('a failed sign-in for an address with no account is kept without the address typed or any hash of it, answered exactly like a wrong password', async () => {
    const known = await registerAndLogin(cloud.url);
    const unknown = `nobody-${randomBytes(6).toString('hex')}@example.com`;
    const marker = `192.0.2.${10 + Math.floor(Math.random() * 200)}`;
    const before = (await rawRows(cloud.config, 'security_log')).length;
    const forUnknown = await api(cloud.url, 'POST', '/v1/sessions', { body: { email: unknown, password: 'whatever it is' }, ...from(marker) });
    const forKnown = await api(cloud.url, 'POST', '/v1/sessions', { body: { email: known.email, password: 'whatever it is' }, ...from(marker) });
    expect(forUnknown.status).toBe(401);
    expect(forUnknown.body).toEqual(forKnown.body);
    const added = (await rawRows(cloud.config, 'security_log')).slice(before);
    const mine = added.filter((r) => decryptIp(key, r.ip as string) === marker);
    expect(mine.map((r) => [r.event, r.account_id])).toEqual([
      ['sign-in-failed', null],
      ['sign-in-failed', known.accountId],
    ]);
    const everything = (await wholeDatabase(cloud.config)).toLowerCase();
    for (const trace of [unknown, emailHash(unknown), sha256Hex(unknown)]) expect(everything).not.toContain(trace.toLowerCase());
  });

  it('eraseOldSecurityLog removes entries older than 30 days, of every account and of none, and keeps the rest', async () => {
    const a = await registerAndLogin(cloud.url);
    const now = Date.now();
    const entry = (accountId: string | null, ageMs: number) => ({ accountId, event: 'sign-in', at: now - ageMs, ip: encryptIp(key, '192.0.2.1') });
    await cloud.store.appendSecurityLog(entry(a.accountId, SECURITY_LOG_DAYS * DAY + 1000));
    await cloud.store.appendSecurityLog(entry(null, SECURITY_LOG_DAYS * DAY + 5000));
    await cloud.store.appendSecurityLog(entry(a.accountId, SECURITY_LOG_DAYS * DAY - 60_000));
    const erased = await eraseOldSecurityLog(cloud.store, now);
    expect(erased).toBe(2);
    const left = (await cloud.store.listSecurityLog(a.accountId)).map((e) => now - e.at);
    expect(left.filter((age) => age > SECURITY_LOG_DAYS * DAY)).toEqual([]);
    expect(left).toContain(SECURITY_LOG_DAYS * DAY - 60_000);
    expect((await rawRows(cloud.config, 'security_log')).filter((r) => r.account_id === null && now - Number(r.at) > SECURITY_LOG_DAYS * DAY)).toEqual([]);
    expect(await eraseOldSecurityLog(cloud.store, now)).toBe(0);
  });
});

describe('the security-log key', () => {
  it('without X-Forwarded-For trusted, the address is the socket\'s; an entry written under another key shows as unreadable in the export', async () => {
    const cloud = await startTestCloud();
    try {
      const a: TestAccount = await registerAndLogin(cloud.url);
      const spoofed = await api(cloud.url, 'POST', '/v1/sessions', {
        body: { email: a.email, password: a.password },
        headers: { 'x-forwarded-for': '203.0.113.99' },
      });
      expect(spoofed.status).toBe(200);
      await cloud.store.appendSecurityLog({ accountId: a.accountId, event: 'sign-in', at: Date.now(), ip: encryptIp(randomBytes(32), '192.0.2.50') });
      const log = await exportedLog(cloud.url, a.token);
      expect(log.map((e) => e.ip)).not.toContain('203.0.113.99');
      expect(log.filter((e) => e.ip !== null).every((e) => /^(127\.0\.0\.1|::ffff:127\.0\.0\.1|::1)$/.test(e.ip!))).toBe(true);
      expect(log.filter((e) => e.ip === null)).toHaveLength(1);
    } finally {
      await cloud.close();
    }
  });

  it('a configured key (CAMVAULT_SECURITY_LOG_KEY) is the one used; a bad one stops `npm run cloud` with one line that does not repeat it', async () => {
    const configured = randomBytes(32);
    const cloud = await startTestCloud({ securityLogKey: configured.toString('base64') });
    try {
      const a = await registerAndLogin(cloud.url);
      const rows = await cloud.store.listSecurityLog(a.accountId);
      expect(rows.length).toBeGreaterThan(0);
      for (const r of rows) expect(decryptIp(configured, r.ip)).not.toBeNull();
    } finally {
      await cloud.close();
    }
    const dataDir = await mkdtemp(join(tmpdir(), 'camvault-seclog-bad-'));
    try {
      const bad = 'this-is-not-32-bytes-of-key';
      const run = await runCloud([], { CAMVAULT_PORT: '0', CAMVAULT_DATA_DIR: dataDir, CAMVAULT_SECURITY_LOG_KEY: bad });
      expect(run.code).toBe(1);
      expect(run.stderr.trim()).toMatch(/^camvault cloud: invalid config: CAMVAULT_SECURITY_LOG_KEY must be 32 bytes/);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expect(run.stderr + run.stdout).not.toContain(bad);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
