/**
 * Multipart uploads through the API, on the local driver and, when
 * CAMVAULT_S3_* name one (`source /tmp/camvault-rgw/env`), on Ceph RGW: the
 * same requests and answers whichever driver the cloud runs, because the
 * device only ever sees URLs and headers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newClipId } from '../../shared/ids.js';
import { multipartEtag, partEtag } from '../../shared/multipart.js';
import { call, expectError } from '../helpers/api-checks.js';
import { claimDevice, randomSerial, registerAndLogin, setPlan, startTestCloud, type ClaimedDevice, type TestCloud } from '../helpers/cloud.js';
import { S3_SKIP_REASON, availableDrivers, s3Configured } from '../helpers/s3-env.js';
import { bodyOf, presignBody } from '../helpers/upload.js';

const MiB = 1024 * 1024;
const md5Of = (b: Buffer): string => createHash('md5').update(b).digest('base64');
const sha256Of = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface PresignedPartJson {
  partNumber: number;
  offset: number;
  length: number;
  url: string;
  headers: Record<string, string>;
  etag?: string;
}

function partsOf(body: Buffer, partBytes: number): Buffer[] {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; at += partBytes) parts.push(body.subarray(at, at + partBytes));
  return parts;
}

/** what the agent sends: the clip, and the MD5 of each part */
function multipartPresignBody(body: Buffer, partBytes: number, over: { clipId?: string; partMd5s?: string[] } = {}): Record<string, unknown> {
  const md5s = over.partMd5s ?? partsOf(body, partBytes).map(md5Of);
  return {
    ...presignBody({ body, clipId: over.clipId, startMs: Date.now() - 60_000 }),
    multipart: { partBytes, parts: md5s.map((md5) => ({ md5 })) },
  };
}

/** PUT one part's bytes with exactly the headers the presign answer gave */
async function putPart(part: PresignedPartJson, body: Buffer): Promise<Response> {
  const bytes = body.subarray(part.offset, part.offset + part.length);
  const res = await fetch(part.url, { method: 'PUT', headers: part.headers, body: bodyOf(bytes) });
  await res.arrayBuffer();
  return res;
}

if (!s3Configured) {
  describe.skip(`multipart uploads through the API on the s3 driver (${S3_SKIP_REASON})`, () => {
    it('needs a real S3', () => {});
  });
}

