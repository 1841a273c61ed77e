import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../shared/clock.js';
import { call, expectError } from '../helpers/api-checks.js';
import { createBindCode, randomSerial, registerAndLogin, startTestCloud, type TestCloud } from '../helpers/cloud.js';

const HOUR = 3600_000;
const freshEmail = (): string => `limit-${randomBytes(6).toString('hex')}@example.com`;

interface Raw {
  status: number;
  retryAfter: string | null;
  text: string;
}

async function raw(base: string, path: string, body: unknown): Promise<Raw> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), text: await res.text() };
}

describe('rate limits on logins, mail, codes and claims', () => {
  let cloud: TestCloud;
  const clock = new ManualClock(Date.parse('2026-03-01T10:00:00Z'));
  beforeAll(async () => {
    cloud = await startTestCloud({
      clock,
      // the key check below reads the SQLite file
      database: 'sqlite',
      rateLimits: {
        loginPerAccount: { max: 3, windowSec: 60 },
        loginPerIp: { max: 12, windowSec: 60 },
        mailPerEmail: { max: 2, windowSec: 3600 },
        mailPerIp: { max: 40, windowSec: 3600 },
        codePerIp: { max: 6, windowSec: 60 },
        claimPerSerial: { max: 2, windowSec: 60 },
        claimPerIp: { max: 5, windowSec: 60 },
      },
    });
  });
  afterAll(async () => {
    await cloud?.close();
  });

  /** past every window: each test starts with fresh counters */
  const nextWindows = (): void => clock.advance(2 * HOUR);
  beforeEach(nextWindows);

  it('logins per account: over the limit 429 with Retry-After, byte for byte alike for a known and an unknown email', async () => {
    const a = await registerAndLogin(cloud.url);
    nextWindows();
    const unknown = freshEmail();
    for (let i = 0; i < 3; i++) {
      await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: 'wrong password' } });
      await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', { body: { email: unknown, password: 'wrong password' } });
    }
    const known = await raw(cloud.url, '/v1/sessions', { email: a.email, password: 'wrong password' });
    const stranger = await raw(cloud.url, '/v1/sessions', { email: unknown, password: 'wrong password' });
    expect(known.status).toBe(429);
    expect(JSON.parse(known.text).error.code).toBe('RATE_LIMITED');
    expect(Number(known.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(known.retryAfter)).toBeLessThanOrEqual(60);
    expect(stranger).toEqual(known);
    // the right password does not get through either, until the window ends
    await expectError('RATE_LIMITED', cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password } });
    clock.advance(Number(known.retryAfter) * 1000);
    expect((await call(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password } })).status).toBe(200);
  });

  it('a password change counts against the login limit of its account', async () => {
    const a = await registerAndLogin(cloud.url);
    nextWindows();
    for (let i = 0; i < 3; i++) {
      await expectError('CURRENT_PASSWORD_WRONG', cloud.url, 'PATCH', '/v1/account', {
        token: a.token,
        body: { currentPassword: 'a guess', newPassword: 'a new password 1' },
      });
    }
    await expectError('RATE_LIMITED', cloud.url, 'PATCH', '/v1/account', {
      token: a.token,
      body: { currentPassword: a.password, newPassword: 'a new password 1' },
    });
  });

  it('logins per IP: many emails from one address are stopped too', async () => {
    nextWindows();
    for (let i = 0; i < 12; i++) {
      await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', { body: { email: freshEmail(), password: 'wrong password' } });
    }
    const res = await expectError('RATE_LIMITED', cloud.url, 'POST', '/v1/sessions', { body: { email: freshEmail(), password: 'wrong password' } });
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
  });

  it('registrations and resets per email share one limit, alike for a taken and a new address', async () => {
    const a = await registerAndLogin(cloud.url);
    nextWindows();
    const fresh = freshEmail();
    const answers: Raw[][] = [];
    for (const email of [a.email, fresh]) {
      answers.push([
        await raw(cloud.url, '/v1/accounts', { email, password: 'some password 123' }),
        await raw(cloud.url, '/v1/accounts/password-reset', { email }),
        await raw(cloud.url, '/v1/accounts', { email, password: 'some password 123' }),
        await raw(cloud.url, '/v1/accounts/password-reset', { email }),
      ]);
    }
    expect(answers[0]!.map((r) => r.status)).toEqual([202, 202, 429, 429]);
    expect(answers[1]).toEqual(answers[0]);
  });

  it('code checks per IP', async () => {
    nextWindows();
    for (let i = 0; i < 6; i++) {
      await expectError('CODE_INVALID', cloud.url, 'POST', '/v1/accounts/verify', { body: { email: freshEmail(), code: '12345678' } });
    }
    await expectError('RATE_LIMITED', cloud.url, 'POST', '/v1/accounts/password-reset/confirm', {
      body: { email: freshEmail(), code: '12345678', newPassword: 'a new password 1' },
    });
  });

  it('claims per serial and per IP', async () => {
    const owner = await registerAndLogin(cloud.url);
    nextWindows();
    const serial = randomSerial('LIM');
    for (let i = 0; i < 2; i++) {
      await expectError('BIND_CODE_INVALID', cloud.url, 'POST', '/v1/device/claim', { body: { serial, model: 'M', bindCode: 'AAAAAAAAAA' } });
    }
    const code = await createBindCode(cloud.url, owner.token);
    // a valid code does not get past the limit; it stays usable
    const limited = await expectError('RATE_LIMITED', cloud.url, 'POST', '/v1/device/claim', { body: { serial, model: 'M', bindCode: code } });
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // per IP: three more serials fill the IP's 5
    for (let i = 0; i < 2; i++) {
      await expectError('BIND_CODE_INVALID', cloud.url, 'POST', '/v1/device/claim', { body: { serial: randomSerial('LIM'), model: 'M', bindCode: 'AAAAAAAAAA' } });
    }
    await expectError('RATE_LIMITED', cloud.url, 'POST', '/v1/device/claim', { body: { serial: randomSerial('LIM'), model: 'M', bindCode: 'AAAAAAAAAA' } });

    clock.advance(60_000);
    const claimed = await call(cloud.url, 'POST', '/v1/device/claim', { body: { serial, model: 'M', bindCode: code } });
    expect(claimed.status).toBe(200);
  });

  it('counters hold no email or IP, and old ones do not pile up', async () => {
    const a = await registerAndLogin(cloud.url);
    await call(cloud.url, 'POST', '/v1/accounts/password-reset', { body: { email: 'nobody-here@example.com' } });
    const db = new Database(join(cloud.config.dataDir, 'camvault.db'), { readonly: true });
    try {
      const keys = (db.prepare('SELECT key FROM rate_limits').all() as { key: string }[]).map((r) => r.key);
      expect(keys.length).toBeGreaterThan(3);
      for (const key of keys) {
        expect(key).toMatch(/^[a-z-]+:[0-9a-f]{40}$/);
        for (const secret of [a.email, 'nobody-here@example.com', '127.0.0.1', '@']) expect(key).not.toContain(secret);
      }
      const codes = JSON.stringify(db.prepare('SELECT * FROM email_codes').all());
      expect(codes).not.toContain('@');

      // one login after every window has ended: only its own two counters are left
      nextWindows();
      await call(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password } });
      const left = db.prepare('SELECT key FROM rate_limits').all() as { key: string }[];
      expect(left.map((r) => r.key.split(':')[0]).sort()).toEqual(['login-account', 'login-ip']);
      // mailed codes too: a new one clears every expired one
      const codeRows = (): string[] => (db.prepare('SELECT email_hash FROM email_codes').all() as { email_hash: string }[]).map((r) => r.email_hash);
      const stale = codeRows();
      expect(stale.length).toBeGreaterThan(0); // the unknown address's reset code, expired by now
      await call(cloud.url, 'POST', '/v1/accounts/password-reset', { body: { email: a.email } });
      const now = codeRows();
      expect(now).toHaveLength(1);
      expect(stale).not.toContain(now[0]);
    } finally {
      db.close();
    }
  });
});

