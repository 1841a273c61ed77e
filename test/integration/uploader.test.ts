import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CloudClient } from '../../agent/cloud-client.js';
import { Journal, type ClipRow } from '../../agent/journal/journal.js';
import type { RetryPolicy } from '../../agent/uploader/retry-policy.js';
import { Uploader, type ClipUploaded, type UploadFailed } from '../../agent/uploader/uploader.js';
import { hashFile } from '../../shared/hash.js';
import { newClipId } from '../../shared/ids.js';
import { createLogger } from '../../shared/log.js';
import { DeviceApiStub } from '../helpers/device-api-stub.js';
import { waitFor } from '../helpers/media.js';

const SERIAL = 'SIMUPL000001';
let dir: string;
let stub: DeviceApiStub;
let journal: Journal;
let uploader: Uploader | undefined;
let logLines: { level: number; msg: string; code?: string }[];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-uploader-'));
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

function startUploader(opts: { policy?: Partial<RetryPolicy>; concurrency?: number; baseUrl?: string } = {}) {
  const sleeps: number[] = [];
  const uploaded: ClipUploaded[] = [];
  const failed: UploadFailed[] = [];
  const logger = createLogger({ level: 'debug' }, { write: (s: string) => logLines.push(JSON.parse(s)) });
  const client = new CloudClient({ baseUrl: opts.baseUrl ?? stub.url, timeoutMs: 2000 });
  client.setDeviceCredentials(SERIAL, stub.deviceToken);
  uploader = new Uploader({
    journal,
    api: client,
    serial: SERIAL,
    logger,
    concurrency: opts.concurrency ?? 2,
    policy: { minDelayMs: 1000, maxDelayMs: 30_000, jitter: 0, parkMs: 60_000, ...opts.policy },
    // record the waits the policy asks for instead of sitting through them
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  uploader.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
  uploader.on('upload-failed', (e: UploadFailed) => failed.push(e));
  uploader.start();
  return { uploader, sleeps, uploaded, failed };
}

describe('uploader against a real HTTP server', () => {
  it('presigns, streams the file with exactly the signed headers, completes, and marks the clip uploaded', async () => {
    const clip = await addClip({ size: 8 * 1024 * 1024 + 17 });
    const { uploaded } = startUploader();
    await waitFor(() => uploaded.length === 1, 10_000, 'the upload');
    expect(stub.objects.get(clip.id)?.equals(await import('node:fs').then((fs) => fs.readFileSync(clip.path)))).toBe(true);
    const put = stub.requests.find((r) => r.step === 'put');
    expect(put?.headers['content-length']).toBe(String(clip.size));
    expect(put?.headers['content-md5']).toBe(clip.md5);
    expect(put?.headers['content-type']).toBe('video/mp4');
    expect(put?.headers.authorization).toBeUndefined();
    const presign = stub.requests.find((r) => r.step === 'presign');
    expect(presign?.body).toEqual({
      clipId: clip.id,
      start: new Date(clip.startMs).toISOString(),
      durationMs: 10_000,
      size: clip.size,
      md5: clip.md5,
      sha256: clip.sha256,
      kind: 'continuous',
      // above 5 MiB the part MD5s go along (one 16 MiB part here: the whole file), and the cloud decides
      multipart: { partBytes: 16 * 1024 * 1024, parts: [{ md5: clip.md5 }] },
    });
    expect(uploaded[0]).toMatchObject({ clipId: clip.id, serial: SERIAL, size: clip.size, sha256: clip.sha256, path: clip.path, alreadyUploaded: false });
    expect(uploaded[0]?.uploadMs).toBeGreaterThanOrEqual(0);
    expect(journal.getClip(clip.id)).toMatchObject({ state: 'uploaded', attempts: 1 });
    // the signed URL's query never reaches a log line
    expect(JSON.stringify(logLines)).not.toContain('signature=');
  });

  it('uploads event clips before older continuous clips', async () => {
    const old = await addClip({ ageMs: 300_000 });
    const ev = await addClip({ kind: 'event', ageMs: 10_000 });
    const { uploaded } = startUploader({ concurrency: 1 });
    await waitFor(() => uploaded.length === 2, 10_000, 'both uploads');
    expect(stub.requests.filter((r) => r.step === 'presign').map((r) => r.clipId)).toEqual([ev.id, old.id]);
  });

  it('retries a 503 after a backoff and then succeeds', async () => {
    const clip = await addClip();
    stub.queue('presign', { status: 503, code: 'SHUTTING_DOWN' }, { status: 502 });
    const { uploaded, sleeps, failed } = startUploader();
    await waitFor(() => uploaded.length === 1, 10_000, 'the upload');
    expect(sleeps).toEqual([1000, 2000]);
    expect(stub.count('presign')).toBe(3);
    expect(failed.map((f) => f.next)).toEqual(['retry', 'retry']);
    expect(journal.getClip(clip.id)?.state).toBe('uploaded');
  });

  it('waits as long as a 429 Retry-After asks before trying again', async () => {
    await addClip();
    stub.queue('presign', { status: 429, code: 'RATE_LIMITED', headers: { 'retry-after': '7' } });
    const { uploaded, sleeps } = startUploader();
    await waitFor(() => uploaded.length === 1, 10_000, 'the upload');
    expect(sleeps).toEqual([7000]);
  });

  it('presigns again at once when the upload URL has expired', async () => {
    const clip = await addClip();
    stub.queue('put', { status: 403, code: 'URL_EXPIRED' });
    const { uploaded, sleeps } = startUploader();
    await waitFor(() => uploaded.length === 1, 10_000, 'the upload');
    expect(stub.count('presign')).toBe(2);
    expect(stub.count('put')).toBe(2);
    expect(sleeps).toEqual([]);
    expect(stub.objects.has(clip.id)).toBe(true);
  });

  it('counts a clip the cloud already has as uploaded, without sending it again', async () => {
    const clip = await addClip();
    stub.completed.add(clip.id);
    const { uploaded } = startUploader();
    await waitFor(() => uploaded.length === 1, 10_000, 'the clip to count as uploaded');
    expect(uploaded[0]).toMatchObject({ clipId: clip.id, alreadyUploaded: true });
    expect(stub.count('put')).toBe(0);
    expect(journal.getClip(clip.id)?.state).toBe('uploaded');
  });

  it('redoes the whole upload when complete finds no object', async () => {
    const clip = await addClip();
    stub.queue('complete', { status: 409, code: 'UPLOAD_OBJECT_MISSING' });
    const { uploaded, sleeps } = startUploader();
    await waitFor(() => uploaded.length === 1, 10_000, 'the upload');
    expect(stub.count('put')).toBe(2);
    expect(sleeps).toHaveLength(1);
    expect(journal.getClip(clip.id)?.state).toBe('uploaded');
  });

  it('without a plan, pauses the whole queue with one request and one log line, then resumes when the plan is back', async () => {
    const clips = [await addClip(), await addClip(), await addClip({ kind: 'event' })];
    stub.refuse.presign = { status: 402, code: 'PLAN_REQUIRED' };
    const { uploader: u, uploaded, failed } = startUploader({ concurrency: 1, policy: { parkMs: 700 } });
    await waitFor(() => failed.length === 1, 5000, 'the refusal');
    // new clips and wakes while parked do not bring requests
    for (let i = 0; i < 5; i += 1) {
      u.wake();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(stub.count('presign')).toBe(1);
    expect(u.parked?.code).toBe('PLAN_REQUIRED');
    expect(failed[0]).toMatchObject({ code: 'PLAN_REQUIRED', status: 402, next: 'parked' });
    expect(journal.countsByState()).toMatchObject({ queued: 3, uploading: 0, failed: 0 });
    // still refused after the park: a second request, but no second log line
    await waitFor(() => stub.count('presign') === 2, 3000, 'the retry after the park');
    delete stub.refuse.presign;
    await waitFor(() => uploaded.length === 3, 5000, 'every clip once the plan is back');
    expect(new Set(uploaded.map((e) => e.clipId))).toEqual(new Set(clips.map((c) => c.id)));
    const warnings = logLines.filter((l) => l.level === 40 && l.code === 'PLAN_REQUIRED');
    expect(warnings).toHaveLength(1);
    expect(logLines.some((l) => l.msg === 'uploads resumed')).toBe(true);
  });

  it('keeps a clip queued through a network outage and uploads it when the network returns', async () => {
    const clip = await addClip();
    await stub.close();
    const { uploaded, sleeps, failed } = startUploader({ policy: { maxRetries: 2, parkMs: 500 } });
    await waitFor(() => failed.some((f) => f.next === 'queued'), 5000, 'the retries to run out');
    expect(sleeps).toEqual([1000, 2000]);
    expect(failed.every((f) => f.code === 'NETWORK_ERROR')).toBe(true);
    expect(journal.getClip(clip.id)).toMatchObject({ state: 'queued', lastErrorCode: 'NETWORK_ERROR' });
    await stub.reopen();
    await waitFor(() => uploaded.length === 1, 5000, 'the upload after the outage');
    expect(journal.getClip(clip.id)?.state).toBe('uploaded');
  });

  it('marks a clip the cloud refuses for good as failed and keeps its file', async () => {
    const clip = await addClip();
    stub.queue('presign', { status: 400, code: 'CLIP_START_OUT_OF_RANGE' });
    const { failed } = startUploader();
    await waitFor(() => failed.length === 1, 5000, 'the refusal');
    expect(failed[0]).toMatchObject({ code: 'CLIP_START_OUT_OF_RANGE', next: 'failed' });
    expect(journal.getClip(clip.id)).toMatchObject({ state: 'failed', lastErrorCode: 'CLIP_START_OUT_OF_RANGE' });
    expect(existsSync(clip.path)).toBe(true);
  });

  it('marks a clip whose file is gone as lost', async () => {
    const clip = await addClip();
    unlinkSync(clip.path);
    const { failed } = startUploader();
    await waitFor(() => failed.length === 1, 5000, 'the failure');
    expect(journal.getClip(clip.id)).toMatchObject({ state: 'lost', lastErrorCode: 'FILE_MISSING' });
  });

  it('wakes at once when a clip is journaled', async () => {
    const { uploader: u, uploaded } = startUploader({});
    await new Promise((r) => setTimeout(r, 100));
    await addClip();
    const t0 = Date.now();
    u.wake();
    await waitFor(() => uploaded.length === 1, 5000, 'the upload');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('on stop, cuts an upload that does not finish within the grace period and keeps the clip queued', async () => {
    const clip = await addClip();
    stub.queue('put', 'hang');
    const { uploader: u } = startUploader();
    await waitFor(() => stub.count('put') === 1, 5000, 'the PUT to start');
    const t0 = Date.now();
    await u.stop({ graceMs: 300 });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(journal.getClip(clip.id)?.state).toBe('queued');
  });
});
