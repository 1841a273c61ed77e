import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../shared/clock.js';
import { call, expectError } from '../helpers/api-checks.js';
import {
  claimDevice,
  randomSerial,
  registerAndLogin,
  setPlan,
  startTestCloud,
  type ClaimedDevice,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';
import { presignBody, uploadClip } from '../helpers/upload.js';

const DAY = 24 * 3600_000;
const HOUR = 3600_000;
const GRACE_DAYS = 10;

describe('plans: choose, change, lapse; clip expiry follows the plan', () => {
  let cloud: TestCloud;
  const T0 = Date.parse('2026-04-01T12:00:00Z');
  const clock = new ManualClock(T0);
  let owner: TestAccount;
  let device: ClaimedDevice;
  /** clip ids: A stamped 2 days before receipt, B stamped 2 minutes ahead, C uploaded 3 days later */
  const ids: Record<'A' | 'B' | 'C', string> = { A: '', B: '', C: '' };

  beforeAll(async () => {
    cloud = await startTestCloud({ clock, planGraceDays: GRACE_DAYS });
    owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'premium');
    device = await claimDevice(cloud.url, owner.token, randomSerial('PLAN'));
  });
  afterAll(async () => {
    await cloud?.close();
  });

  async function upload(startMs: number): Promise<string> {
    const up = await uploadClip(cloud.url, device, { body: randomBytes(1000), startMs });
    expect(up.complete?.status, JSON.stringify(up.presign.body)).toBe(200);
    return up.clipId;
  }

  /** expiry of every clip the account can still see, by name */
  async function expiries(): Promise<Partial<Record<'A' | 'B' | 'C', number>>> {
    const list = await call(cloud.url, 'GET', '/v1/clips', { token: owner.token });
    expect(list.status).toBe(200);
    const out: Partial<Record<'A' | 'B' | 'C', number>> = {};
    for (const c of list.body.clips as { id: string; expiresAt: string }[]) {
      const name = (Object.keys(ids) as ('A' | 'B' | 'C')[]).find((k) => ids[k] === c.id);
      if (name) out[name] = Date.parse(c.expiresAt);
    }
    return out;
  }

  it('a clip expires its retention after the earlier of its start and its receipt', async () => {
    ids.A = await upload(T0 - 2 * DAY);
    ids.B = await upload(T0 + 2 * 60_000);
    expect(await expiries()).toEqual({ A: T0 - 2 * DAY + 60 * DAY, B: T0 + 60 * DAY });
  });

  it('a downgrade shortens the expiry of unexpired clips, an upgrade lengthens it again', async () => {
    clock.set(T0 + 3 * DAY);
    ids.C = await upload(T0 + 3 * DAY - HOUR);
    const down = await call(cloud.url, 'PUT', '/v1/account/plan', { token: owner.token, body: { plan: 'basic' } });
    expect(down.body).toMatchObject({ plan: 'basic', planLapsedAt: null });
    expect(await expiries()).toEqual({ A: T0 + 5 * DAY, B: T0 + 7 * DAY, C: T0 + 10 * DAY - HOUR });

    await setPlan(cloud.url, owner.token, 'standard');
    expect(await expiries()).toEqual({ A: T0 + 28 * DAY, B: T0 + 30 * DAY, C: T0 + 33 * DAY - HOUR });
  });

  it('a clip a downgrade expired is hidden at once and an upgrade does not bring it back', async () => {
    clock.set(T0 + 6 * DAY);
    await setPlan(cloud.url, owner.token, 'basic');
    // A (T0+5d) is past; B and C are not
    expect(await expiries()).toEqual({ B: T0 + 7 * DAY, C: T0 + 10 * DAY - HOUR });
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${ids.A}`, { token: owner.token });
    await setPlan(cloud.url, owner.token, 'premium');
    expect(await expiries()).toEqual({ B: T0 + 60 * DAY, C: T0 + 63 * DAY - HOUR });
  });

  it('a lapse stops presigning, keeps the lapse time, and caps expiry at the end of the grace period', async () => {
    const lapsed = await call(cloud.url, 'DELETE', '/v1/account/plan', { token: owner.token });
    expect(lapsed.status).toBe(200);
    expect(lapsed.body).toMatchObject({ plan: null, planLapsedAt: new Date(T0 + 6 * DAY).toISOString() });
    const graceEnd = T0 + 6 * DAY + GRACE_DAYS * DAY;
    expect(await expiries()).toEqual({ B: graceEnd, C: graceEnd });

    const presign = await expectError('PLAN_REQUIRED', cloud.url, 'POST', '/v1/device/uploads', {
      device,
      body: presignBody({ body: randomBytes(100), startMs: clock.now() }),
    });
    expect(presign.status).toBe(402);

    // lapsing again changes nothing: the first lapse time stays
    clock.advance(DAY);
    const again = await call(cloud.url, 'DELETE', '/v1/account/plan', { token: owner.token });
    expect(again.body.planLapsedAt).toBe(new Date(T0 + 6 * DAY).toISOString());
    expect((await call(cloud.url, 'GET', '/v1/account', { token: owner.token })).body).toMatchObject({
      plan: null,
      planLapsedAt: new Date(T0 + 6 * DAY).toISOString(),
    });
  });

  it('choosing a plan within the grace period recomputes expiry and presigning works again', async () => {
    clock.set(T0 + 8 * DAY);
    const chosen = await call(cloud.url, 'PUT', '/v1/account/plan', { token: owner.token, body: { plan: 'standard' } });
    expect(chosen.body).toMatchObject({ plan: 'standard', planLapsedAt: null });
    expect(await expiries()).toEqual({ B: T0 + 30 * DAY, C: T0 + 33 * DAY - HOUR });
    ids.A = await upload(clock.now() - HOUR); // a new clip lands again
    expect((await expiries()).A).toBe(T0 + 8 * DAY - HOUR + 30 * DAY);
  });

  it('after the grace period retention runs out: every clip is hidden, and a new plan does not revive them', async () => {
    clock.set(T0 + 9 * DAY);
    await call(cloud.url, 'DELETE', '/v1/account/plan', { token: owner.token });
    const graceEnd = T0 + 9 * DAY + GRACE_DAYS * DAY;
    expect(await expiries()).toEqual({ A: graceEnd, B: graceEnd, C: graceEnd });
    clock.set(graceEnd - 1);
    expect(Object.keys(await expiries()).sort()).toEqual(['A', 'B', 'C']);
    clock.set(graceEnd);
    expect(await expiries()).toEqual({});
    await setPlan(cloud.url, owner.token, 'premium');
    expect(await expiries()).toEqual({});
  });

  it('an account that never had a plan can "lapse" without effect', async () => {
    const other = await registerAndLogin(cloud.url);
    const res = await call(cloud.url, 'DELETE', '/v1/account/plan', { token: other.token });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ plan: null, planLapsedAt: null });
  });
});
