import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../shared/clock.js';
import { call, expectError } from '../helpers/api-checks.js';
import {
  claimDevice,
  randomSerial,
  registerAndLogin,
  setPlan,
  shareDevice,
  startTestCloud,
  type ClaimedDevice,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';
import { uploadClip, type ClipToUpload } from '../helpers/upload.js';

const MIN = 60_000;
const ids = (res: { body: { clips: { id: string }[] } }): string[] => res.body.clips.map((c) => c.id);

describe('sharing a camera', () => {
  let cloud: TestCloud;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    cloud = await startTestCloud({ clock });
  });
  afterAll(async () => {
    await cloud?.close();
  });

  async function upload(device: ClaimedDevice, clip: ClipToUpload): Promise<string> {
    const r = await uploadClip(cloud.url, device, clip);
    expect(r.complete?.status, JSON.stringify(r.complete?.body ?? r.presign.body)).toBe(200);
    return r.clipId;
  }

  async function owner(): Promise<TestAccount> {
    const a = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, a.token, 'standard');
    return a;
  }

  /** an account that owns a camera with `n` clips, a minute apart, newest last */
  async function ownerWithClips(n: number): Promise<{ a: TestAccount; cam: ClaimedDevice; clips: string[] }> {
    const a = await owner();
    const cam = await claimDevice(cloud.url, a.token, randomSerial('SHR'));
    const t0 = clock.now() - (n + 1) * MIN;
    const clips: string[] = [];
    for (let i = 0; i < n; i++) clips.push(await upload(cam, { body: randomBytes(64), startMs: t0 + i * MIN }));
    return { a, cam, clips };
  }

  const get = (path: string, who: TestAccount) => call(cloud.url, 'GET', path, { token: who.token });
  const status = async (method: string, path: string, who: TestAccount, body?: unknown) =>
    (await call(cloud.url, method, path, { token: who.token, body })).status;

  it('the owner shares by account id; the viewer sees the camera and can list, get, view and download its clips', async () => {
    const { a, cam, clips } = await ownerWithClips(3);
    const viewer = await registerAndLogin(cloud.url);

    const granted = await call(cloud.url, 'POST', `/v1/devices/${cam.serial}/shares`, {
      token: a.token,
      body: { accountId: viewer.accountId, role: 'viewer' },
    });
    expect(granted.status).toBe(201);
    expect(granted.body).toEqual({
      share: { serial: cam.serial, accountId: viewer.accountId, role: 'viewer', createdAt: new Date(clock.now()).toISOString() },
    });
    expect((await get(`/v1/devices/${cam.serial}/shares`, a)).body.shares).toEqual([granted.body.share]);

    const devices = await get('/v1/devices', viewer);
    expect(devices.body.devices).toEqual([{ serial: cam.serial, model: 'SIM-1', boundAt: expect.any(String), role: 'viewer' }]);
    // the owner's own list says "owner", and the grantee is no device of the owner's
    expect((await get('/v1/devices', a)).body.devices.map((d: { role: string }) => d.role)).toEqual(['owner']);

    expect(ids(await get(`/v1/clips?serial=${cam.serial}`, viewer))).toEqual([...clips].reverse());
    // without ?serial= the list is the viewer's own clips only
    expect(ids(await get('/v1/clips', viewer))).toEqual([]);

    const clip = await get(`/v1/clips/${clips[0]}`, viewer);
    expect(clip.body).toEqual((await get(`/v1/clips/${clips[0]}`, a)).body);
    const view = await get(`/v1/clips/${clips[0]}/view`, viewer);
    const viewed = await fetch(view.body.url);
    expect(viewed.status).toBe(200);
    expect(Buffer.from(await viewed.arrayBuffer()).length).toBe(64);
    const dl = await fetch(`${cloud.url}/v1/clips/${clips[0]}/download`, {
      headers: { authorization: `Bearer ${viewer.token}` },
      redirect: 'manual',
    });
    expect(dl.status).toBe(302);
    const file = await fetch(dl.headers.get('location') as string);
    expect(file.headers.get('content-disposition')).toMatch(/^attachment/);
    expect(Buffer.from(await file.arrayBuffer()).length).toBe(64);
  });

  it('a viewer cannot delete: one, by ids or by range, the clips stay', async () => {
    const { a, cam, clips } = await ownerWithClips(2);
    const viewer = await registerAndLogin(cloud.url);
    await shareDevice(cloud.url, a.token, cam.serial, viewer.accountId, 'viewer');

    await expectError('CLIP_NOT_FOUND', cloud.url, 'DELETE', `/v1/clips/${clips[0]}`, { token: viewer.token });
    const byIds = await call(cloud.url, 'POST', '/v1/clips/delete', { token: viewer.token, body: { ids: clips } });
    expect(byIds.body).toEqual({ deleted: 0 });
    const byRange = await call(cloud.url, 'POST', '/v1/clips/delete', {
      token: viewer.token,
      body: { serial: cam.serial, from: new Date(0).toISOString(), to: new Date(clock.now() + MIN).toISOString() },
    });
    expect(byRange.body).toEqual({ deleted: 0 });
    expect(ids(await get(`/v1/clips?serial=${cam.serial}`, a))).toEqual([...clips].reverse());
  });

  it('a manager deletes one clip, a list of clips, and a time range of the shared camera, and nothing else of the owner\'s', async () => {
    const { a, cam, clips } = await ownerWithClips(6);
    const otherCam = await claimDevice(cloud.url, a.token, randomSerial('OTH'));
    const unshared = await upload(otherCam, { body: randomBytes(64), startMs: clock.now() - 3 * MIN });
    const manager = await registerAndLogin(cloud.url);
    await shareDevice(cloud.url, a.token, cam.serial, manager.accountId, 'manager');
    expect((await get('/v1/devices', manager)).body.devices.map((d: { role: string }) => d.role)).toEqual(['manager']);

    expect(await status('DELETE', `/v1/clips/${clips[0]}`, manager)).toBe(204);
    expect(await cloud.store.getClip(clips[0] as string)).toBeNull();

    // the unshared camera's clip is skipped, as if it did not exist
    const byIds = await call(cloud.url, 'POST', '/v1/clips/delete', { token: manager.token, body: { ids: [clips[1], unshared] } });
    expect(byIds.body).toEqual({ deleted: 1 });
    await expectError('CLIP_NOT_FOUND', cloud.url, 'DELETE', `/v1/clips/${unshared}`, { token: manager.token });

    // clips[2..5] start at t0 + 2..5 min: the range takes 3 and 4
    const c3 = (await cloud.store.getClip(clips[3] as string))!;
    const byRange = await call(cloud.url, 'POST', '/v1/clips/delete', {
      token: manager.token,
      body: { serial: cam.serial, from: new Date(c3.startMs).toISOString(), to: new Date(c3.startMs + 2 * MIN).toISOString() },
    });
    expect(byRange.body).toEqual({ deleted: 2 });
    expect(ids(await get(`/v1/clips?serial=${cam.serial}`, a))).toEqual([clips[5], clips[2]]);
    expect(ids(await get(`/v1/clips?serial=${otherCam.serial}`, a))).toEqual([unshared]);
  });

  it('granting again changes the role; a revoked share stops working on the next request', async () => {
    const { a, cam, clips } = await ownerWithClips(2);
    const g = await registerAndLogin(cloud.url);
    await shareDevice(cloud.url, a.token, cam.serial, g.accountId, 'viewer');
    await expectError('CLIP_NOT_FOUND', cloud.url, 'DELETE', `/v1/clips/${clips[0]}`, { token: g.token });

    const promoted = await call(cloud.url, 'POST', `/v1/devices/${cam.serial}/shares`, {
      token: a.token,
      body: { accountId: g.accountId, role: 'manager' },
    });
    expect(promoted.status).toBe(200);
    expect(promoted.body.share.role).toBe('manager');
    expect((await get(`/v1/devices/${cam.serial}/shares`, a)).body.shares).toHaveLength(1);
    expect(await status('DELETE', `/v1/clips/${clips[0]}`, g)).toBe(204);

    expect(await status('GET', `/v1/clips/${clips[1]}`, g)).toBe(200);
    expect(await status('DELETE', `/v1/devices/${cam.serial}/shares/${g.accountId}`, a)).toBe(204);
    for (const [method, path] of [
      ['GET', `/v1/clips/${clips[1]}`],
      ['GET', `/v1/clips/${clips[1]}/view`],
      ['GET', `/v1/clips/${clips[1]}/download`],
      ['DELETE', `/v1/clips/${clips[1]}`],
    ] as const) {
      await expectError('CLIP_NOT_FOUND', cloud.url, method, path, { token: g.token });
    }
    expect(ids(await get(`/v1/clips?serial=${cam.serial}`, g))).toEqual([]);
    expect((await get('/v1/devices', g)).body.devices).toEqual([]);
    expect((await get(`/v1/devices/${cam.serial}/shares`, a)).body.shares).toEqual([]);
    await expectError('SHARE_NOT_FOUND', cloud.url, 'DELETE', `/v1/devices/${cam.serial}/shares/${g.accountId}`, { token: a.token });
    expect(await status('GET', `/v1/clips/${clips[1]}`, a)).toBe(200);
  });

  it('a grantee can give up its own share, and only its own', async () => {
    const { a, cam } = await ownerWithClips(0);
    const [g1, g2] = [await registerAndLogin(cloud.url), await registerAndLogin(cloud.url)];
    await shareDevice(cloud.url, a.token, cam.serial, g1.accountId, 'manager');
    await shareDevice(cloud.url, a.token, cam.serial, g2.accountId, 'viewer');
    await expectError('DEVICE_NOT_FOUND', cloud.url, 'DELETE', `/v1/devices/${cam.serial}/shares/${g2.accountId}`, { token: g1.token });
    expect(await status('DELETE', `/v1/devices/${cam.serial}/shares/${g1.accountId}`, g1)).toBe(204);
    // having left, it is a stranger to the camera
    await expectError('DEVICE_NOT_FOUND', cloud.url, 'DELETE', `/v1/devices/${cam.serial}/shares/${g1.accountId}`, { token: g1.token });
    expect((await get('/v1/devices', g1)).body.devices).toEqual([]);
    expect((await get(`/v1/devices/${cam.serial}/shares`, a)).body.shares.map((s: { accountId: string }) => s.accountId)).toEqual([
      g2.accountId,
    ]);
  });

  it('only the owner shares, lists shares and revokes; refusals name nothing', async () => {
    const { a, cam } = await ownerWithClips(0);
    const [viewer, manager, stranger] = [
      await registerAndLogin(cloud.url),
      await registerAndLogin(cloud.url),
      await registerAndLogin(cloud.url),
    ];
    await shareDevice(cloud.url, a.token, cam.serial, viewer.accountId, 'viewer');
    await shareDevice(cloud.url, a.token, cam.serial, manager.accountId, 'manager');
    const before = (await get(`/v1/devices/${cam.serial}/shares`, a)).body;

    for (const who of [viewer, manager, stranger]) {
      await expectError('DEVICE_NOT_FOUND', cloud.url, 'POST', `/v1/devices/${cam.serial}/shares`, {
        token: who.token,
        body: { accountId: stranger.accountId === who.accountId ? viewer.accountId : stranger.accountId, role: 'manager' },
      });
      await expectError('DEVICE_NOT_FOUND', cloud.url, 'GET', `/v1/devices/${cam.serial}/shares`, { token: who.token });
      await expectError('DEVICE_NOT_FOUND', cloud.url, 'DELETE', `/v1/devices/${cam.serial}/shares/${viewer.accountId === who.accountId ? manager.accountId : viewer.accountId}`, { token: who.token });
      await expectError('DEVICE_NOT_FOUND', cloud.url, 'DELETE', `/v1/devices/${cam.serial}`, { token: who.token });
    }
    // the same answers as for a camera that does not exist
    const missing = randomSerial('NONE');
    const never = await call(cloud.url, 'GET', `/v1/devices/${missing}/shares`, { token: stranger.token });
    const refused = await call(cloud.url, 'GET', `/v1/devices/${cam.serial}/shares`, { token: stranger.token });
    expect(refused.body).toEqual(never.body);
    expect((await get(`/v1/devices/${cam.serial}/shares`, a)).body).toEqual(before);

    await expectError('SHARE_WITH_OWNER', cloud.url, 'POST', `/v1/devices/${cam.serial}/shares`, {
      token: a.token,
      body: { accountId: a.accountId, role: 'viewer' },
    });
    await expectError('GRANTEE_NOT_FOUND', cloud.url, 'POST', `/v1/devices/${cam.serial}/shares`, {
      token: a.token,
      body: { accountId: '01ARZ3NDEKTSV4RRFFQ69G5FAV', role: 'viewer' },
    });
    // no grant by email (it would tell whether the address has an account), no other role
    for (const body of [
      { email: stranger.email, role: 'viewer' },
      { accountId: stranger.accountId, role: 'owner' },
      { accountId: stranger.accountId },
    ]) {
      const res = await expectError('VALIDATION_FAILED', cloud.url, 'POST', `/v1/devices/${cam.serial}/shares`, { token: a.token, body });
      expect(JSON.stringify(res.body)).not.toContain(stranger.email);
    }
    expect((await get(`/v1/devices/${cam.serial}/shares`, a)).body).toEqual(before);
  });

  it('a shared camera pages the same for the grantee as for the owner', async () => {
    const { a, cam, clips } = await ownerWithClips(5);
    const viewer = await registerAndLogin(cloud.url);
    await shareDevice(cloud.url, a.token, cam.serial, viewer.accountId, 'viewer');
    const pages = async (who: TestAccount): Promise<string[][]> => {
      const out: string[][] = [];
      let cursor: string | null = null;
      do {
        const res: Awaited<ReturnType<typeof get>> = await get(
          `/v1/clips?serial=${cam.serial}&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
          who,
        );
        out.push(ids(res));
        cursor = res.body.nextCursor;
      } while (cursor);
      return out;
    };
    const mine = await pages(a);
    expect(mine.flat()).toEqual([...clips].reverse());
    expect(mine.map((p) => p.length)).toEqual([2, 2, 1]);
    expect(await pages(viewer)).toEqual(mine);
  });

  it('unbinding ends every share; the grantees never see what the next owner of the camera records', async () => {
    const { a, cam, clips } = await ownerWithClips(2);
    const [viewer, manager] = [await registerAndLogin(cloud.url), await registerAndLogin(cloud.url)];
    await shareDevice(cloud.url, a.token, cam.serial, viewer.accountId, 'viewer');
    await shareDevice(cloud.url, a.token, cam.serial, manager.accountId, 'manager');

    expect(await status('DELETE', `/v1/devices/${cam.serial}`, a)).toBe(204);
    for (const g of [viewer, manager]) {
      expect((await get('/v1/devices', g)).body.devices).toEqual([]);
      expect(ids(await get(`/v1/clips?serial=${cam.serial}`, g))).toEqual([]);
      await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${clips[0]}`, { token: g.token });
    }
    // the clips stay with the account that recorded them
    expect(ids(await get(`/v1/clips?serial=${cam.serial}`, a))).toEqual([...clips].reverse());

    // another account binds the same camera and records
    const next = await owner();
    const again = await claimDevice(cloud.url, next.token, cam.serial);
    const fresh = await upload(again, { body: randomBytes(64), startMs: clock.now() - MIN });
    for (const g of [viewer, manager]) {
      expect((await get('/v1/devices', g)).body.devices).toEqual([]);
      expect(ids(await get(`/v1/clips?serial=${cam.serial}`, g))).toEqual([]);
      await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${fresh}`, { token: g.token });
      await expectError('CLIP_NOT_FOUND', cloud.url, 'DELETE', `/v1/clips/${fresh}`, { token: g.token });
    }
    // each owner sees its own footage of the camera, and only that
    expect(ids(await get(`/v1/clips?serial=${cam.serial}`, next))).toEqual([fresh]);
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${clips[0]}`, { token: next.token });
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${fresh}`, { token: a.token });
    expect(await status('GET', `/v1/clips/${fresh}`, next)).toBe(200);
  });

  it('a share covers the sharing owner\'s clips of the camera, not an earlier owner\'s', async () => {
    const earlier = await ownerWithClips(1);
    expect(await status('DELETE', `/v1/devices/${earlier.cam.serial}`, earlier.a)).toBe(204);
    const a = await owner();
    const cam = await claimDevice(cloud.url, a.token, earlier.cam.serial);
    const mine = await upload(cam, { body: randomBytes(64), startMs: clock.now() - MIN });
    const manager = await registerAndLogin(cloud.url);
    await shareDevice(cloud.url, a.token, cam.serial, manager.accountId, 'manager');

    expect(ids(await get(`/v1/clips?serial=${cam.serial}`, manager))).toEqual([mine]);
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${earlier.clips[0]}`, { token: manager.token });
    const wide = { serial: cam.serial, from: new Date(0).toISOString(), to: new Date(clock.now() + MIN).toISOString() };
    const byIds = await call(cloud.url, 'POST', '/v1/clips/delete', { token: manager.token, body: { ids: [earlier.clips[0]] } });
    expect(byIds.body).toEqual({ deleted: 0 });
    const byRange = await call(cloud.url, 'POST', '/v1/clips/delete', { token: manager.token, body: wide });
    expect(byRange.body).toEqual({ deleted: 1 });
    expect(await cloud.store.getClip(mine)).toBeNull();
    expect(await status('GET', `/v1/clips/${earlier.clips[0]}`, earlier.a)).toBe(200);
  });
});