describe('the client address behind a proxy', () => {
  /** logins per IP: max 2 a minute; each login from a fresh email, so only the IP limit can stop it */
  const limits = { loginPerIp: { max: 2, windowSec: 60 }, loginPerAccount: { max: 100, windowSec: 60 } };
  const login = (base: string, forwardedFor: string) =>
    fetch(`${base}/v1/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor },
      body: JSON.stringify({ email: freshEmail(), password: 'wrong password' }),
    }).then((r) => r.status);

  it('without trustProxy, X-Forwarded-For is ignored: a client cannot dodge the per-IP limit by sending one', async () => {
    const cloud = await startTestCloud({ rateLimits: limits });
    try {
      expect([await login(cloud.url, '10.0.0.1'), await login(cloud.url, '10.0.0.2'), await login(cloud.url, '10.0.0.3')]).toEqual([401, 401, 429]);
    } finally {
      await cloud.close();
    }
  });

  it('with trustProxy naming the proxy, each forwarded client has its own limit', async () => {
    const cloud = await startTestCloud({ rateLimits: limits, trustProxy: ['127.0.0.1'] });
    try {
      expect([await login(cloud.url, '10.0.0.1'), await login(cloud.url, '10.0.0.1'), await login(cloud.url, '10.0.0.1')]).toEqual([401, 401, 429]);
      // another client behind the same proxy is not held back by the first
      expect(await login(cloud.url, '10.0.0.2')).toBe(401);
    } finally {
      await cloud.close();
    }
  });
});
