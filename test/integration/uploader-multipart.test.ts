/**
 * The agent's uploader and cloud client against a real cloud on port 0 whose
 * multipart threshold is 5 MiB: a clip larger than that goes up in parts, each
 * streamed from its byte range on disk. Runs on the local driver and, when
 * CAMVAULT_S3_* name one, on Ceph RGW: the agent is the same either way.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CloudClient, CloudError } from '../../agent/cloud-client.js';
import { Journal, type ClipRow } from '../../agent/journal/journal.js';
import { hashClip } from '../../agent/uploader/multipart.js';
import { Uploader, type ClipUploaded, type UploadApi, type UploadFailed } from '../../agent/uploader/uploader.js';
import type { PresignRequest } from '../../shared/contracts/uploads.js';
import { hashFile } from '../../shared/hash.js';
import { newClipId } from '../../shared/ids.js';
import { createLogger } from '../../shared/log.js';
import { claimDevice, randomSerial, registerAndLogin, setPlan, startTestCloud, type ClaimedDevice, type TestCloud } from '../helpers/cloud.js';
import { call } from '../helpers/api-checks.js';
import { S3_SKIP_REASON, availableDrivers, s3Configured } from '../helpers/s3-env.js';
import { waitFor } from '../helpers/media.js';

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const sha256Of = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

if (!s3Configured) {
  describe.skip(`uploader, multipart, on the s3 driver (${S3_SKIP_REASON})`, () => {
    it('needs a real S3', () => {});
  });
}

describe.each(availableDrivers)('uploader, multipart, %s driver', (driver) => {
  let cloud: TestCloud;
  let owner: { token: string; accountId: string };
  let device: ClaimedDevice;
  let dir: string;
  let journal: Journal;
  let uploader: Uploader | undefined;
  const logger = createLogger({ level: 'silent' });

  beforeAll(async () => {
    cloud = await startTestCloud({ objects: driver, multipartThresholdBytes: 5 * MiB });
    owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'basic');
    device = await claimDevice(cloud.url, owner.token, randomSerial());
  });

  afterAll(async () => {
    if (!cloud) return;
    const prefix = `accounts/${owner.accountId}/`;
    for (const u of await cloud.objects.listMultipartUploads(prefix)) await cloud.objects.abortMultipartUpload(u.key, u.uploadId);
    await cloud.objects.deleteMany((await cloud.objects.list(prefix)).objects.map((o) => o.key));
    await cloud.close();
  });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'camvault-uploader-mp-'));
    journal = Journal.open(dir);
  });

  afterEach(async () => {
    await uploader?.stop({ graceMs: 100 });
    uploader = undefined;
    journal.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function client(): CloudClient {
    const c = new CloudClient({ baseUrl: cloud.url, timeoutMs: 10_000 });
    c.setDeviceCredentials(device.serial, device.token);
    return c;
  }

  /** a clip file of `size` random bytes, journaled as the agent does (hashed once, parts included unless told not to) */
  async function addClip(size: number, opts: { withParts?: boolean } = {}): Promise<{ clip: ClipRow; bytes: Buffer }> {
    const startMs = Date.now() - 60_000;
    const id = newClipId(startMs);
    const path = join(dir, `${id}.mp4`);
    const bytes = randomBytes(size);
    writeFileSync(path, bytes);
    const digest = opts.withParts === false ? { ...(await hashFile(path)), parts: null } : await hashClip(path, PART);
    const clip = journal.addClip({ id, channel: 'main', path, startMs, durationMs: 10_000, kind: 'event', ...digest });
    return { clip, bytes };
  }

  function start(api: UploadApi, concurrency = 2) {
    const uploaded: ClipUploaded[] = [];
    const failed: UploadFailed[] = [];
    uploader = new Uploader({
      journal,
      api,
      serial: device.serial,
      logger,
      concurrency,
      multipartPartBytes: PART,
      policy: { jitter: 0 },
      sleep: async () => {},
    });
    uploader.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
    uploader.on('upload-failed', (e: UploadFailed) => failed.push(e));
    uploader.start();
    return { uploaded, failed };
  }

  async function downloaded(clipId: string): Promise<Buffer> {
    const view = await call(cloud.url, 'GET', `/v1/clips/${clipId}/view`, { token: owner.token });
    expect(view.status).toBe(200);
    return Buffer.from(await (await fetch(view.body.url)).arrayBuffer());
  }

  async function storedEtag(clipId: string): Promise<string | null> {
    const { objects } = await cloud.objects.list(`accounts/${owner.accountId}/`);
    const key = objects.find((o) => o.key.endsWith(`/${clipId}.mp4`))?.key;
    return key ? ((await cloud.objects.head(key))?.etag ?? null) : null;
  }

  it('a 12 MiB clip in 5 MiB parts arrives intact, and the cloud holds it as a 3-part object', async () => {
    const { clip, bytes } = await addClip(12 * MiB + 7);
    expect(clip.parts?.md5s).toHaveLength(3);
    const { uploaded } = start(client());
    await waitFor(() => uploaded.length === 1, 30_000, 'the upload');
    expect(uploaded[0]).toMatchObject({ clipId: clip.id, size: bytes.length, alreadyUploaded: false });
    expect(journal.getClip(clip.id)?.state).toBe('uploaded');
    expect(sha256Of(await downloaded(clip.id))).toBe(sha256Of(bytes));
    expect(await storedEtag(clip.id)).toMatch(/^[0-9a-f]{32}-3$/);
  });

  it('a part that fails is sent again after a retry, and the parts already stored are not', async () => {
    const { clip, bytes } = await addClip(12 * MiB);
    const real = client();
    const sent: number[] = [];
    const presigns: PresignRequest[] = [];
    let cut = false;
    const api: UploadApi = {
      presign: (req, opts) => {
        presigns.push(req);
        return real.presign(req, opts);
      },
      streamPut: (p, path, opts) => real.streamPut(p, path, opts),
      complete: (id, opts, body) => real.complete(id, opts, body),
      streamPart: async (part, path, opts) => {
        sent.push(part.offset / PART + 1);
        // the network drops during the second part, once
        if (part.offset === PART && !cut) {
          cut = true;
          throw new CloudError(0, 'NETWORK_ERROR', 'connection reset');
        }
        return real.streamPart(part, path, opts);
      },
    };
    const { uploaded, failed } = start(api, 1);
    await waitFor(() => uploaded.length === 1, 30_000, 'the upload');
    expect(failed.map((f) => [f.code, f.next])).toEqual([['NETWORK_ERROR', 'retry']]);
    // part 1 once, part 2 twice, part 3 once (never started before the failure: concurrency 1)
    expect(sent).toEqual([1, 2, 2, 3]);
    expect(presigns).toHaveLength(2);
    expect(presigns[0]?.multipart).toEqual({ partBytes: PART, parts: clip.parts?.md5s.map((md5) => ({ md5 })) });
    expect(sha256Of(await downloaded(clip.id))).toBe(sha256Of(bytes));
  });

  it('a clip journaled without part MD5s is hashed in parts once, journaled, and uploaded in parts', async () => {
    const { clip, bytes } = await addClip(6 * MiB, { withParts: false });
    expect(clip.parts).toBeNull();
    const { uploaded } = start(client());
    await waitFor(() => uploaded.length === 1, 30_000, 'the upload');
    expect(journal.getClip(clip.id)?.parts).toEqual({
      partBytes: PART,
      md5s: [bytes.subarray(0, PART), bytes.subarray(PART)].map((b) => createHash('md5').update(b).digest('base64')),
    });
    expect(readFileSync(clip.path).equals(bytes)).toBe(true);
    expect(sha256Of(await downloaded(clip.id))).toBe(sha256Of(bytes));
    expect(await storedEtag(clip.id)).toMatch(/-2$/);
  });
});
