/**
 * The orphan sweep on a real cloud (issue 6, "Orphan sweep"), on every object
 * store that runs here: what an upload left behind goes once it is older than
 * a day (objects no clip row or pending upload holds, pending uploads never
 * completed, multipart uploads never finished), and nothing a clip or a live
 * upload holds is touched, however old.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../cloud/auth/tokens.js';
import { createCloudJobs, runSweepPass, SWEEP_JOB, type JobScheduler, type SweepCounts } from '../../cloud/jobs/index.js';
import { ManualClock } from '../../shared/clock.js';
import { newClipId } from '../../shared/ids.js';
import { accountPrefix, clipObjectKey } from '../../shared/keys.js';
import { createLogger } from '../../shared/log.js';
import { call, expectError } from '../helpers/api-checks.js';
import {
  api,
  claimDevice,
  randomSerial,
  registerAndLogin,
  setPlan,
  startTestCloud,
  type ClaimedDevice,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';
import { availableDrivers } from '../helpers/s3-env.js';
import { presignBody, putPresigned, uploadClip } from '../helpers/upload.js';

const HOUR = 3600_000;
const MIN = 60_000;

describe.each(availableDrivers)('orphan sweep (%s objects)', (driver) => {
  // the object store stamps objects with real time: the cloud's clock starts there
  const clock = new ManualClock(Date.now());
  const T = clock.now();
  let cloud: TestCloud;
  let jobs: JobScheduler;
  let owner: TestAccount;
  let device: ClaimedDevice;
  const logger = createLogger({ level: 'silent' });

  beforeAll(async () => {
    cloud = await startTestCloud({ clock, objects: driver });
    jobs = createCloudJobs({ settings: cloud.config.jobs, store: cloud.store, objects: cloud.objects, clock, logger });
    owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'standard');
    device = await claimDevice(cloud.url, owner.token, randomSerial('SWP'));
  });
  afterAll(async () => {
    await jobs?.close();
    await cloud?.close();
  });

  /**
   * One sweep pass. On the local store, the registered job over every
   * account; on S3 the bucket is shared with other test runs, so only this
   * account's prefix (the same pass, narrowed).
   */
  async function sweep(): Promise<Partial<SweepCounts>> {
    if (driver === 'local') return (await jobs.run(SWEEP_JOB)).counts;
    const counts = await runSweepPass({
      store: cloud.store,
      objects: cloud.objects,
      clock,
      logger,
      maxAgeMs: cloud.config.jobs.orphanAgeHours * HOUR,
      prefix: accountPrefix(owner.accountId),
    });
    return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
  }

  /** presign and PUT, no complete: the object is stored, the upload row pending */
  async function putOnly(startMs = clock.now() - MIN): Promise<{ clipId: string; key: string; body: Buffer }> {
    const body = randomBytes(300);
    const req = presignBody({ body, startMs });
    const presign = await api(cloud.url, 'POST', '/v1/device/uploads', { device, body: req });
    expect(presign.status).toBe(200);
    const put = await putPresigned(presign.body, body);
    expect(put.status).toBe(200);
    const clipId = req.clipId as string;
    const row = await cloud.store.getUpload(clipId);
    return { clipId, key: row!.key, body };
  }

  async function stored(key: string): Promise<boolean> {
    return (await cloud.objects.head(key)) !== null;
  }

  async function openUploads(): Promise<string[]> {
    return (await cloud.objects.listMultipartUploads(accountPrefix(owner.accountId))).map((u) => u.uploadId);
  }

  it('deletes what uploads left behind once it is a day old, and nothing a clip or a live upload holds', async () => {
    // a clip: its object is held by its row for as long as retention keeps it
    const clip = await uploadClip(cloud.url, device, { body: randomBytes(400), startMs: T - MIN });
    expect(clip.complete?.status).toBe(200);
    const clipKey = (await cloud.store.getClip(clip.clipId))!.key;
    // an object whose upload row is gone: no row will ever point at it
    const lost = await putOnly();
    await cloud.store.deleteUpload(lost.clipId);
    // an upload never completed: its row goes after a day, then its object
    const stale = await putOnly();
    // an upload the device will come back to: presigned again after a day
    const resumed = await putOnly();
    // an object under the account whose key is not a clip's
    const junkKey = `${accountPrefix(owner.accountId)}devices/${device.serial}/notes.bin`;
    const junk = randomBytes(10);
    const junkPut = await cloud.objects.presignPut(junkKey, { contentLength: junk.length, contentMd5: createHash('md5').update(junk).digest('base64'), expiresInSec: 60 });
    expect((await putPresigned(junkPut, junk)).status).toBe(200);
    // multipart uploads: one nobody holds, one a pending upload still holds
    const abandonedKey = clipObjectKey(owner.accountId, device.serial, newClipId(T), T);
    const abandoned = await cloud.objects.createMultipartUpload(abandonedKey);
    const heldId = newClipId(T);
    const heldKey = clipObjectKey(owner.accountId, device.serial, heldId, T);
    const held = await cloud.objects.createMultipartUpload(heldKey);

    // young: nothing goes
    expect(await sweep()).toEqual({});
    for (const key of [clipKey, lost.key, stale.key, resumed.key, junkKey]) expect(await stored(key)).toBe(true);
    expect((await openUploads()).sort()).toEqual([abandoned, held].sort());
    const pendingBefore = await cloud.store.sumPendingUploadBytes(owner.accountId);

    // a day and an hour later; the device re-presigns one upload, and starts
    // over with the held multipart upload under a fresh row
    clock.advance(25 * HOUR);
    const again = await api(cloud.url, 'POST', '/v1/device/uploads', { device, body: presignBody({ body: resumed.body, startMs: T - MIN, clipId: resumed.clipId }) });
    expect(again.status).toBe(200);
    const partMd5 = createHash('md5').update(Buffer.alloc(1)).digest('base64');
    await cloud.store.upsertUpload({
      clipId: heldId,
      serial: device.serial,
      accountId: owner.accountId,
      key: heldKey,
      size: 1,
      md5: partMd5,
      sha256: '0'.repeat(64),
      startMs: T,
      durationMs: 1000,
      kind: 'event',
      createdAt: clock.now(),
      multipart: { uploadId: held, partBytes: 5 * 1024 * 1024, partMd5s: [partMd5] },
    });

    const counts = await sweep();
    expect(counts).toEqual({ uploadsExpired: 1, multipartAborted: 1, orphansDeleted: 3 });
    expect(await stored(lost.key)).toBe(false);
    expect(await stored(stale.key)).toBe(false);
    expect(await stored(junkKey)).toBe(false);
    expect(await cloud.store.getUpload(stale.clipId)).toBeNull();
    expect(await cloud.store.sumPendingUploadBytes(owner.accountId)).toBe(pendingBefore - stale.body.length + 1);
    expect(await openUploads()).toEqual([held]);
    // kept: the clip, the upload presigned again (its old object is what it will complete with)
    expect(await stored(clipKey)).toBe(true);
    expect(await stored(resumed.key)).toBe(true);
    expect((await call(cloud.url, 'GET', `/v1/clips/${clip.clipId}`, { token: owner.token })).status).toBe(200);
    const completed = await api(cloud.url, 'POST', `/v1/device/uploads/${resumed.clipId}/complete`, { device });
    expect(completed.status).toBe(200);
    // the stale upload's device hears it is gone, and presigns again
    await expectError('UPLOAD_NOT_FOUND', cloud.url, 'POST', `/v1/device/uploads/${stale.clipId}/complete`, { device });

    // a second pass finds nothing more
    expect(await sweep()).toEqual({});
    await cloud.objects.abortMultipartUpload(heldKey, held);
    await cloud.store.deleteUpload(heldId);
  });

  it('forgets sessions past their expiry, and no live one', async () => {
    const ttlMs = cloud.config.sessionTtlHours * HOUR;
    const old = await registerAndLogin(cloud.url);
    clock.advance(ttlMs / 2);
    const young = await registerAndLogin(cloud.url);
    clock.advance(ttlMs / 2 + MIN);
    // the first is past its expiry (already refused), the second is not
    await expectError('UNAUTHENTICATED', cloud.url, 'GET', '/v1/account', { token: old.token });
    const counts = await sweep();
    expect(counts.sessionsExpired).toBeGreaterThanOrEqual(1);
    expect(await cloud.store.getSession(sha256Hex(old.token), 0)).toBeNull();
    expect((await call(cloud.url, 'GET', '/v1/account', { token: young.token })).status).toBe(200);
    expect((await sweep()).sessionsExpired).toBeUndefined();
  });
});
