import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CloudClient } from '../../agent/cloud-client.js';
import { Journal, type ClipRow } from '../../agent/journal/journal.js';
import { StorageKeeper } from '../../agent/storage/keeper.js';
import type { RetryPolicy } from '../../agent/uploader/retry-policy.js';
import { Uploader, type ClipUploaded, type LastUploadError, type UploadFailed } from '../../agent/uploader/uploader.js';
import { hashFile } from '../../shared/hash.js';
import { newClipId } from '../../shared/ids.js';
import { createLogger } from '../../shared/log.js';
import { DeviceApiStub } from '../helpers/device-api-stub.js';
import { waitFor } from '../helpers/media.js';

/**
 * The uploader against a real HTTP server (the device-API stub checks the
 * signed size and MD5 of every PUT like the store does): refusals of altered
 * bytes, and clips withdrawn by the ring buffer mid-upload.
 */
const SERIAL = 'SIMREF000001';
let dir: string;
let stub: DeviceApiStub;
let journal: Journal;
let uploader: Uploader | undefined;
let logLines: { level: number; msg: string; code?: string; clipId?: string }[];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-refusals-'));
  stub = await DeviceApiStub.start();
  journal = Journal.open(dir);
  logLines = [];
});

afterEach(async () => {
  await uploader?.stop({ graceMs: 100 });
  uploader = undefined;
  journal.close();
  await stub.close().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

async function addClip(opts: { kind?: 'event' | 'continuous'; ageMs?: number; size?: number } = {}): Promise<ClipRow> {
  const startMs = Date.now() - (opts.ageMs ?? 60_000);
  const id = newClipId(startMs);
  const path = join(dir, `${id}.mp4`);
  writeFileSync(path, randomBytes(opts.size ?? 50_000));
  const digest = await hashFile(path);
  return journal.addClip({ id, channel: 'main', path, startMs, durationMs: 10_000, kind: opts.kind ?? 'continuous', ...digest });
}

/** What a bad sector or a stray write does: one byte changes, the size does not. */
function flipByte(path: string, at: number): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = (b[0] as number) ^ 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

function startUploader(opts: { policy?: Partial<RetryPolicy>; concurrency?: number } = {}) {
  const sleeps: number[] = [];
  const uploaded: ClipUploaded[] = [];
  const failed: UploadFailed[] = [];
  const logger = createLogger({ level: 'debug' }, { write: (s: string) => logLines.push(JSON.parse(s)) });
  const client = new CloudClient({ baseUrl: stub.url, timeoutMs: 2000 });
  client.setDeviceCredentials(SERIAL, stub.deviceToken);
  uploader = new Uploader({
    journal,
    api: client,
    serial: SERIAL,
    logger,
    concurrency: opts.concurrency ?? 1,
    policy: { minDelayMs: 1000, maxDelayMs: 30_000, jitter: 0, parkMs: 60_000, ...opts.policy },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  uploader.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
  uploader.on('upload-failed', (e: UploadFailed) => failed.push(e));
  uploader.start();
  return { uploader, sleeps, uploaded, failed };
}

const putsFor = (clipId: string) => stub.requests.filter((r) => r.step === 'put' && r.clipId === clipId).length;
const lastError = () => journal.stats().last_error?.info as LastUploadError | undefined;

describe('uploader refusals', () => {
  it('a clip altered on disk after it was hashed is refused by the store, marked failed as corrupt, reported, and never sent again', async () => {
    const bad = await addClip({ ageMs: 120_000 });
    const good = await addClip({ ageMs: 60_000 });
    flipByte(bad.path, 20_000);
    const { failed, uploaded, sleeps } = startUploader();
    await waitFor(() => uploaded.length === 1 && failed.length === 1, 10_000, 'the refusal and the next clip');
    expect(failed[0]).toEqual({ clipId: bad.id, code: 'CONTENT_MD5_MISMATCH', status: 400, next: 'failed', corrupt: true });
    expect(journal.getClip(bad.id)).toMatchObject({ state: 'failed', lastErrorCode: 'CONTENT_MD5_MISMATCH', attempts: 1 });
    expect(putsFor(bad.id)).toBe(1);
    expect(sleeps).toEqual([]);
    // the rest of the queue goes on
    expect(uploaded[0]?.clipId).toBe(good.id);
    // logged at error, with the code and the clip
    const line = logLines.find((l) => l.level === 50 && l.code === 'CONTENT_MD5_MISMATCH');
    expect(line?.clipId).toBe(bad.id);
    expect(line?.msg).toMatch(/changed on disk after it was hashed/);
    // durable for `agent status`
    expect(lastError()).toMatchObject({ code: 'CONTENT_MD5_MISMATCH', clipId: bad.id, status: 400 });
    expect(lastError()?.message).toMatch(/corrupt/);
    // a wake later: still one PUT
    uploader?.wake();
    await new Promise((r) => setTimeout(r, 200));
    expect(putsFor(bad.id)).toBe(1);
  });

  it('a body the store keeps refusing while the file is intact is sent again a bounded number of times, then given up', async () => {
    const clip = await addClip();
    stub.refuse.put = { status: 400, code: 'BadDigest' };
    const { failed, sleeps } = startUploader({ policy: { maxIntegrityRetries: 2 } });
    await waitFor(() => failed.some((f) => f.next === 'failed'), 10_000, 'the clip to be given up');
    expect(putsFor(clip.id)).toBe(3);
    expect(sleeps).toEqual([1000, 2000]);
    expect(failed.map((f) => f.next)).toEqual(['retry', 'retry', 'failed']);
    expect(failed.every((f) => !f.corrupt)).toBe(true);
    expect(journal.getClip(clip.id)).toMatchObject({ state: 'failed', lastErrorCode: 'BadDigest' });
    expect(lastError()?.message).toMatch(/file is intact/);
    expect(logLines.some((l) => l.level === 50 && l.code === 'BadDigest')).toBe(true);
  });

  it('a mismatch found at complete, with the file intact, is one more upload and then done', async () => {
    const clip = await addClip();
    stub.queue('complete', { status: 422, code: 'UPLOAD_MISMATCH' });
    const { uploaded, failed } = startUploader();
    await waitFor(() => uploaded.length === 1, 10_000, 'the upload');
    expect(failed.map((f) => [f.code, f.next])).toEqual([['UPLOAD_MISMATCH', 'retry']]);
    expect(putsFor(clip.id)).toBe(2);
    expect(journal.getClip(clip.id)?.state).toBe('uploaded');
  });

  it.each([
    [402, 'PLAN_REQUIRED'],
    [401, 'DEVICE_UNAUTHENTICATED'],
    [403, 'STORAGE_CAP_REACHED'],
  ])('a refusal about the device (%i %s) parks the queue: a few requests per park period, never a hot loop', async (status, code) => {
    for (let i = 0; i < 5; i += 1) await addClip();
    stub.refuse.presign = { status, code };
    const parkMs = 250;
    const { uploader: u, failed } = startUploader({ concurrency: 2, policy: { parkMs } });
    const t0 = Date.now();
    // wakes (new clips) while parked bring no requests
    const waker = setInterval(() => u.wake(), 10);
    await new Promise((r) => setTimeout(r, 1000));
    clearInterval(waker);
    const elapsed = Date.now() - t0;
    // at most `concurrency` clips try once per park period
    expect(stub.count('presign')).toBeLessThanOrEqual(2 * (1 + Math.floor(elapsed / parkMs)));
    expect(stub.count('presign')).toBeGreaterThanOrEqual(2);
    expect(failed.every((f) => f.code === code && f.next === 'parked')).toBe(true);
    expect(journal.countsByState()).toMatchObject({ queued: 5, failed: 0 });
    expect(lastError()).toMatchObject({ code, status });
  });

  it('writes the last error when its code changes, not on every failed attempt', async () => {
    await addClip();
    await stub.close();
    const written: (number | undefined)[] = [];
    const { failed, uploader: u } = startUploader({ policy: { maxRetries: 3, parkMs: 60_000 } });
    u.on('upload-failed', () => written.push(lastError()?.at));
    await waitFor(() => failed.some((f) => f.next === 'queued'), 10_000, 'the retries to run out');
    expect(failed.map((f) => f.code)).toEqual(['NETWORK_ERROR', 'NETWORK_ERROR', 'NETWORK_ERROR', 'NETWORK_ERROR']);
    // four failures, one write: the first
    expect(new Set(written).size).toBe(1);
    expect(lastError()).toMatchObject({ code: 'NETWORK_ERROR' });
    await u.stop();
    // stop writes the latest
    expect(lastError()?.at).toBeGreaterThanOrEqual(written[0] as number);
  });
});

describe('withdrawing clips for the ring buffer', () => {
  it('cuts the upload in flight at once, leaves the journal to the caller, and carries on with the queue', async () => {
    const doomed = await addClip({ ageMs: 120_000 });
    const next = await addClip({ ageMs: 60_000 });
    stub.queue('put', 'hang');
    const { uploader: u, uploaded, failed } = startUploader();
    await waitFor(() => stub.count('put') === 1, 5000, 'the PUT to start');
    expect(u.isUploading(doomed.id)).toBe(true);
    const t0 = Date.now();
    await u.withdraw([doomed.id, 'NOT-IN-FLIGHT']);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(u.isUploading(doomed.id)).toBe(false);
    // the uploader did not touch the row: the ring buffer records the clip's fate
    expect(journal.getClip(doomed.id)?.state).toBe('uploading');
    expect(failed).toEqual([]);
    journal.markEvicted([doomed.id]);
    await waitFor(() => uploaded.length === 1, 5000, 'the next clip');
    expect(uploaded[0]?.clipId).toBe(next.id);
    expect(journal.getClip(doomed.id)?.state).toBe('lost');
  });

  it('the ring buffer, short of room with nothing else to delete, cuts the upload in flight, deletes its file and counts it lost', async () => {
    const clip = await addClip({ size: 300_000 });
    stub.queue('put', 'hang');
    const { uploader: u, failed } = startUploader();
    await waitFor(() => stub.count('put') === 1, 5000, 'the PUT to start');
    const keeper = new StorageKeeper({
      journal,
      dir,
      storage: { maxBytes: 100_000, minFreeBytes: 0 },
      logger: createLogger({ level: 'silent' }),
      uploads: () => u,
      intervalMs: 3_600_000,
    });
    const r = await keeper.check();
    await keeper.stop();
    expect(r).toMatchObject({ evictedClips: 1, lostClips: 1, lostBytes: 300_000 });
    expect(u.isUploading(clip.id)).toBe(false);
    expect(existsSync(clip.path)).toBe(false);
    expect(journal.getClip(clip.id)).toMatchObject({ state: 'lost', lastErrorCode: 'EVICTED' });
    expect(failed).toEqual([]);
    expect(stub.objects.has(clip.id)).toBe(false);
  });
});