describe.each(availableDrivers)('multipart uploads through the API, %s driver', (driver) => {
  let cloud: TestCloud;
  let device: ClaimedDevice;
  let owner: { token: string; accountId: string };
  const partBytes = 5 * MiB;

  beforeAll(async () => {
    cloud = await startTestCloud({ objects: driver, multipartThresholdBytes: 5 * MiB });
    owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'basic');
    device = await claimDevice(cloud.url, owner.token, randomSerial());
  });

  afterAll(async () => {
    if (!cloud) return;
    // a shared bucket keeps nothing of this run
    const prefix = `accounts/${owner.accountId}/`;
    for (const u of await cloud.objects.listMultipartUploads(prefix)) await cloud.objects.abortMultipartUpload(u.key, u.uploadId);
    const { objects } = await cloud.objects.list(prefix);
    await cloud.objects.deleteMany(objects.map((o) => o.key));
    await cloud.close();
  });

  async function presign(body: Record<string, unknown>) {
    return call(cloud.url, 'POST', '/v1/device/uploads', { device, body });
  }

  async function complete(clipId: string, body?: unknown) {
    return call(cloud.url, 'POST', `/v1/device/uploads/${clipId}/complete`, { device, body });
  }

  /** the clip's multipart uploads still open in the store */
  async function openUploads(clipId: string): Promise<string[]> {
    const open = await cloud.objects.listMultipartUploads(`accounts/${owner.accountId}/`);
    return open.filter((u) => u.key.endsWith(`/${clipId}.mp4`)).map((u) => u.uploadId);
  }

  it('a clip above the threshold goes up in parts, and the clip downloaded has the SHA-256 the device declared', async () => {
    const body = randomBytes(12 * MiB + 321);
    const req = multipartPresignBody(body, partBytes);
    const clipId = req.clipId as string;
    const res = await presign(req);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ clipId, mode: 'multipart', method: 'PUT', partBytes });
    const parts = res.body.parts as PresignedPartJson[];
    expect(parts.map((p) => [p.partNumber, p.offset, p.length])).toEqual([
      [1, 0, 5 * MiB],
      [2, 5 * MiB, 5 * MiB],
      [3, 10 * MiB, 2 * MiB + 321],
    ]);
    for (const [i, p] of parts.entries()) {
      const headers = Object.fromEntries(Object.entries(p.headers).map(([k, v]) => [k.toLowerCase(), v]));
      expect(headers).toMatchObject({ 'content-length': String(p.length), 'content-md5': md5Of(partsOf(body, partBytes)[i] as Buffer) });
      expect(p.etag).toBeUndefined();
    }
    expect(Date.parse(res.body.expiresAt)).toBeGreaterThan(Date.now());

    const etags: { partNumber: number; etag: string }[] = [];
    for (const p of parts) {
      const put = await putPart(p, body);
      expect(put.status).toBe(200);
      etags.push({ partNumber: p.partNumber, etag: put.headers.get('etag') as string });
    }
    const done = await complete(clipId, { parts: etags });
    expect(done.status).toBe(200);
    expect(done.body.clip).toMatchObject({ id: clipId, size: body.length, sha256: sha256Of(body) });

    const key = decodeURIComponent(new URL(parts[0]!.url).pathname).replace(/^.*?(accounts\/)/, '$1');
    expect(await cloud.objects.head(key)).toEqual({
      size: body.length,
      md5: null,
      etag: multipartEtag(partsOf(body, partBytes).map(md5Of)),
    });
    expect(await openUploads(clipId)).toEqual([]);
    const view = await call(cloud.url, 'GET', `/v1/clips/${clipId}/view`, { token: owner.token });
    const downloaded = Buffer.from(await (await fetch(view.body.url)).arrayBuffer());
    expect(sha256Of(downloaded)).toBe(sha256Of(body));

    // completing again (the first answer was lost) gives the same clip
    const again = await complete(clipId, { parts: etags });
    expect(again.status).toBe(200);
    expect(again.body.clip).toEqual(done.body.clip);
  });

  it('above the threshold, a presign without part MD5s or with a part count that does not fit the size is refused', async () => {
    const body = randomBytes(6 * MiB);
    await expectError('MULTIPART_REQUIRED', cloud.url, 'POST', '/v1/device/uploads', { device, body: presignBody({ body }) });
    const wrongCount = multipartPresignBody(body, partBytes, { partMd5s: [md5Of(body)] });
    await expectError('VALIDATION_FAILED', cloud.url, 'POST', '/v1/device/uploads', { device, body: wrongCount });
    const tooSmall = multipartPresignBody(body, 1 * MiB);
    await expectError('VALIDATION_FAILED', cloud.url, 'POST', '/v1/device/uploads', { device, body: tooSmall });
    expect(await cloud.objects.listMultipartUploads(`accounts/${owner.accountId}/`)).toEqual([]);
  });

  it('a clip at or below the threshold is one PUT, even with part MD5s', async () => {
    const body = randomBytes(5 * MiB);
    const req = multipartPresignBody(body, partBytes);
    const res = await presign(req);
    expect(res.body).toMatchObject({ mode: 'single', method: 'PUT' });
    const put = await fetch(res.body.url, { method: 'PUT', headers: res.body.headers, body: bodyOf(body) });
    expect(put.status).toBe(200);
    expect((await complete(req.clipId as string)).status).toBe(200);
  });

  it('a part whose bytes were changed on the way is refused by the store, and complete then stores no clip', async () => {
    const body = randomBytes(6 * MiB);
    const req = multipartPresignBody(body, partBytes);
    const clipId = req.clipId as string;
    const parts = (await presign(req)).body.parts as PresignedPartJson[];
    expect((await putPart(parts[0]!, body)).status).toBe(200);
    const tampered = Buffer.from(body);
    tampered[5 * MiB + 10] = (tampered[5 * MiB + 10] as number) ^ 0xff;
    const refused = await putPart(parts[1]!, tampered);
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);
    await expectError('UPLOAD_OBJECT_MISSING', cloud.url, 'POST', `/v1/device/uploads/${clipId}/complete`, { device });
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${clipId}`, { token: owner.token });

    // presigning again marks part 1 as stored; sending the right part 2 completes the clip
    const again = (await presign(req)).body.parts as PresignedPartJson[];
    expect(again.map((p) => p.etag)).toEqual([partEtag(md5Of(body.subarray(0, 5 * MiB))), undefined]);
    expect((await putPart(again[1]!, body)).status).toBe(200);
    expect((await complete(clipId)).body.clip).toMatchObject({ id: clipId, sha256: sha256Of(body) });
  });

  it('a declared part MD5 that does not match the bytes ends with no clip', async () => {
    const body = randomBytes(6 * MiB);
    const md5s = partsOf(body, partBytes).map(md5Of);
    md5s[1] = md5Of(randomBytes(1 * MiB));
    const req = multipartPresignBody(body, partBytes, { partMd5s: md5s });
    const clipId = req.clipId as string;
    const parts = (await presign(req)).body.parts as PresignedPartJson[];
    expect((await putPart(parts[0]!, body)).status).toBe(200);
    const refused = await putPart(parts[1]!, body);
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);
    await expectError('UPLOAD_OBJECT_MISSING', cloud.url, 'POST', `/v1/device/uploads/${clipId}/complete`, { device });
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${clipId}`, { token: owner.token });
  });

  it('a complete that lists an ETag other than the declared part MD5 is refused with 422, and no clip is stored', async () => {
    const body = randomBytes(6 * MiB);
    const req = multipartPresignBody(body, partBytes);
    const clipId = req.clipId as string;
    const parts = (await presign(req)).body.parts as PresignedPartJson[];
    const etags: { partNumber: number; etag: string }[] = [];
    for (const p of parts) etags.push({ partNumber: p.partNumber, etag: (await putPart(p, body)).headers.get('etag') as string });
    const wrong = [etags[0]!, { partNumber: 2, etag: `"${createHash('md5').update('other').digest('hex')}"` }];
    const res = await expectError('UPLOAD_MISMATCH', cloud.url, 'POST', `/v1/device/uploads/${clipId}/complete`, { device, body: { parts: wrong } });
    expect(res.status).toBe(422);
    await expectError('UPLOAD_MISMATCH', cloud.url, 'POST', `/v1/device/uploads/${clipId}/complete`, { device, body: { parts: etags.slice(0, 1) } });
    await expectError('CLIP_NOT_FOUND', cloud.url, 'GET', `/v1/clips/${clipId}`, { token: owner.token });
    // nothing was assembled: the right list still completes
    expect((await complete(clipId, { parts: etags })).status).toBe(200);
  });

  it('presigning again with the same parts keeps the upload; with other parts it starts a new one and aborts the old', async () => {
    const body = randomBytes(6 * MiB);
    const clipId = newClipId();
    const req = multipartPresignBody(body, partBytes, { clipId });
    const first = (await presign(req)).body;
    expect((await putPart(first.parts[0], body)).status).toBe(200);
    const second = (await presign(req)).body;
    expect(second.uploadId).toBe(first.uploadId);
    expect(second.parts[0].etag).toBe(partEtag(md5Of(body.subarray(0, partBytes))));
    expect(await openUploads(clipId)).toEqual([first.uploadId]);

    const changed = Buffer.concat([body.subarray(0, 6 * MiB - 1), Buffer.from([body[6 * MiB - 1]! ^ 1])]);
    const third = (await presign(multipartPresignBody(changed, partBytes, { clipId }))).body;
    expect(third.uploadId).not.toBe(first.uploadId);
    expect(await openUploads(clipId)).toEqual([third.uploadId]);
    // and a single PUT (the clip fits under the threshold now) aborts it too
    await presign({ ...presignBody({ body: body.subarray(0, 1000), clipId, startMs: Date.now() - 60_000 }) });
    expect(await openUploads(clipId)).toEqual([]);
  });
});
