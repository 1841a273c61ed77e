import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBindCode } from '../../cloud/auth/tokens.js';
import { ManualClock } from '../../shared/clock.js';
import { call, expectError } from '../helpers/api-checks.js';
import {
  claimDevice,
  createBindCode,
  randomSerial,
  registerAndLogin,
  setPlan,
  startTestCloud,
  type TestCloud,
} from '../helpers/cloud.js';
import { presignBody } from '../helpers/upload.js';

describe('binding cameras to accounts', () => {
  let cloud: TestCloud;
  const clock = new ManualClock(Date.now());
  beforeAll(async () => {
    cloud = await startTestCloud({ clock });
  });
  afterAll(async () => {
    await cloud?.close();
  });

  const claim = (serial: string, bindCode: string, model = 'SIM-1') =>
    call(cloud.url, 'POST', '/v1/device/claim', { body: { serial, model, bindCode } });

  it('a camera claims with a bind code, gets its credentials, and shows in the owner\'s list', async () => {
    const owner = await registerAndLogin(cloud.url);
    const made = await call(cloud.url, 'POST', '/v1/devices/bind-codes', { token: owner.token });
    expect(made.status).toBe(201);
    expect(made.body.code).toMatch(/^[0-9A-HJKMNP-TV-Z]{10}$/);
    expect(Date.parse(made.body.expiresAt) - clock.now()).toBe(10 * 60_000);

    const serial = randomSerial();
    const res = await claim(serial, made.body.code, 'Cam Model 2');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      serial,
      deviceToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      mqtt: { username: serial, password: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), url: expect.stringMatching(/^mqtts?:\/\//) },
    });
    expect(res.body.mqtt.password).not.toBe(res.body.deviceToken);

    const list = await call(cloud.url, 'GET', '/v1/devices', { token: owner.token });
    expect(list.body.devices).toEqual([
      { serial, model: 'Cam Model 2', boundAt: new Date(clock.now()).toISOString(), role: 'owner' },
    ]);
  });

  it('a bind code carries at least 40 bits: 10 characters, each drawn uniformly from a 32-letter alphabet', async () => {
    const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    const LENGTH = 10;
    // the claim: log2(alphabet ^ length) >= 40
    expect(LENGTH * Math.log2(CROCKFORD.length)).toBeGreaterThanOrEqual(40);

    const owner = await registerAndLogin(cloud.url);
    const fromApi = [];
    for (let i = 0; i < 20; i++) fromApi.push(await createBindCode(cloud.url, owner.token));
    for (const code of fromApi) expect(code).toMatch(new RegExp(`^[${CROCKFORD}]{${LENGTH}}$`));
    expect(new Set(fromApi).size).toBe(fromApi.length);

    // The generator behind the route: every position takes every letter of the
    // alphabet. With 2000 draws, a letter missing at some position by chance has a
    // probability of about 32 * 10 * (31/32)^2000, i.e. below 1e-25; a position
    // that used fewer bits than it claims (a fixed or biased letter) fails here.
    const draws = Array.from({ length: 2000 }, () => newBindCode());
    for (let pos = 0; pos < LENGTH; pos++) {
      const seen = new Set(draws.map((c) => c[pos]));
      expect([...seen].sort().join(''), `position ${pos}`).toBe(CROCKFORD);
    }
    expect(new Set(draws).size).toBe(draws.length);
  });

  it('a bind code works once', async () => {
    const owner = await registerAndLogin(cloud.url);
    const code = await createBindCode(cloud.url, owner.token);
    expect((await claim(randomSerial(), code)).status).toBe(200);
    await expectError('BIND_CODE_INVALID', cloud.url, 'POST', '/v1/device/claim', {
      body: { serial: randomSerial(), model: 'M', bindCode: code },
    });
  });

  it('two cameras racing with one bind code: exactly one wins', async () => {
    const owner = await registerAndLogin(cloud.url);
    const code = await createBindCode(cloud.url, owner.token);
    const results = await Promise.all([randomSerial(), randomSerial(), randomSerial()].map((s) => claim(s, code)));
    expect(results.map((r) => r.status).sort()).toEqual([200, 400, 400]);
  });

  it('a bind code expires after 10 minutes', async () => {
    const owner = await registerAndLogin(cloud.url);
    const early = await createBindCode(cloud.url, owner.token);
    clock.advance(10 * 60_000 - 1);
    expect((await claim(randomSerial(), early)).status).toBe(200);

    const code = await createBindCode(cloud.url, owner.token);
    clock.advance(10 * 60_000);
    await expectError('BIND_CODE_INVALID', cloud.url, 'POST', '/v1/device/claim', {
      body: { serial: randomSerial(), model: 'M', bindCode: code },
    });
  });

  it('a camera bound to one account cannot be claimed by another, and that bind code stays usable', async () => {
    const owner = await registerAndLogin(cloud.url);
    const other = await registerAndLogin(cloud.url);
    const serial = randomSerial();
    await claimDevice(cloud.url, owner.token, serial);
    const code = await createBindCode(cloud.url, other.token);
    await expectError('DEVICE_BOUND_ELSEWHERE', cloud.url, 'POST', '/v1/device/claim', {
      body: { serial, model: 'M', bindCode: code },
    });
    // once the owner unbinds it, the same code works
    expect((await call(cloud.url, 'DELETE', `/v1/devices/${serial}`, { token: owner.token })).status).toBe(204);
    expect((await claim(serial, code)).status).toBe(200);
    expect((await call(cloud.url, 'GET', '/v1/devices', { token: other.token })).body.devices).toHaveLength(1);
    expect((await call(cloud.url, 'GET', '/v1/devices', { token: owner.token })).body.devices).toEqual([]);
  });

  it('rebinding to the same account issues a new token, and the old one stops working', async () => {
    const owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'basic');
    const serial = randomSerial();
    const first = await claimDevice(cloud.url, owner.token, serial);
    const second = await claimDevice(cloud.url, owner.token, serial);
    expect(second.token).not.toBe(first.token);
    const body = presignBody({ body: Buffer.from('x'), startMs: clock.now() });
    await expectError('DEVICE_UNAUTHENTICATED', cloud.url, 'POST', '/v1/device/uploads', { device: first, body });
    expect((await call(cloud.url, 'POST', '/v1/device/uploads', { device: second, body })).status).toBe(200);
    // a rebind is not a second camera: the basic plan's one camera is still enough
    expect((await call(cloud.url, 'GET', '/v1/devices', { token: owner.token })).body.devices).toHaveLength(1);
  });

  it('the plan\'s camera limit is enforced, and only once a plan is chosen', async () => {
    const owner = await registerAndLogin(cloud.url);
    // no plan: nothing to count against (uploads are refused until there is one)
    await claimDevice(cloud.url, owner.token, randomSerial());
    await claimDevice(cloud.url, owner.token, randomSerial());
    await setPlan(cloud.url, owner.token, 'basic');
    const code = await createBindCode(cloud.url, owner.token);
    await expectError('CAMERA_LIMIT_REACHED', cloud.url, 'POST', '/v1/device/claim', {
      body: { serial: randomSerial(), model: 'M', bindCode: code },
    });
    await setPlan(cloud.url, owner.token, 'standard');
    expect((await claim(randomSerial(), code)).status).toBe(200);
  });

  it('unbinding a camera frees its place under the plan\'s limit', async () => {
    const owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'basic');
    const first = await claimDevice(cloud.url, owner.token, randomSerial());
    const code = await createBindCode(cloud.url, owner.token);
    const second = randomSerial();
    await expectError('CAMERA_LIMIT_REACHED', cloud.url, 'POST', '/v1/device/claim', {
      body: { serial: second, model: 'M', bindCode: code },
    });
    expect((await call(cloud.url, 'DELETE', `/v1/devices/${first.serial}`, { token: owner.token })).status).toBe(204);
    expect((await claim(second, code)).status).toBe(200);
    const list = await call(cloud.url, 'GET', '/v1/devices', { token: owner.token });
    expect(list.body.devices.map((d: { serial: string }) => d.serial)).toEqual([second]);
  });

  it('an unbound camera\'s token stops working at once', async () => {
    const owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'basic');
    const device = await claimDevice(cloud.url, owner.token, randomSerial());
    const body = presignBody({ body: Buffer.from('x'), startMs: clock.now() });
    expect((await call(cloud.url, 'POST', '/v1/device/uploads', { device, body })).status).toBe(200);
    expect((await call(cloud.url, 'DELETE', `/v1/devices/${device.serial}`, { token: owner.token })).status).toBe(204);
    await expectError('DEVICE_UNAUTHENTICATED', cloud.url, 'POST', '/v1/device/uploads', { device, body });
    await expectError('DEVICE_UNAUTHENTICATED', cloud.url, 'POST', `/v1/device/uploads/${body.clipId}/complete`, { device });
  });

  it('another account cannot unbind my camera', async () => {
    const owner = await registerAndLogin(cloud.url);
    const other = await registerAndLogin(cloud.url);
    const device = await claimDevice(cloud.url, owner.token, randomSerial());
    await expectError('DEVICE_NOT_FOUND', cloud.url, 'DELETE', `/v1/devices/${device.serial}`, { token: other.token });
    expect((await call(cloud.url, 'GET', '/v1/devices', { token: owner.token })).body.devices).toHaveLength(1);
  });
});
