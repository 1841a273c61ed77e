import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractCode } from '../../cloud/mail/index.js';
import { ManualClock } from '../../shared/clock.js';
import { call, expectError } from '../helpers/api-checks.js';
import { api, mailedCode, outboxFor, registerAndLogin, signUp, startTestCloud, type TestCloud } from '../helpers/cloud.js';

const PASSWORD = 'correct horse battery staple';
const freshEmail = (): string => `acct-${randomBytes(6).toString('hex')}@example.com`;

interface Raw {
  status: number;
  contentType: string | null;
  text: string;
}

/** The answer byte for byte: what an enumerating caller would compare. */
async function raw(base: string, method: string, path: string, body: unknown): Promise<Raw> {
  const res = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, contentType: res.headers.get('content-type'), text: await res.text() };
}

describe('accounts, sessions and plans', () => {
  let cloud: TestCloud;
  const clock = new ManualClock(Date.now());
  beforeAll(async () => {
    cloud = await startTestCloud({ clock });
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('registers, mails a code, refuses login until the code is entered, then logs in and out', async () => {
    const outbox = outboxFor(cloud.url);
    const since = outbox.cursor;
    const reg = await call(cloud.url, 'POST', '/v1/accounts', { body: { email: 'Alice@Example.com', password: PASSWORD } });
    expect(reg.status).toBe(202);
    expect(reg.body).toEqual({ status: 'verification_sent' });

    const mail = await outbox.waitFor('alice@example.com', since);
    expect(mail.to).toBe('alice@example.com');
    const code = extractCode(mail.text);
    expect(code).toMatch(/^\d{8}$/);

    // the right password of an unverified account: told to verify; a wrong one: the usual refusal
    await expectError('EMAIL_NOT_VERIFIED', cloud.url, 'POST', '/v1/sessions', { body: { email: 'alice@example.com', password: PASSWORD } });
    await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', { body: { email: 'alice@example.com', password: 'not the password' } });

    const wrong = code === '00000000' ? '00000001' : '00000000';
    await expectError('CODE_INVALID', cloud.url, 'POST', '/v1/accounts/verify', { body: { email: 'alice@example.com', code: wrong } });
    const ok = await call(cloud.url, 'POST', '/v1/accounts/verify', { body: { email: 'ALICE@example.com ', code } });
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ status: 'verified' });
    // single use
    await expectError('CODE_INVALID', cloud.url, 'POST', '/v1/accounts/verify', { body: { email: 'alice@example.com', code } });

    const login = await call(cloud.url, 'POST', '/v1/sessions', { body: { email: 'alice@example.com', password: PASSWORD } });
    expect(login.status).toBe(200);
    expect(login.body.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(login.body.accountId).toMatch(/^[0-9A-Z]{26}$/);
    expect(Date.parse(login.body.expiresAt)).toBeGreaterThan(clock.now());

    const me = await call(cloud.url, 'GET', '/v1/account', { token: login.body.token });
    expect(me.body).toEqual({
      accountId: login.body.accountId,
      email: 'alice@example.com',
      plan: null,
      planLapsedAt: null,
      createdAt: expect.any(String),
      // no clips yet: no oldest clip, no next expiry
      oldestClipAt: null,
      nextExpiryAt: null,
    });

    expect((await call(cloud.url, 'DELETE', '/v1/sessions/current', { token: login.body.token })).status).toBe(204);
    await expectError('UNAUTHENTICATED', cloud.url, 'GET', '/v1/account', { token: login.body.token });
  });

  it('registering a taken email answers byte for byte as a new one, mails the owner a notice, and changes nothing', async () => {
    const owner = await registerAndLogin(cloud.url);
    const outbox = outboxFor(cloud.url);
    const since = outbox.cursor;
    const taken = await raw(cloud.url, 'POST', '/v1/accounts', { email: owner.email.toUpperCase(), password: 'another password 123' });
    const fresh = await raw(cloud.url, 'POST', '/v1/accounts', { email: freshEmail(), password: 'another password 123' });
    expect(taken).toEqual(fresh);
    expect(taken.status).toBe(202);

    const notice = await outbox.waitFor(owner.email, since);
    expect(notice.subject).toMatch(/tried to sign up/);
    expect(extractCode(notice.text)).toBeNull();
    // the owner's password and sessions are untouched
    expect((await call(cloud.url, 'GET', '/v1/account', { token: owner.token })).status).toBe(200);
    await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', { body: { email: owner.email, password: 'another password 123' } });
    expect((await call(cloud.url, 'POST', '/v1/sessions', { body: { email: owner.email, password: owner.password } })).status).toBe(200);
  });

  it('a wrong password, an unknown email and an unverified account with a wrong password get the same bytes', async () => {
    const a = await registerAndLogin(cloud.url);
    const pendingEmail = freshEmail();
    expect((await api(cloud.url, 'POST', '/v1/accounts', { body: { email: pendingEmail, password: PASSWORD } })).status).toBe(202);
    const wrong = await raw(cloud.url, 'POST', '/v1/sessions', { email: a.email, password: 'not the password' });
    const unknown = await raw(cloud.url, 'POST', '/v1/sessions', { email: freshEmail(), password: 'not the password' });
    const pending = await raw(cloud.url, 'POST', '/v1/sessions', { email: pendingEmail, password: 'not the password' });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.text).error.code).toBe('INVALID_CREDENTIALS');
    expect(unknown).toEqual(wrong);
    expect(pending).toEqual(wrong);
  });

  it('a password reset answers byte for byte alike for a known and an unknown email, and mails only the known one', async () => {
    const a = await registerAndLogin(cloud.url);
    const stranger = freshEmail();
    const outbox = outboxFor(cloud.url);
    const since = outbox.cursor;
    const unknown = await raw(cloud.url, 'POST', '/v1/accounts/password-reset', { email: stranger });
    const known = await raw(cloud.url, 'POST', '/v1/accounts/password-reset', { email: a.email });
    expect(known).toEqual(unknown);
    expect(known.status).toBe(202);
    expect(JSON.parse(known.text)).toEqual({ status: 'reset_sent' });
    // mail goes out in request order: once the known address's is here, any to the stranger would be too
    const mail = await outbox.waitFor(a.email, since);
    expect(mail.subject).toMatch(/password reset/);
    expect(outbox.messages.filter((m) => m.seq >= since && m.to === stranger)).toEqual([]);

    // a guessed code: the same bytes for the unknown address and the known one
    const guess = (await mailedCode(cloud.url, a.email, since)) === '12345678' ? '87654321' : '12345678';
    const confirmUnknown = await raw(cloud.url, 'POST', '/v1/accounts/password-reset/confirm', { email: stranger, code: guess, newPassword: 'a brand new password' });
    const confirmKnown = await raw(cloud.url, 'POST', '/v1/accounts/password-reset/confirm', { email: a.email, code: guess, newPassword: 'a brand new password' });
    expect(confirmKnown).toEqual(confirmUnknown);
    expect(JSON.parse(confirmKnown.text).error.code).toBe('CODE_INVALID');
  });

  it('a password reset with the mailed code sets the new password and ends every session', async () => {
    const a = await registerAndLogin(cloud.url);
    const second = (await call(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password } })).body.token as string;
    const since = outboxFor(cloud.url).cursor;
    expect((await call(cloud.url, 'POST', '/v1/accounts/password-reset', { body: { email: a.email } })).status).toBe(202);
    const code = await mailedCode(cloud.url, a.email, since);
    // the sessions still work until the code is used
    expect((await call(cloud.url, 'GET', '/v1/account', { token: a.token })).status).toBe(200);

    const newPassword = 'a brand new password';
    const done = await call(cloud.url, 'POST', '/v1/accounts/password-reset/confirm', { body: { email: a.email, code, newPassword } });
    expect(done.status).toBe(200);
    expect(done.body).toEqual({ status: 'password_reset' });
    for (const token of [a.token, second]) await expectError('UNAUTHENTICATED', cloud.url, 'GET', '/v1/account', { token });
    await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password } });
    expect((await call(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: newPassword } })).status).toBe(200);
    // single use
    await expectError('CODE_INVALID', cloud.url, 'POST', '/v1/accounts/password-reset/confirm', {
      body: { email: a.email, code, newPassword: 'yet another password' },
    });
  });

  it('a password reset proves the address: an unverified account becomes verified', async () => {
    const email = freshEmail();
    expect((await api(cloud.url, 'POST', '/v1/accounts', { body: { email, password: PASSWORD } })).status).toBe(202);
    await expectError('EMAIL_NOT_VERIFIED', cloud.url, 'POST', '/v1/sessions', { body: { email, password: PASSWORD } });
    const since = outboxFor(cloud.url).cursor;
    await api(cloud.url, 'POST', '/v1/accounts/password-reset', { body: { email } });
    const code = await mailedCode(cloud.url, email, since);
    const newPassword = 'chosen after the reset';
    expect((await call(cloud.url, 'POST', '/v1/accounts/password-reset/confirm', { body: { email, code, newPassword } })).status).toBe(200);
    expect((await call(cloud.url, 'POST', '/v1/sessions', { body: { email, password: newPassword } })).status).toBe(200);
  });

  it('a password change needs the current password and ends every other session, not this one', async () => {
    const a = await registerAndLogin(cloud.url);
    const other = (await call(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password } })).body.token as string;
    const newPassword = 'the changed password';
    await expectError('CURRENT_PASSWORD_WRONG', cloud.url, 'PATCH', '/v1/account', {
      token: a.token,
      body: { currentPassword: 'not the password', newPassword },
    });
    // a refused change ends nothing
    expect((await call(cloud.url, 'GET', '/v1/account', { token: other })).status).toBe(200);
    await expectError('VALIDATION_FAILED', cloud.url, 'PATCH', '/v1/account', { token: a.token, body: { currentPassword: a.password, newPassword: 'short' } });

    const changed = await call(cloud.url, 'PATCH', '/v1/account', { token: a.token, body: { currentPassword: a.password, newPassword } });
    expect(changed.status).toBe(200);
    expect(changed.body.accountId).toBe(a.accountId);
    expect((await call(cloud.url, 'GET', '/v1/account', { token: a.token })).status).toBe(200);
    await expectError('UNAUTHENTICATED', cloud.url, 'GET', '/v1/account', { token: other });
    await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: a.password } });
    expect((await call(cloud.url, 'POST', '/v1/sessions', { body: { email: a.email, password: newPassword } })).status).toBe(200);
  });

  it('registering again before verifying mails a new code, kills the old one, and the newest password counts', async () => {
    const email = freshEmail();
    const outbox = outboxFor(cloud.url);
    let since = outbox.cursor;
    await api(cloud.url, 'POST', '/v1/accounts', { body: { email, password: 'the first password' } });
    const first = await mailedCode(cloud.url, email, since);
    since = outbox.cursor;
    await api(cloud.url, 'POST', '/v1/accounts', { body: { email, password: 'the second password' } });
    const second = await mailedCode(cloud.url, email, since);
    if (first !== second) {
      await expectError('CODE_INVALID', cloud.url, 'POST', '/v1/accounts/verify', { body: { email, code: first } });
    }
    expect((await call(cloud.url, 'POST', '/v1/accounts/verify', { body: { email, code: second } })).status).toBe(200);
    await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', { body: { email, password: 'the first password' } });
    expect((await call(cloud.url, 'POST', '/v1/sessions', { body: { email, password: 'the second password' } })).status).toBe(200);
  });

  it('a code dies after a few wrong tries, and when its time is up', async () => {
    const outbox = outboxFor(cloud.url);
    // wrong tries
    const email = freshEmail();
    let since = outbox.cursor;
    await api(cloud.url, 'POST', '/v1/accounts', { body: { email, password: PASSWORD } });
    const code = await mailedCode(cloud.url, email, since);
    const wrong = code === '99999999' ? '99999998' : '99999999';
    for (let i = 0; i < cloud.config.emailCodeMaxAttempts; i++) {
      await expectError('CODE_INVALID', cloud.url, 'POST', '/v1/accounts/verify', { body: { email, code: wrong } });
    }
    await expectError('CODE_INVALID', cloud.url, 'POST', '/v1/accounts/verify', { body: { email, code } });

    // expiry
    const late = freshEmail();
    since = outbox.cursor;
    await api(cloud.url, 'POST', '/v1/accounts', { body: { email: late, password: PASSWORD } });
    const lateCode = await mailedCode(cloud.url, late, since);
    clock.advance(cloud.config.emailCodeTtlMinutes * 60_000 + 1);
    await expectError('CODE_INVALID', cloud.url, 'POST', '/v1/accounts/verify', { body: { email: late, code: lateCode } });
    await expectError('EMAIL_NOT_VERIFIED', cloud.url, 'POST', '/v1/sessions', { body: { email: late, password: PASSWORD } });
  });

  it('codes and emails are validated', async () => {
    for (const code of ['1234567', '123456789', 'abcdefgh', 12345678]) {
      await expectError('VALIDATION_FAILED', cloud.url, 'POST', '/v1/accounts/verify', { body: { email: 'a@example.com', code } });
    }
    await expectError('VALIDATION_FAILED', cloud.url, 'POST', '/v1/accounts/password-reset', { body: { email: 'not-an-email' } });
    await expectError('VALIDATION_FAILED', cloud.url, 'POST', '/v1/accounts/password-reset/confirm', {
      body: { email: 'a@example.com', code: '12345678', newPassword: 'short' },
    });
  });

  it('subscriber routes answer 401 without a valid session token', async () => {
    const routes: [string, string][] = [
      ['GET', '/v1/account'],
      ['PATCH', '/v1/account'],
      ['DELETE', '/v1/sessions/current'],
      ['PUT', '/v1/account/plan'],
      ['DELETE', '/v1/account/plan'],
      ['POST', '/v1/devices/bind-codes'],
      ['GET', '/v1/devices'],
      ['DELETE', '/v1/devices/CAM00000001'],
      ['GET', '/v1/clips'],
      ['GET', '/v1/clips/01ARZ3NDEKTSV4RRFFQ69G5FAV'],
      ['GET', '/v1/clips/01ARZ3NDEKTSV4RRFFQ69G5FAV/view'],
      ['GET', '/v1/clips/01ARZ3NDEKTSV4RRFFQ69G5FAV/download'],
      ['DELETE', '/v1/clips/01ARZ3NDEKTSV4RRFFQ69G5FAV'],
      ['POST', '/v1/clips/delete'],
    ];
    const headers: (Record<string, string> | undefined)[] = [
      undefined,
      { authorization: 'Bearer' },
      { authorization: 'Bearer not-a-token' },
      { authorization: `Bearer ${'A'.repeat(43)}` },
      { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
    ];
    for (const [method, path] of routes) {
      for (const h of headers) {
        await expectError('UNAUTHENTICATED', cloud.url, method, path, { headers: h, body: method === 'GET' ? undefined : {} });
      }
    }
  });

  it('a session stops working when its time is up', async () => {
    const a = await registerAndLogin(cloud.url);
    expect((await call(cloud.url, 'GET', '/v1/account', { token: a.token })).status).toBe(200);
    clock.advance(cloud.config.sessionTtlHours * 3600_000 + 1000);
    await expectError('UNAUTHENTICATED', cloud.url, 'GET', '/v1/account', { token: a.token });
  });

  it('plans are listed, and the account can choose one but not an unknown one', async () => {
    const plans = await call(cloud.url, 'GET', '/v1/plans');
    expect(plans.body.plans).toEqual([
      { name: 'basic', retentionDays: 7, cameras: 1, storageBytes: 30e9 },
      { name: 'standard', retentionDays: 30, cameras: 5, storageBytes: 200e9 },
      { name: 'premium', retentionDays: 60, cameras: 10, storageBytes: 800e9 },
    ]);
    const email = freshEmail();
    await signUp(cloud.url, email, PASSWORD);
    const token = (await call(cloud.url, 'POST', '/v1/sessions', { body: { email, password: PASSWORD } })).body.token as string;
    const set = await call(cloud.url, 'PUT', '/v1/account/plan', { token, body: { plan: 'standard' } });
    expect(set.status).toBe(200);
    expect(set.body.plan).toBe('standard');
    expect((await call(cloud.url, 'GET', '/v1/account', { token })).body.plan).toBe('standard');
    await expectError('PLAN_NOT_FOUND', cloud.url, 'PUT', '/v1/account/plan', { token, body: { plan: 'gold' } });
    await expectError('PLAN_NOT_FOUND', cloud.url, 'PUT', '/v1/account/plan', { token, body: { plan: 'constructor' } });
  });
});
