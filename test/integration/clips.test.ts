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
import { uploadClip, type ClipToUpload } from '../helpers/upload.js';

const MIN = 60_000;
const DAY = 24 * 3600_000;

describe('the subscriber\'s clips', () => {
  let cloud: TestCloud;
  const clock = new ManualClock(Date.now());
  let owner: TestAccount;
  let stranger: TestAccount;
  let camA: ClaimedDevice;
  let camB: ClaimedDevice;

  async function upload(device: ClaimedDevice, clip: ClipToUpload): Promise<string> {
    const r = await uploadClip(cloud.url, device, clip);
    expect(r.complete?.status, JSON.stringify(r.complete?.body ?? r.presign.body)).toBe(200);
    return r.clipId;
  }

  beforeAll(async () => {
    cloud = await startTestCloud({ clock });
    [owner, stranger] = await Promise.all([registerAndLogin(cloud.url), registerAndLogin(cloud.url)]);
    await setPlan(cloud.url, owner.token, 'standard');
    await setPlan(cloud.url, stranger.token, 'standard');
    camA = await claimDevice(cloud.url, owner.token, randomSerial('CAMA'));
    camB = await claimDevice(cloud.url, owner.token, randomSerial('CAMB'));
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('lists clips newest first, a page at a time, with filters', async () => {
    const t0 = clock.now() - 60 * MIN;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await upload(camA, { body: randomBytes(100), startMs: t0 + i * MIN, kind: i % 2 ? 'event' : 'continuous' }));
    }
    const other = await upload(camB, { body: randomBytes(100), startMs: t0 + 30 * MIN });

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `/v1/clips?serial=${camA.serial}&limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await call(cloud.url, 'GET', q, { token: owner.token });
      expect(page.status).toBe(200);
      expect(page.body.clips.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.clips.map((c: { id: string }) => c.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());

    const all = await call(cloud.url, 'GET', '/v1/clips', { token: owner.token });
    expect(all.body.clips.map((c: { id: string }) => c.id)).toEqual([other, ...[...ids].reverse()]);

    const range = `from=${new Date(t0 + MIN).toISOString()}&to=${new Date(t0 + 3 * MIN).toISOString()}`;
    const ranged = await call(cloud.url, 'GET', `/v1/clips?serial=${camA.serial}&${range}`, { token: owner.token });
    expect(ranged.body.clips.map((c: { id: string }) => c.id)).toEqual([ids[2], ids[1]]);

    const events = await call(cloud.url, 'GET', `/v1/clips?serial=${camA.serial}&kind=event`, { token: owner.token });
    expect(events.body.clips.map((c: { id: string }) => c.id)).toEqual([ids[3], ids[1]]);
  });

  it('pages stay stable while new clips arrive, and clips that start together keep one order', async () => {
    const cam = await claimDevice(cloud.url, owner.token, randomSerial('PAGE'));
    const t = clock.now() - 10 * MIN;
    const together: string[] = [];
    for (let i = 0; i < 3; i++) together.push(await upload(cam, { body: randomBytes(10), startMs: t }));
    const older = await upload(cam, { body: randomBytes(10), startMs: t - MIN });

    const list = (q: string) => call(cloud.url, 'GET', `/v1/clips?serial=${cam.serial}&limit=2${q}`, { token: owner.token });
    const first = await list('');
    // a newer clip lands between two page requests: the next page goes on where the first stopped
    const newer = await upload(cam, { body: randomBytes(10), startMs: t + MIN });
    const seen = first.body.clips.map((c: { id: string }) => c.id);
    let cursor: string | null = first.body.nextCursor;
    while (cursor) {
      const page = await list(`&cursor=${cursor}`);
      seen.push(...page.body.clips.map((c: { id: string }) => c.id));
      cursor = page.body.nextCursor;
    }
    // same start: the larger id first, as the cursor orders them
    expect(seen).toEqual([...[...together].sort().reverse(), older]);
    const fresh = await list('');
    expect(fresh.body.clips.map((c: { id: string }) => c.id)[0]).toBe(newer);

    for (const bad of ['&cursor=not-a-cursor', `&cursor=${Buffer.from('[1,"x"]').toString('base64url')}`, '&limit=501', '&limit=0']) {
      await expectError('VALIDATION_FAILED', cloud.url, 'GET', `/v1/clips?serial=${cam.serial}${bad}`, { token: owner.token });
    }
  });

  it('another account cannot list, get, view, download or delete the clips: they do not exist for it', async () => {
    const id = await upload(camA, { body: randomBytes(100), startMs: clock.now() });
    expect((await call(cloud.url, 'GET', '/v1/clips', { token: stranger.token })).body.clips).toEqual([]);
    expect((await call(cloud.url, 'GET', `/v1/clips?serial=${camA.serial}`, { token: stranger.token })).body.clips).toEqual([]);
    for (const [method, path] of [
      ['GET', `/v1/clips/${id}`],
      ['GET', `/v1/clips/${id}/view`],
      ['GET', `/v1/clips/${id}/view?download=true`],
      ['GET', `/v1/clips/${id}/download`],
      ['DELETE', `/v1/clips/${id}`],
    ]) {
      const res = await expectError('CLIP_NOT_FOUND', cloud.url, method as string, path as string, { token: stranger.token });
      // word for word the answer for a clip that never existed
      const never = await call(cloud.url, method as string, (path as string).replace(id, '01ARZ3NDEKTSV4RRFFQ69G5FAV'), { token: stranger.token });
      expect(res.body).toEqual(never.body);
    }
    const bulk = await call(cloud.url, 'POST', '/v1/clips/delete', { token: stranger.token, body: { ids: [id] } });
    expect(bulk.body).toEqual({ deleted: 0 });
    const byRange = await call(cloud.url, 'POST', '/v1/clips/delete', {
      token: stranger.token,
      body: { serial: camA.serial, from: new Date(0).toISOString(), to: new Date(clock.now() + DAY).toISOString() },
    });
    expect(byRange.body).toEqual({ deleted: 0 });
    expect((await call(cloud.url, 'GET', `/v1/clips/${id}`, { token: owner.token })).status).toBe(200);
  });

  it('a view URL is short-lived and signed; a download names the file', async () => {
    const startMs = Date.parse('2026-03-04T05:06:07.000Z');
    clock.set(startMs + MIN);
    const body = randomBytes(1000);
    const id = await upload(camA, { body, startMs });
    const view = await call(cloud.url, 'GET', `/v1/clips/${id}/view`, { token: owner.token });
    expect(Date.parse(view.body.expiresAt) - clock.now()).toBeLessThanOrEqual(cloud.config.viewUrlTtlSec * 1000);
    const res = await fetch(view.body.url);
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
    expect(res.headers.get('content-disposition')).toBeNull();

    const dl = await call(cloud.url, 'GET', `/v1/clips/${id}/view?download=true`, { token: owner.token });
    const res2 = await fetch(dl.body.url);
    expect(res2.headers.get('content-disposition')).toBe(`attachment; filename="${camA.serial}-20260304T050607Z.mp4"`);
    await res2.arrayBuffer();

    const redirect = await fetch(`${cloud.url}/v1/clips/${id}/download`, {
      headers: { authorization: `Bearer ${owner.token}` },
      redirect: 'manual',
    });
    expect(redirect.status).toBe(302);
    const followed = await fetch(redirect.headers.get('location') as string);
    expect(followed.headers.get('content-disposition')).toMatch(/^attachment/);
    expect(Buffer.from(await followed.arrayBuffer()).equals(body)).toBe(true);

    clock.advance((cloud.config.viewUrlTtlSec + 2) * 1000);
    const late = await fetch(view.body.url);
    expect(late.status).toBe(403);
    expect((await late.json()).error.code).toBe('URL_EXPIRED');
  });

  it('deleting a clip removes its object and its row; its old view URL stops working', async () => {
    const id = await upload(camA, { body: randomBytes(100), startMs: clock.now() });
    const view = await call(cloud.url, 'GET', `/v1/clips/${id}/view`, { token: owner.token });
    const key = decodeURIComponent(new URL(view.body.url).pathname.replace(/^\/objects\//, ''));
    expect((await call(cloud.url, 'DELETE', `/v1/clips/${id}`, { token: owner.token })).status).toBe(204);
    expect(await cloud.objects.head(key)).toBeNull();
    expect(await cloud.store.getClip(id)).toBeNull();
    const res = await fetch(view.body.url);
    expect(res.status).toBe(404);
    await res.arrayBuffer();
    await expectError('CLIP_NOT_FOUND', cloud.url, 'DELETE', `/v1/clips/${id}`, { token: owner.token });
  });

  it('clips are deleted in bulk by id, or by camera and time range', async () => {
    const t0 = clock.now() - 30 * MIN;
    const a = [];
    for (let i = 0; i < 4; i++) a.push(await upload(camB, { body: randomBytes(50), startMs: t0 + i * MIN }));
    const strangerCam = await claimDevice(cloud.url, stranger.token, randomSerial());
    const theirs = await upload(strangerCam, { body: randomBytes(50), startMs: t0 });

    const byId = await call(cloud.url, 'POST', '/v1/clips/delete', { token: owner.token, body: { ids: [a[0], a[0], theirs] } });
    expect(byId.body).toEqual({ deleted: 1 });
    expect((await call(cloud.url, 'GET', `/v1/clips/${theirs}`, { token: stranger.token })).status).toBe(200);

    const byRange = await call(cloud.url, 'POST', '/v1/clips/delete', {
      token: owner.token,
      body: { serial: camB.serial, from: new Date(t0 + MIN).toISOString(), to: new Date(t0 + 3 * MIN).toISOString() },
    });
    expect(byRange.body).toEqual({ deleted: 2 });
    const window = `from=${new Date(t0).toISOString()}&to=${new Date(t0 + 10 * MIN).toISOString()}`;
    const left = await call(cloud.url, 'GET', `/v1/clips?serial=${camB.serial}&${window}`, { token: owner.token });
    expect(left.body.clips.map((c: { id: string }) => c.id)).toEqual([a[3]]);
  });

  it('a clip past its retention is hidden at once', async () => {
    const id = await upload(camA, { body: randomBytes(100), startMs: clock.now() });
    expect((await call(cloud.url, 'GET', `/v1/clips/${id}`, { token: owner.token })).status).toBe(200);
    clock.advance(30 * DAY); // the standard plan keeps clips 30 days
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${id}`, { token: owner.token });
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${id}/view`, { token: owner.token });
    const list = await call(cloud.url, 'GET', '/v1/clips?limit=500', { token: owner.token });
    expect(list.body.clips.map((c: { id: string }) => c.id)).not.toContain(id);
  });
});
