import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PLANS } from '../../cloud/config.js';
import { ManualClock } from '../../shared/clock.js';
import { hashFile } from '../../shared/hash.js';
import { newClipId } from '../../shared/ids.js';
import { call, expectError } from '../helpers/api-checks.js';
import { claimDevice, randomSerial, registerAndLogin, setPlan, startTestCloud, type ClaimedDevice, type TestCloud } from '../helpers/cloud.js';
import { presignBody, putPresigned, uploadClip } from '../helpers/upload.js';

const DAY = 24 * 3600_000;

/** PUT a file from disk, streamed, with the signed headers: what the agent does */
function putFile(url: string, headers: Record<string, string>, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    createReadStream(path).pipe(req);
  });
}

describe('uploading clips', () => {
  let cloud: TestCloud;
  let dir: string;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camvault-uploads-'));
    cloud = await startTestCloud({
      clock,
      plans: { ...DEFAULT_PLANS, tiny: { retentionDays: 1, cameras: 1, storageBytes: 10_000 } },
    });
  });
  afterAll(async () => {
    await cloud?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function cameraWithPlan(plan: string | null): Promise<ClaimedDevice> {
    const owner = await registerAndLogin(cloud.url);
    if (plan) await setPlan(cloud.url, owner.token, plan);
    return claimDevice(cloud.url, owner.token, randomSerial());
  }

  it('a clip recorded on disk reaches the cloud intact: presign, streamed PUT, complete, view', async () => {
    const owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'basic');
    const device = await claimDevice(cloud.url, owner.token, randomSerial());
    const file = join(dir, 'segment.mp4');
    await writeFile(file, randomBytes(300_000 + 13));
    const digest = await hashFile(file);
    const startMs = clock.now() - 60_000;
    const clipId = newClipId(startMs);

    const presign = await call(cloud.url, 'POST', '/v1/device/uploads', {
      device,
      body: { clipId, start: new Date(startMs).toISOString(), durationMs: 10_000, size: digest.size, md5: digest.md5, sha256: digest.sha256, kind: 'continuous' },
    });
    expect(presign.status).toBe(200);
    expect(presign.body).toMatchObject({ clipId, method: 'PUT' });
    expect(presign.body.headers).toEqual({ 'Content-Length': String(digest.size), 'Content-MD5': digest.md5, 'Content-Type': 'video/mp4' });
    const day = new Date(startMs).toISOString().slice(0, 10).replace(/-/g, '/');
    expect(new URL(presign.body.url).pathname).toBe(`/objects/accounts/${owner.accountId}/devices/${device.serial}/${day}/${clipId}.mp4`);
    expect(Date.parse(presign.body.expiresAt)).toBeGreaterThan(clock.now());

    expect(await putFile(presign.body.url, presign.body.headers, file)).toBe(200);
    const done = await call(cloud.url, 'POST', `/v1/device/uploads/${clipId}/complete`, { device });
    expect(done.status).toBe(200);
    expect(done.body.clip).toEqual({
      id: clipId,
      serial: device.serial,
      kind: 'continuous',
      start: new Date(startMs).toISOString(),
      durationMs: 10_000,
      size: digest.size,
      sha256: digest.sha256,
      uploadedAt: new Date(clock.now()).toISOString(),
      expiresAt: new Date(startMs + 7 * DAY).toISOString(),
    });

    const view = await call(cloud.url, 'GET', `/v1/clips/${clipId}/view`, { token: owner.token });
    const res = await fetch(view.body.url);
    expect(res.headers.get('content-type')).toBe('video/mp4');
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(digest.sha256);

    // completing again (the first answer was lost) gives the same clip
    const again = await call(cloud.url, 'POST', `/v1/device/uploads/${clipId}/complete`, { device });
    expect(again.status).toBe(200);
    expect(again.body.clip).toEqual(done.body.clip);
    // and presigning it again says it is already safe in the cloud
    await expectError('CLIP_ALREADY_UPLOADED', cloud.url, 'POST', '/v1/device/uploads', {
      device,
      body: presignBody({ body: await readFile(file), clipId, startMs }),
    });
  });

  it('without a plan nothing is presigned', async () => {
    const device = await cameraWithPlan(null);
    await expectError('PLAN_REQUIRED', cloud.url, 'POST', '/v1/device/uploads', {
      device,
      body: presignBody({ body: Buffer.from('x'), startMs: clock.now() }),
    });
  });

  it('a clip start more than 7 days back or 5 minutes ahead of the cloud clock is refused', async () => {
    const device = await cameraWithPlan('basic');
    const now = clock.now();
    for (const startMs of [now - 7 * DAY - 1000, now + 5 * 60_000 + 1000, Date.parse('2099-01-01T00:00:00Z'), 0]) {
      await expectError('CLIP_START_OUT_OF_RANGE', cloud.url, 'POST', '/v1/device/uploads', {
        device,
        body: presignBody({ body: Buffer.from('x'), startMs, clipId: newClipId(now) }),
      });
    }
    for (const startMs of [now - 7 * DAY + 60_000, now + 4 * 60_000]) {
      const res = await call(cloud.url, 'POST', '/v1/device/uploads', {
        device,
        body: presignBody({ body: Buffer.from('x'), startMs, clipId: newClipId(now) }),
      });
      expect(res.status).toBe(200);
    }
  });

  it('expiry counts from the earlier of the clip start and its arrival', async () => {
    const device = await cameraWithPlan('basic');
    const ahead = await uploadClip(cloud.url, device, { body: randomBytes(100), startMs: clock.now() + 4 * 60_000 });
    expect(ahead.complete?.status).toBe(200);
    expect(ahead.complete?.body.clip.expiresAt).toBe(new Date(clock.now() + 7 * DAY).toISOString());
    const old = clock.now() - 3 * DAY;
    const behind = await uploadClip(cloud.url, device, { body: randomBytes(100), startMs: old });
    expect(behind.complete?.body.clip.expiresAt).toBe(new Date(old + 7 * DAY).toISOString());
  });

  it('the plan\'s storage cap is checked at presign, pending uploads included', async () => {
    const device = await cameraWithPlan('tiny');
    const first = await uploadClip(cloud.url, device, { body: randomBytes(6000), startMs: clock.now() });
    expect(first.complete?.status).toBe(200);
    await expectError('STORAGE_CAP_REACHED', cloud.url, 'POST', '/v1/device/uploads', {
      device,
      body: presignBody({ body: randomBytes(5000), startMs: clock.now() }),
    });
    const pending = presignBody({ body: randomBytes(3000), startMs: clock.now() });
    expect((await call(cloud.url, 'POST', '/v1/device/uploads', { device, body: pending })).status).toBe(200);
    // presigning the same clip again replaces its pending upload rather than adding to it
    expect((await call(cloud.url, 'POST', '/v1/device/uploads', { device, body: pending })).status).toBe(200);
    await expectError('STORAGE_CAP_REACHED', cloud.url, 'POST', '/v1/device/uploads', {
      device,
      body: presignBody({ body: randomBytes(1500), startMs: clock.now() }),
    });
  });

  it('a clip larger than any plan allows is refused before any check', async () => {
    const device = await cameraWithPlan('basic');
    const body = { ...presignBody({ body: Buffer.from('x'), startMs: clock.now() }), size: 6 * 1024 ** 3 };
    await expectError('VALIDATION_FAILED', cloud.url, 'POST', '/v1/device/uploads', { device, body });
  });

  it('completing before the object arrived is refused, and works once it has', async () => {
    const device = await cameraWithPlan('basic');
    const body = randomBytes(500);
    const req = presignBody({ body, startMs: clock.now() });
    const presign = await call(cloud.url, 'POST', '/v1/device/uploads', { device, body: req });
    await expectError('UPLOAD_OBJECT_MISSING', cloud.url, 'POST', `/v1/device/uploads/${req.clipId}/complete`, { device });
    expect((await putPresigned(presign.body, body)).status).toBe(200);
    expect((await call(cloud.url, 'POST', `/v1/device/uploads/${req.clipId}/complete`, { device })).status).toBe(200);
  });

  it('an object that does not match its declaration is deleted and the clip refused', async () => {
    const device = await cameraWithPlan('basic');
    const declared = randomBytes(500);
    const req = presignBody({ body: declared, startMs: clock.now() });
    const presign = await call(cloud.url, 'POST', '/v1/device/uploads', { device, body: req });
    // a store that did not enforce the signed MD5 (s3rver does not) would let this in
    const key = decodeURIComponent(new URL(presign.body.url).pathname.replace(/^\/objects\//, ''));
    const other = randomBytes(400);
    const sneak = await cloud.objects.presignPut(key, {
      contentLength: other.length,
      contentMd5: createHash('md5').update(other).digest('base64'),
      expiresInSec: 60,
    });
    expect((await putPresigned(sneak, other)).status).toBe(200);
    await expectError('UPLOAD_MISMATCH', cloud.url, 'POST', `/v1/device/uploads/${req.clipId}/complete`, { device });
    expect(await cloud.objects.head(key)).toBeNull();
    // nothing was recorded, and the device may upload the right bytes again
    expect((await putPresigned(presign.body, declared)).status).toBe(200);
    expect((await call(cloud.url, 'POST', `/v1/device/uploads/${req.clipId}/complete`, { device })).status).toBe(200);
  });

  it('a device cannot complete or take over another device\'s upload', async () => {
    const a = await cameraWithPlan('basic');
    const b = await cameraWithPlan('basic');
    const body = randomBytes(200);
    const req = presignBody({ body, startMs: clock.now() });
    const presign = await call(cloud.url, 'POST', '/v1/device/uploads', { device: a, body: req });
    expect((await putPresigned(presign.body, body)).status).toBe(200);
    await expectError('UPLOAD_NOT_FOUND', cloud.url, 'POST', `/v1/device/uploads/${req.clipId}/complete`, { device: b });
    await expectError('CLIP_ALREADY_UPLOADED', cloud.url, 'POST', '/v1/device/uploads', { device: b, body: req });
    expect((await call(cloud.url, 'POST', `/v1/device/uploads/${req.clipId}/complete`, { device: a })).status).toBe(200);
    await expectError('UPLOAD_NOT_FOUND', cloud.url, 'POST', `/v1/device/uploads/${req.clipId}/complete`, { device: b });
    await expectError('UPLOAD_NOT_FOUND', cloud.url, 'POST', `/v1/device/uploads/${newClipId()}/complete`, { device: a });
  });
});
