import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../shared/clock.js';
import { call, expectError } from '../helpers/api-checks.js';
import { registerAndLogin, startTestCloud, type TestCloud } from '../helpers/cloud.js';

describe('accounts, sessions and plans', () => {
  let cloud: TestCloud;
  const clock = new ManualClock(Date.now());
  beforeAll(async () => {
    cloud = await startTestCloud({ clock });
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('a new account logs in, reads itself, and after logout its token no longer works', async () => {
    const email = 'Alice@Example.com';
    const password = 'correct horse battery staple';
    const reg = await call(cloud.url, 'POST', '/v1/accounts', { body: { email, password } });
    expect(reg.status).toBe(201);
    expect(reg.body.accountId).toMatch(/^[0-9A-Z]{26}$/);

    const login = await call(cloud.url, 'POST', '/v1/sessions', { body: { email: 'alice@example.com', password } });
    expect(login.status).toBe(200);
    expect(login.body.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(login.body.accountId).toBe(reg.body.accountId);
    expect(Date.parse(login.body.expiresAt)).toBeGreaterThan(clock.now());

    const me = await call(cloud.url, 'GET', '/v1/account', { token: login.body.token });
    expect(me.body).toEqual({
      accountId: reg.body.accountId,
      email: 'alice@example.com',
      plan: null,
      createdAt: expect.any(String),
    });

    expect((await call(cloud.url, 'DELETE', '/v1/sessions/current', { token: login.body.token })).status).toBe(204);
    await expectError('UNAUTHENTICATED', cloud.url, 'GET', '/v1/account', { token: login.body.token });
  });

  it('a second account with the same email, in any case, is refused', async () => {
    const body = { email: 'bob@example.com', password: 'correct horse battery staple' };
    expect((await call(cloud.url, 'POST', '/v1/accounts', { body })).status).toBe(201);
    await expectError('EMAIL_TAKEN', cloud.url, 'POST', '/v1/accounts', { body: { ...body, email: ' BOB@example.com' } });
  });

  it('a wrong password and an unknown email get the same answer', async () => {
    const a = await registerAndLogin(cloud.url);
    const wrong = await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', {
      body: { email: a.email, password: 'not the password' },
    });
    const unknown = await expectError('INVALID_CREDENTIALS', cloud.url, 'POST', '/v1/sessions', {
      body: { email: 'nobody@example.com', password: 'not the password' },
    });
    expect(unknown.body).toEqual(wrong.body);
  });

  it('subscriber routes answer 401 without a valid session token', async () => {
    const routes: [string, string][] = [
      ['GET', '/v1/account'],
      ['DELETE', '/v1/sessions/current'],
      ['PUT', '/v1/account/plan'],
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
    const a = await registerAndLogin(cloud.url);
    const set = await call(cloud.url, 'PUT', '/v1/account/plan', { token: a.token, body: { plan: 'standard' } });
    expect(set.status).toBe(200);
    expect(set.body.plan).toBe('standard');
    expect((await call(cloud.url, 'GET', '/v1/account', { token: a.token })).body.plan).toBe('standard');
    await expectError('PLAN_NOT_FOUND', cloud.url, 'PUT', '/v1/account/plan', { token: a.token, body: { plan: 'gold' } });
    await expectError('PLAN_NOT_FOUND', cloud.url, 'PUT', '/v1/account/plan', { token: a.token, body: { plan: 'constructor' } });
  });
});
