/**
 * The object store contract (DESIGN.md, "Object store contract"), one suite
 * that every driver runs: local now, S3 and Ceph RGW later. It talks to the
 * driver only through the ObjectStore interface and to the store's URLs only
 * through plain HTTP, so it proves what a camera or a browser would see.
 *
 * Every refusal is checked twice: the answer is a 4xx, and nothing was stored
 * (head() is null, list() is empty, and the driver reports no leftovers).
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectStore, PresignedRequest } from '../../cloud/objects/types.js';
import { multipartEtag, normalizeEtag } from '../../shared/multipart.js';
import { rawRequest } from '../helpers/raw-http.js';
import { bodyOf } from '../helpers/upload.js';

export interface ContractSubject {
  store: ObjectStore;
  /** moves the clock the store signs and checks URLs with; without it the suite waits in real time */
  advanceClock?: (ms: number) => void;
  /** what the driver left beside objects (temp files, partial uploads); must end up empty after a refusal */
  leftovers?: () => Promise<string[]>;
  close(): Promise<void>;
}

export type ContractFactory = () => Promise<ContractSubject>;

const md5Of = (b: Buffer): string => createHash('md5').update(b).digest('base64');
const md5Hex = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const MiB = 1024 * 1024;

/** fetch computes Content-Length from the body itself; every other signed header is sent as given */
function withoutLength(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'content-length'));
}

function tamperSignature(url: string): string {
  const u = new URL(url);
  const name = [...u.searchParams.keys()].find((k) => /signature/i.test(k));
  if (!name) throw new Error('no signature parameter in the URL');
  const sig = u.searchParams.get(name) as string;
  const last = sig.slice(-1);
  u.searchParams.set(name, sig.slice(0, -1) + (last === '0' ? '1' : '0'));
  return u.toString();
}

