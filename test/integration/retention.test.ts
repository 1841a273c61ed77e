/**
 * Retention on a real cloud with an injected clock (issue 6, acceptance
 * "Retention"): a clip past its retention vanishes from the API at once,
 * before any job has run, and from the object store and the database within
 * one pass of the retention job. A plan downgrade from 30 to 7 days makes
 * whatever is now older than 7 days go the same way. A key the store refuses
 * stays with its row and goes on a later pass.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCloudJobs, RETENTION_JOB, type JobScheduler } from '../../cloud/jobs/index.js';
import { ManualClock } from '../../shared/clock.js';
import { createLogger } from '../../shared/log.js';
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
import { availableDrivers } from '../helpers/s3-env.js';
import { uploadClip } from '../helpers/upload.js';

const DAY = 24 * 3600_000;
const MIN = 60_000;

describe.each(availableDrivers)('retention (%s objects): expired clips vanish from the API at once and from storage within one job pass', (driver) => {
  const T0 = Date.parse('2026-05-01T08:00:00Z');
  const clock = new ManualClock(T0);
  let cloud: TestCloud;
  let jobs: JobScheduler;

  beforeAll(async () => {
    cloud = await startTestCloud({ clock, objects: driver });
    // the pass by hand, on the cloud's own store, object store and clock
    jobs = createCloudJobs({
      settings: cloud.config.jobs,
      store: cloud.store,
      objects: cloud.objects,
      clock,
      logger: createLogger({ level: 'silent' }),
    });
  });
  afterAll(async () => {
    await jobs?.close();
    await cloud?.close();
  });

  async function subscriber(plan: string): Promise<{ owner: TestAccount; device: ClaimedDevice }> {
    const owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, plan);
    const device = await claimDevice(cloud.url, owner.token, randomSerial('RET'));
    return { owner, device };
  }

  async function upload(device: ClaimedDevice, startMs: number): Promise<string> {
    const up = await uploadClip(cloud.url, device, { body: randomBytes(700), startMs });
    expect(up.complete?.status, JSON.stringify(up.complete?.body ?? up.presign.body)).toBe(200);
    return up.clipId;
  }

  async function listed(token: string): Promise<string[]> {
    const res = await call(cloud.url, 'GET', '/v1/clips', { token });
    expect(res.status).toBe(200);
    return (res.body.clips as { id: string }[]).map((c) => c.id);
  }

  /** the clip's row and object are both still kept */
  async function kept(id: string): Promise<boolean> {
    const row = await cloud.store.getClip(id);
    const object = row ? await cloud.objects.head(row.key) : null;
    expect(object !== null, `clip ${id}: its row and its object go together`).toBe(row !== null);
    return row !== null;
  }

  it('a clip past its retention answers 404 everywhere at once, its row and object still there; one pass deletes both and keeps a receipt', async () => {
    clock.set(T0);
    const { owner, device } = await subscriber('standard');
    const id = await upload(device, T0 - 5 * MIN);
    const row = await cloud.store.getClip(id);
    expect(row).not.toBeNull();
    const expiresAt = row!.expiresAt;
    expect(expiresAt).toBe(T0 - 5 * MIN + 30 * DAY);

    clock.set(expiresAt - 1);
    expect(await listed(owner.token)).toEqual([id]);
    expect((await call(cloud.url, 'GET', `/v1/clips/${id}/view`, { token: owner.token })).status).toBe(200);
    const account = await call(cloud.url, 'GET', '/v1/account', { token: owner.token });
    expect(account.body).toMatchObject({
      oldestClipAt: new Date(T0 - 5 * MIN).toISOString(),
      nextExpiryAt: new Date(expiresAt).toISOString(),
    });

    clock.set(expiresAt);
    expect(await listed(owner.token)).toEqual([]);
    for (const path of [`/v1/clips/${id}`, `/v1/clips/${id}/view`, `/v1/clips/${id}/download`]) {
      await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', path, { token: owner.token });
    }
    await expectError('CLIP_NOT_FOUND', cloud.url, 'DELETE', `/v1/clips/${id}`, { token: owner.token });
    const bulk = await call(cloud.url, 'POST', '/v1/clips/delete', { token: owner.token, body: { ids: [id] } });
    expect(bulk.body).toEqual({ deleted: 0 });
    expect((await call(cloud.url, 'GET', `/v1/clips?serial=${device.serial}`, { token: owner.token })).body.clips).toEqual([]);
    const after = await call(cloud.url, 'GET', '/v1/account', { token: owner.token });
    expect(after.body).toMatchObject({ oldestClipAt: null, nextExpiryAt: null });
    // hidden, not yet deleted: the job has not run
    expect(await kept(id)).toBe(true);

    const receipt = await jobs.run(RETENTION_JOB);
    expect(receipt).toMatchObject({ job: 'retention', startedAt: expiresAt, ok: true });
    expect(receipt.counts.clipsDeleted).toBeGreaterThanOrEqual(1);
    expect(receipt.counts.objectsDeleted).toBe(receipt.counts.clipsDeleted);
    expect(await kept(id)).toBe(false);
    expect((await cloud.store.listJobRuns('retention', 1))[0]).toEqual(receipt);
    // the receipt holds counts and times, nothing about whose clips they were
    const text = JSON.stringify(receipt);
    for (const secret of [owner.accountId, owner.email, device.serial, id]) expect(text).not.toContain(secret);
  });

  it('after a downgrade from 30 to 7 days, what is now older than 7 days is gone from the API at once and from storage after one pass', async () => {
    const T = T0 + 60 * DAY;
    clock.set(T);
    const { owner, device } = await subscriber('standard');
    const other = await subscriber('standard');
    const ages = [20, 10, 5, 1];
    const ids: string[] = [];
    // each clip is uploaded on the day it was recorded (the cloud takes starts up to 7 days back)
    for (const age of ages) {
      clock.set(T + (20 - age) * DAY);
      ids.push(await upload(device, clock.now() - MIN));
    }
    const theirs = await upload(other.device, clock.now() - 6 * DAY);
    clock.set(T + 20 * DAY);
    expect((await listed(owner.token)).sort()).toEqual([...ids].sort());

    await setPlan(cloud.url, owner.token, 'basic');
    const [old20, old10, young5, young1] = ids as [string, string, string, string];
    expect((await listed(owner.token)).sort()).toEqual([young5, young1].sort());
    const account = await call(cloud.url, 'GET', '/v1/account', { token: owner.token });
    expect(account.body).toMatchObject({
      plan: 'basic',
      oldestClipAt: new Date(T + 15 * DAY - MIN).toISOString(),
      nextExpiryAt: new Date(T + 15 * DAY - MIN + 7 * DAY).toISOString(),
    });
    for (const id of ids) expect(await kept(id)).toBe(true);

    await jobs.run(RETENTION_JOB);
    expect(await kept(old20)).toBe(false);
    expect(await kept(old10)).toBe(false);
    expect(await kept(young5)).toBe(true);
    expect(await kept(young1)).toBe(true);
    // another account's 7-day-old clip on a 30-day plan is none of this downgrade's business
    expect(await kept(theirs)).toBe(true);
    expect(await listed(other.owner.token)).toEqual([theirs]);

    // two days later the 5-day-old clip has reached 7 days too
    clock.set(T + 22 * DAY);
    await jobs.run(RETENTION_JOB);
    expect(await kept(young5)).toBe(false);
    expect(await kept(young1)).toBe(true);
    expect(await listed(owner.token)).toEqual([young1]);
  });

  // the refusal is made on the local store's disk; on S3 DeleteObjects reports per-key errors the same way (s3.ts)
  it.skipIf(driver !== 'local')('a key the object store refuses to delete keeps its row, is counted and logged, and goes on the next pass', async () => {
    const T = T0 + 200 * DAY;
    clock.set(T);
    const { owner, device } = await subscriber('basic');
    const stuck = await upload(device, T - MIN);
    const fine = await upload(device, T - 2 * MIN);
    const stuckRow = (await cloud.store.getClip(stuck))!;
    // a real refusal: where the object's file was, a folder with something in it
    const path = join(cloud.config.dataDir, 'objects', ...stuckRow.key.split('/'));
    await rm(path);
    await mkdir(path);
    await writeFile(join(path, 'x'), 'x');

    clock.set(T + 8 * DAY);
    const lines: string[] = [];
    const logged = createCloudJobs({
      settings: cloud.config.jobs,
      store: cloud.store,
      objects: cloud.objects,
      clock,
      logger: createLogger({ level: 'error' }, { write: (line: string) => lines.push(line) }),
    });
    try {
      const first = await logged.run(RETENTION_JOB);
      expect(first.ok).toBe(true);
      expect(first.counts.keysFailed).toBe(1);
      expect(await cloud.store.getClip(stuck)).not.toBeNull();
      expect(await cloud.store.getClip(fine)).toBeNull();
      expect(lines.join('')).toContain(stuckRow.key);
      // still hidden from the API while it waits
      expect(await listed(owner.token)).toEqual([]);
      // the same pass time again does not retry it: the next pass (a minute on) does
      const again = await logged.run(RETENTION_JOB);
      expect(again.counts.keysFailed ?? 0).toBe(0);
      expect(await cloud.store.getClip(stuck)).not.toBeNull();

      await rm(path, { recursive: true });
      clock.advance(MIN);
      const next = await logged.run(RETENTION_JOB);
      expect(next.counts).toMatchObject({ clipsDeleted: 1, objectsDeleted: 1 });
      expect(await cloud.store.getClip(stuck)).toBeNull();
    } finally {
      await logged.close();
    }
  });
});
