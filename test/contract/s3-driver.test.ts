/**
 * The object store contract against the s3 driver and a real S3: Ceph RGW from
 * scripts/rgw-start.sh (`source /tmp/camvault-rgw/env`), or any S3 the
 * CAMVAULT_S3_* variables name. Without them the suite is skipped and says why.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectStoreError, S3ObjectStore, type S3ObjectStoreOptions } from '../../cloud/objects/s3.js';
import { objectStoreContract } from './object-store.contract.js';

const env = process.env;
const configured = Boolean(env.CAMVAULT_S3_ENDPOINT);

function optionsFromEnv(): S3ObjectStoreOptions {
  return {
    endpoint: env.CAMVAULT_S3_ENDPOINT,
    region: env.CAMVAULT_S3_REGION ?? 'us-east-1',
    bucket: env.CAMVAULT_S3_BUCKET ?? '',
    accessKeyId: env.CAMVAULT_S3_ACCESS_KEY ?? '',
    secretAccessKey: env.CAMVAULT_S3_SECRET_KEY ?? '',
    forcePathStyle: env.CAMVAULT_S3_FORCE_PATH_STYLE === 'true',
  };
}

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('base64');

if (!configured) {
  describe.skip('s3 driver contract (CAMVAULT_S3_* not set: start Ceph RGW with scripts/rgw-start.sh and source its env)', () => {
    it('needs a real S3', () => {});
  });
} else {
  // the SDK warns once per process that its 2027 releases need Node 22; noise in test output
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

  objectStoreContract('s3 driver', async () => {
    const store = new S3ObjectStore(optionsFromEnv());
    await store.check();
    return { store, close: () => store.close() };
  });

  describe('s3 driver specifics', () => {
    let store: S3ObjectStore;
    const run = `s3-specifics/${randomBytes(6).toString('hex')}/`;

    beforeAll(async () => {
      store = new S3ObjectStore(optionsFromEnv());
      await store.check();
    });

    afterAll(async () => {
      if (!store) return;
      let cursor: string | null = null;
      do {
        const page = await store.list(run, cursor);
        await store.deleteMany(page.objects.map((o) => o.key));
        cursor = page.nextCursor;
      } while (cursor !== null);
      await store.close();
    });

    it('signs Content-Length, Content-MD5 and Content-Type into a PUT URL that holds no secret', async () => {
      const opts = optionsFromEnv();
      const body = randomBytes(10);
      const p = await store.presignPut(`${run}signed.mp4`, { contentLength: 10, contentMd5: md5(body), expiresInSec: 60, contentType: 'video/mp4' });
      const url = new URL(p.url);
      expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;content-md5;content-type;host');
      expect(p.headers).toEqual({ 'content-length': '10', 'content-md5': md5(body), 'content-type': 'video/mp4' });
      expect(p.url).not.toContain(opts.secretAccessKey);
      expect(p.expiresAt).toBe(Number(url.searchParams.get('X-Amz-Expires')) * 1000 + Date.parse(
        (url.searchParams.get('X-Amz-Date') ?? '').replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z'),
      ));
    });

    it('signs Content-Length and Content-MD5 into an UploadPart URL, with partNumber and uploadId in the signed query', async () => {
      const key = `${run}part.mp4`;
      const body = randomBytes(10);
      const uploadId = await store.createMultipartUpload(key, { contentType: 'video/mp4' });
      try {
        const p = await store.presignUploadPart(key, uploadId, 7, { contentLength: 10, contentMd5: md5(body), expiresInSec: 60 });
        const url = new URL(p.url);
        expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;content-md5;host');
        expect(url.searchParams.get('partNumber')).toBe('7');
        expect(url.searchParams.get('uploadId')).toBe(uploadId);
        expect(p.headers).toEqual({ 'content-length': '10', 'content-md5': md5(body) });
        expect(p.url).not.toContain(optionsFromEnv().secretAccessKey);
      } finally {
        await store.abortMultipartUpload(key, uploadId);
      }
    });

    it('a view URL serves the clip as video/mp4', async () => {
      const key = `${run}view.mp4`;
      const body = randomBytes(100);
      const p = await store.presignPut(key, { contentLength: 100, contentMd5: md5(body), expiresInSec: 60 });
      expect((await fetch(p.url, { method: 'PUT', headers: { 'content-md5': p.headers['content-md5'] as string, 'content-type': p.headers['content-type'] as string }, body })).status).toBe(200);
      const res = await fetch((await store.presignGet(key, { expiresInSec: 60 })).url);
      expect(res.headers.get('content-type')).toBe('video/mp4');
      await res.arrayBuffer();
    });

    it('deleteMany splits more than 1000 keys into batches', async () => {
      const body = Buffer.from('x');
      const keys = Array.from({ length: 1003 }, (_, i) => `${run}many/${String(i).padStart(4, '0')}`);
      for (let i = 0; i < keys.length; i += 50) {
        await Promise.all(
          keys.slice(i, i + 50).map(async (key) => {
            const p = await store.presignPut(key, { contentLength: 1, contentMd5: md5(body), expiresInSec: 60 });
            const res = await fetch(p.url, { method: 'PUT', headers: { 'content-md5': md5(body), 'content-type': 'application/octet-stream' }, body });
            expect(res.status).toBe(200);
          }),
        );
      }
      const result = await store.deleteMany(keys);
      expect(result.failed).toEqual([]);
      expect(result.deleted).toHaveLength(keys.length);
      expect((await store.list(`${run}many/`)).objects).toEqual([]);
    });

    it('check() turns a bad endpoint, a missing bucket and wrong credentials into one clear line without the secret', async () => {
      const good = optionsFromEnv();
      const cases: [Partial<S3ObjectStoreOptions>, RegExp][] = [
        [{ endpoint: 'http://127.0.0.1:1' }, /cannot reach http:\/\/127\.0\.0\.1:1 .*CAMVAULT_S3_ENDPOINT/],
        [{ bucket: `camvault-missing-${randomBytes(4).toString('hex')}` }, /does not exist/],
        [{ secretAccessKey: 'not-the-secret-0123456789' }, /denied .*CAMVAULT_S3_SECRET_KEY/],
      ];
      for (const [change, pattern] of cases) {
        const s = new S3ObjectStore({ ...good, ...change });
        try {
          const err = await s.check().then(() => null, (e: unknown) => e);
          expect(err).toBeInstanceOf(ObjectStoreError);
          const message = (err as Error).message;
          expect(message).toMatch(pattern);
          expect(message).not.toContain('\n');
          expect(message).not.toContain(good.secretAccessKey);
          expect(message).not.toContain('not-the-secret');
        } finally {
          await s.close();
        }
      }
    });
  });
}