export function objectStoreContract(name: string, factory: ContractFactory): void {
  describe(`object store contract: ${name}`, () => {
    let subject: ContractSubject;
    let store: ObjectStore;
    // every run works under its own prefix, so a shared bucket is fine
    const run = `contract/${randomBytes(6).toString('hex')}/`;
    let n = 0;
    const newKey = (label: string): string => `${run}${String(++n).padStart(3, '0')}-${label}.mp4`;

    beforeAll(async () => {
      subject = await factory();
      store = subject.store;
    });

    afterAll(async () => {
      if (!subject) return;
      const { objects } = await store.list(run);
      await store.deleteMany(objects.map((o) => o.key));
      for (const u of await store.listMultipartUploads(run)) await store.abortMultipartUpload(u.key, u.uploadId);
      await subject.close();
    });

    async function presignPut(key: string, body: Buffer, expiresInSec = 60): Promise<PresignedRequest> {
      return store.presignPut(key, { contentLength: body.length, contentMd5: md5Of(body), expiresInSec, contentType: 'video/mp4' });
    }

    function put(url: string, headers: Record<string, string>, body: Buffer): Promise<Response> {
      return fetch(url, { method: 'PUT', headers: withoutLength(headers), body: bodyOf(body) });
    }

    async function waitPast(ms: number): Promise<void> {
      if (subject.advanceClock) subject.advanceClock(ms);
      else await new Promise((r) => setTimeout(r, ms));
    }

    async function expectNothingStored(...keys: string[]): Promise<void> {
      for (const key of keys) {
        expect(await store.head(key)).toBeNull();
        expect((await store.list(key)).objects).toEqual([]);
      }
      if (subject.leftovers) {
        // a broken connection is cleaned up asynchronously on the server side
        const deadline = Date.now() + 3000;
        let left = await subject.leftovers();
        while (left.length > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          left = await subject.leftovers();
        }
        expect(left).toEqual([]);
      }
    }

    function expectClientError(status: number | null): void {
      expect(status).not.toBeNull();
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
    }

    it('a PUT through a presigned URL stores the bytes, and head() gives their size and MD5', async () => {
      const key = newKey('put');
      const body = randomBytes(70_000);
      const p = await presignPut(key, body);
      expect(p.method).toBe('PUT');
      expect(p.expiresAt).toBeGreaterThan(Date.now() - 5000);
      const res = await put(p.url, p.headers, body);
      expect(res.status).toBe(200);
      expect(await store.head(key)).toEqual({ size: body.length, md5: md5Of(body), etag: md5Hex(body) });
    });

    it('a presigned GET returns the same bytes, as an attachment when a download name is signed', async () => {
      const key = newKey('get');
      const body = randomBytes(50_000);
      const p = await presignPut(key, body);
      expect((await put(p.url, p.headers, body)).status).toBe(200);

      const view = await store.presignGet(key, { expiresInSec: 60 });
      const res = await fetch(view.url);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
      expect(res.headers.get('content-disposition') ?? '').not.toMatch(/attachment/);

      const download = await store.presignGet(key, { expiresInSec: 60, downloadName: 'CAM00001-20260101T000000Z.mp4' });
      const res2 = await fetch(download.url);
      expect(res2.status).toBe(200);
      expect(res2.headers.get('content-disposition')).toMatch(/attachment;.*CAM00001-20260101T000000Z\.mp4/);
      expect(Buffer.from(await res2.arrayBuffer()).equals(body)).toBe(true);
    });

    it('a second PUT to the same key replaces the object', async () => {
      const key = newKey('replace');
      const first = randomBytes(1000);
      const second = randomBytes(1000);
      for (const body of [first, second]) {
        const p = await presignPut(key, body);
        expect((await put(p.url, p.headers, body)).status).toBe(200);
      }
      expect(await store.head(key)).toEqual({ size: 1000, md5: md5Of(second), etag: md5Hex(second) });
    });

    it('a PUT to a key other than the signed one is refused and stores nothing', async () => {
      const key = newKey('signed');
      const other = newKey('other');
      const body = randomBytes(2000);
      const p = await presignPut(key, body);
      const url = new URL(p.url);
      url.pathname = url.pathname.replace(key.split('/').pop() as string, other.split('/').pop() as string);
      expectClientError((await put(url.toString(), p.headers, body)).status);
      await expectNothingStored(key, other);
    });

    it('a Content-Length shorter than the signed length is refused and stores nothing', async () => {
      const key = newKey('short-header');
      const body = randomBytes(5000);
      const p = await presignPut(key, body);
      expectClientError((await put(p.url, p.headers, body.subarray(0, 4000))).status);
      await expectNothingStored(key);
    });

    it('a Content-Length longer than the signed length is refused and stores nothing', async () => {
      const key = newKey('long-header');
      const body = randomBytes(5000);
      const p = await presignPut(key, body);
      expectClientError((await put(p.url, p.headers, Buffer.concat([body, randomBytes(1000)]))).status);
      await expectNothingStored(key);
    });

    it('a body cut short of the signed Content-Length stores nothing', async () => {
      const key = newKey('cut-short');
      const body = randomBytes(5000);
      const p = await presignPut(key, body);
      const res = await rawRequest(p.url, { method: 'PUT', headers: p.headers, body: body.subarray(0, 3000), waitMs: 1000 });
      // the server cannot answer a request that never ends; if it does answer, it refuses
      if (res.status !== null) expectClientError(res.status);
      await expectNothingStored(key);
    });

    it('a streamed body longer than the signed length, without Content-Length, is refused and stores nothing', async () => {
      const key = newKey('chunked');
      const body = randomBytes(5000);
      const p = await presignPut(key, body);
      const longer = Buffer.concat([body, randomBytes(3000)]);
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(longer.subarray(0, 4000));
          controller.enqueue(longer.subarray(4000));
          controller.close();
        },
      });
      const res = await fetch(p.url, {
        method: 'PUT',
        headers: withoutLength(p.headers),
        body: stream,
        duplex: 'half',
      } as RequestInit & { duplex: 'half' });
      expectClientError(res.status);
      await expectNothingStored(key);
    });

    it('a body whose MD5 differs from the signed one is refused and stores nothing', async () => {
      const key = newKey('bad-body');
      const body = randomBytes(5000);
      const p = await presignPut(key, body);
      const changed = Buffer.from(body);
      changed[2500] = (changed[2500] as number) ^ 0xff;
      expectClientError((await put(p.url, p.headers, changed)).status);
      await expectNothingStored(key);
    });

    it('a Content-MD5 header other than the signed one is refused and stores nothing', async () => {
      const key = newKey('bad-md5-header');
      const body = randomBytes(5000);
      const other = randomBytes(5000);
      const p = await presignPut(key, body);
      // the other body with its own, correct MD5: only the signature binds the MD5
      expectClientError((await put(p.url, { ...p.headers, 'Content-MD5': md5Of(other) }, other)).status);
      await expectNothingStored(key);
    });

    it('an expired URL is refused for PUT and for GET, and the PUT stores nothing', async () => {
      const stored = newKey('expired-get');
      const body = randomBytes(1000);
      const ok = await presignPut(stored, body);
      expect((await put(ok.url, ok.headers, body)).status).toBe(200);

      const key = newKey('expired-put');
      const p = await presignPut(key, body, 1);
      const view = await store.presignGet(stored, { expiresInSec: 1 });
      await waitPast(2100);
      expectClientError((await put(p.url, p.headers, body)).status);
      await expectNothingStored(key);
      const res = await fetch(view.url);
      expectClientError(res.status);
      await res.arrayBuffer();
    });

    it('a tampered signature is refused for PUT and for GET, and the PUT stores nothing', async () => {
      const key = newKey('tampered');
      const body = randomBytes(1000);
      const p = await presignPut(key, body);
      expectClientError((await put(tamperSignature(p.url), p.headers, body)).status);
      await expectNothingStored(key);

      expect((await put(p.url, p.headers, body)).status).toBe(200);
      const view = await store.presignGet(key, { expiresInSec: 60 });
      const res = await fetch(tamperSignature(view.url));
      expectClientError(res.status);
      await res.arrayBuffer();
    });

    it('a GET URL signed for one key does not read another', async () => {
      const a = newKey('read-a');
      const b = newKey('read-b');
      for (const key of [a, b]) {
        const body = randomBytes(100);
        const p = await presignPut(key, body);
        expect((await put(p.url, p.headers, body)).status).toBe(200);
      }
      const view = await store.presignGet(a, { expiresInSec: 60 });
      const url = new URL(view.url);
      url.pathname = url.pathname.replace(a.split('/').pop() as string, b.split('/').pop() as string);
      const res = await fetch(url);
      expectClientError(res.status);
      await res.arrayBuffer();
    });

    it('deleteMany removes objects, and missing keys count as deleted', async () => {
      const keys = [newKey('del-1'), newKey('del-2')];
      for (const key of keys) {
        const body = randomBytes(100);
        const p = await presignPut(key, body);
        expect((await put(p.url, p.headers, body)).status).toBe(200);
      }
      const missing = newKey('del-missing');
      const result = await store.deleteMany([...keys, missing]);
      expect(result.failed).toEqual([]);
      expect(result.deleted.sort()).toEqual([...keys, missing].sort());
      for (const key of keys) expect(await store.head(key)).toBeNull();
      expect(await store.deleteMany([])).toEqual({ deleted: [], failed: [] });
    });

    it('list pages through a prefix in key order', async () => {
      const prefix = `${run}list/`;
      const keys = ['a.mp4', 'b/c.mp4', 'b/d.mp4', 'e.mp4', 'f.mp4'].map((k) => prefix + k);
      for (const key of [...keys].reverse()) {
        const body = randomBytes(10);
        const p = await presignPut(key, body);
        expect((await put(p.url, p.headers, body)).status).toBe(200);
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page = await store.list(prefix, cursor, 2);
        expect(page.objects.length).toBeLessThanOrEqual(2);
        for (const o of page.objects) expect(o.size).toBe(10);
        seen.push(...page.objects.map((o) => o.key));
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== null && pages < 10);
      expect(seen).toEqual(keys);
      expect(pages).toBe(3);
      expect((await store.list(`${prefix}b/`)).objects.map((o) => o.key)).toEqual(keys.slice(1, 3));
      expect((await store.list(`${prefix}zzz`)).objects).toEqual([]);
    });

    // ---- multipart uploads (S3's UploadPart through presigned URLs) ----

    /** parts of 5 MiB (S3's minimum for every part but the last) and a short last one */
    function partsOf(body: Buffer, partBytes = 5 * MiB): Buffer[] {
      const parts: Buffer[] = [];
      for (let at = 0; at < body.length; at += partBytes) parts.push(body.subarray(at, at + partBytes));
      return parts;
    }

    async function presignPart(key: string, uploadId: string, partNumber: number, part: Buffer): Promise<PresignedRequest> {
      return store.presignUploadPart(key, uploadId, partNumber, { contentLength: part.length, contentMd5: md5Of(part), expiresInSec: 60 });
    }

    /** PUTs each part with its signed headers; returns the ETags the store answered */
    async function putParts(key: string, uploadId: string, parts: Buffer[]): Promise<{ partNumber: number; etag: string }[]> {
      const out: { partNumber: number; etag: string }[] = [];
      for (const [i, part] of parts.entries()) {
        const p = await presignPart(key, uploadId, i + 1, part);
        expect(p.method).toBe('PUT');
        const res = await put(p.url, p.headers, part);
        expect(res.status, await res.text()).toBe(200);
        const etag = res.headers.get('etag');
        expect(etag).not.toBeNull();
        out.push({ partNumber: i + 1, etag: etag as string });
      }
      return out;
    }

    async function openUploads(key: string): Promise<string[]> {
      return (await store.listMultipartUploads(key)).filter((u) => u.key === key).map((u) => u.uploadId);
    }

    it('a multipart upload of 5 MiB + 1 MiB assembles the parts in order, with the multipart ETag', async () => {
      const key = newKey('multipart');
      const body = randomBytes(6 * MiB + 123);
      const parts = partsOf(body);
      const uploadId = await store.createMultipartUpload(key, { contentType: 'video/mp4' });
      expect(await store.head(key)).toBeNull();
      const etags = await putParts(key, uploadId, parts);
      // a part's ETag is its MD5, quoted
      expect(etags.map((e) => normalizeEtag(e.etag))).toEqual(parts.map(md5Hex));
      expect(await store.listParts(key, uploadId)).toEqual(
        parts.map((part, i) => ({ partNumber: i + 1, etag: md5Hex(part), size: part.length })),
      );

      const expected = multipartEtag(parts.map(md5Of));
      expect(await store.completeMultipartUpload(key, uploadId, etags)).toEqual({ etag: expected });
      // S3 knows no MD5 of an assembled object; the ETag is what proves its parts
      expect(await store.head(key)).toEqual({ size: body.length, md5: null, etag: expected });
      const res = await fetch((await store.presignGet(key, { expiresInSec: 60 })).url);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
      expect(await openUploads(key)).toEqual([]);
      await expect(store.listParts(key, uploadId)).rejects.toMatchObject({ code: 'MULTIPART_UPLOAD_NOT_FOUND' });
    });

    it('a part whose body, MD5 header or length differs from what its URL signs is refused and not stored', async () => {
      const key = newKey('multipart-bad-part');
      const part = randomBytes(5 * MiB);
      const uploadId = await store.createMultipartUpload(key);
      const p = await presignPart(key, uploadId, 1, part);

      const changed = Buffer.from(part);
      changed[1000] = (changed[1000] as number) ^ 0xff;
      expectClientError((await put(p.url, p.headers, changed)).status);
      const other = randomBytes(5 * MiB);
      expectClientError((await put(p.url, { ...p.headers, 'Content-MD5': md5Of(other) }, other)).status);
      expectClientError((await put(p.url, p.headers, part.subarray(0, part.length - 1))).status);
      expectClientError((await put(p.url, p.headers, Buffer.concat([part, Buffer.from('x')]))).status);
      expect(await store.listParts(key, uploadId)).toEqual([]);

      await store.abortMultipartUpload(key, uploadId);
      await expectNothingStored(key);
    });

    it('a part URL moved to another part number, upload or key is refused', async () => {
      const key = newKey('multipart-moved');
      const part = randomBytes(1000);
      const uploadId = await store.createMultipartUpload(key);
      const other = await store.createMultipartUpload(key);
      const p = await presignPart(key, uploadId, 1, part);
      const moved = (change: (u: URL) => void): string => {
        const u = new URL(p.url);
        change(u);
        return u.toString();
      };
      expectClientError((await put(moved((u) => u.searchParams.set('partNumber', '2')), p.headers, part)).status);
      expectClientError((await put(moved((u) => u.searchParams.set('uploadId', other)), p.headers, part)).status);
      expectClientError((await put(moved((u) => u.searchParams.delete('uploadId')), p.headers, part)).status);
      expectClientError((await put(tamperSignature(p.url), p.headers, part)).status);
      expect(await store.listParts(key, uploadId)).toEqual([]);
      expect(await store.listParts(key, other)).toEqual([]);
      await expectNothingStored(key);
      await store.abortMultipartUpload(key, uploadId);
      await store.abortMultipartUpload(key, other);
    });

    it('completing with a wrong ETag, a part never sent, or a short part before the last is refused and stores nothing', async () => {
      const key = newKey('multipart-bad-complete');
      const body = randomBytes(6 * MiB);
      const parts = partsOf(body);
      const uploadId = await store.createMultipartUpload(key);
      const etags = await putParts(key, uploadId, parts);

      const wrongEtag = [etags[0]!, { partNumber: 2, etag: `"${md5Hex(randomBytes(8))}"` }];
      await expect(store.completeMultipartUpload(key, uploadId, wrongEtag)).rejects.toMatchObject({ code: 'MULTIPART_PART_INVALID' });
      expect(await store.head(key)).toBeNull();
      const neverSent = [...etags, { partNumber: 3, etag: etags[1]!.etag }];
      await expect(store.completeMultipartUpload(key, uploadId, neverSent)).rejects.toMatchObject({ code: 'MULTIPART_PART_INVALID' });
      expect(await store.head(key)).toBeNull();
      const outOfOrder = [etags[1]!, etags[0]!];
      await expect(store.completeMultipartUpload(key, uploadId, outOfOrder)).rejects.toMatchObject({ code: 'MULTIPART_PART_INVALID' });
      expect(await store.head(key)).toBeNull();

      // a refused completion leaves the upload as it was: it still completes
      expect(await openUploads(key)).toEqual([uploadId]);
      expect((await store.completeMultipartUpload(key, uploadId, etags)).etag).toBe(multipartEtag(parts.map(md5Of)));
      expect((await store.head(key))?.size).toBe(body.length);

      const small = newKey('multipart-small');
      const smallParts = [randomBytes(1 * MiB), randomBytes(1 * MiB)];
      const smallId = await store.createMultipartUpload(small);
      const smallEtags = await putParts(small, smallId, smallParts);
      await expect(store.completeMultipartUpload(small, smallId, smallEtags)).rejects.toMatchObject({ code: 'MULTIPART_PART_INVALID' });
      await store.abortMultipartUpload(small, smallId);
      await expectNothingStored(small);
    });

    it('abort leaves nothing: no object, no open upload, and its part URLs stop working', async () => {
      const key = newKey('multipart-abort');
      const part = randomBytes(5 * MiB);
      const uploadId = await store.createMultipartUpload(key);
      const etags = await putParts(key, uploadId, [part]);
      const later = await presignPart(key, uploadId, 2, part);
      await store.abortMultipartUpload(key, uploadId);

      expect(await openUploads(key)).toEqual([]);
      await expectNothingStored(key);
      expectClientError((await put(later.url, later.headers, part)).status);
      await expect(store.completeMultipartUpload(key, uploadId, etags)).rejects.toMatchObject({ code: 'MULTIPART_UPLOAD_NOT_FOUND' });
      await expect(store.listParts(key, uploadId)).rejects.toMatchObject({ code: 'MULTIPART_UPLOAD_NOT_FOUND' });
      await expectNothingStored(key);
      // aborting again, or an upload that never was, is not an error
      await store.abortMultipartUpload(key, uploadId);
    });

    it('listMultipartUploads sees open uploads under a prefix, and only those', async () => {
      const prefix = `${run}open/`;
      const a = `${prefix}a.mp4`;
      const b = `${prefix}sub/b.mp4`;
      const outside = `${run}closed/c.mp4`;
      const idA = await store.createMultipartUpload(a);
      const idB = await store.createMultipartUpload(b);
      const idOutside = await store.createMultipartUpload(outside);
      const listed = await store.listMultipartUploads(prefix);
      expect(listed.map((u) => [u.key, u.uploadId])).toEqual([
        [a, idA],
        [b, idB],
      ]);
      for (const u of listed) expect(Math.abs(u.initiatedAt - Date.now())).toBeLessThan(10 * 60_000);
      expect((await store.listMultipartUploads(`${prefix}sub/`)).map((u) => u.uploadId)).toEqual([idB]);
      await store.abortMultipartUpload(a, idA);
      await store.abortMultipartUpload(b, idB);
      await store.abortMultipartUpload(outside, idOutside);
      expect(await store.listMultipartUploads(prefix)).toEqual([]);
    });

    it('list stamps each object with when it was written, and a rewrite moves the stamp (the orphan sweep ages objects by it)', async () => {
      const key = newKey('aged');
      const before = Date.now();
      const body = randomBytes(20);
      const p = await presignPut(key, body);
      expect((await put(p.url, p.headers, body)).status).toBe(200);
      const [first] = (await store.list(key)).objects;
      expect(first?.key).toBe(key);
      // the store's own clock: S3 counts whole seconds, a server may drift a little
      expect(Math.abs(first!.lastModified - before)).toBeLessThan(10 * 60_000);
      await new Promise((r) => setTimeout(r, 1100));
      const again = await presignPut(key, body);
      expect((await put(again.url, again.headers, body)).status).toBe(200);
      const [second] = (await store.list(key)).objects;
      expect(second!.lastModified).toBeGreaterThan(first!.lastModified);
    });
  });
}
