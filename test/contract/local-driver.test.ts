import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../shared/clock.js';
import { errorHandler, notFoundHandler } from '../../cloud/http/error-handler.js';
import { LocalObjectStore, localObjectRoutes } from '../../cloud/objects/local.js';
import { objectStoreContract, type ContractSubject } from './object-store.contract.js';

/** every file under root, relative, hidden ones included */
async function allFiles(root: string, rel = ''): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(join(root, rel), { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await allFiles(root, path)));
    else out.push(path);
  }
  return out;
}

interface LocalServer extends ContractSubject {
  root: string;
  app: FastifyInstance;
  objects: LocalObjectStore;
}

/** the local driver behind a real fastify server on 127.0.0.1, port 0 */
async function startLocal(): Promise<LocalServer> {
  const dir = await mkdtemp(join(tmpdir(), 'camvault-objects-'));
  const root = join(dir, 'objects');
  const clock = new ManualClock(Date.now());
  let base = '';
  const objects = new LocalObjectStore({ root, secret: randomBytes(32).toString('hex'), publicUrl: () => base, clock });
  await objects.check();
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  await app.register(localObjectRoutes, { store: objects });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    root,
    app,
    objects,
    store: objects,
    advanceClock: (ms) => clock.advance(ms),
    // anything that is not an object or its MD5 sidecar: temp files of an upload
    leftovers: async () => (await allFiles(root)).filter((f) => f.endsWith('.tmp')),
    close: async () => {
      await app.close();
      await objects.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

objectStoreContract('local driver', startLocal);

describe('local driver specifics', () => {
  let s: LocalServer;
  beforeAll(async () => {
    s = await startLocal();
  });
  afterAll(async () => {
    await s?.close();
  });

  const md5 = (b: Buffer) => createHash('md5').update(b).digest('base64');

  it('refuses keys that would escape its folder, before signing anything', async () => {
    for (const key of ['../x.mp4', 'a/../../x.mp4', '/etc/passwd', 'a//b.mp4', '.hidden/x', 'a/.x.md5', '']) {
      await expect(s.objects.presignPut(key, { contentLength: 1, contentMd5: md5(Buffer.from('x')), expiresInSec: 60 })).rejects.toMatchObject({
        code: 'BAD_REQUEST',
      });
      await expect(s.objects.presignGet(key, { expiresInSec: 60 })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    }
  });

  it('answers refusals with the catalogue code and no stack', async () => {
    const body = randomBytes(300);
    const p = await s.objects.presignPut('codes/a.mp4', { contentLength: 300, contentMd5: md5(body), expiresInSec: 60 });
    const cases: [string, RequestInit, string][] = [
      [p.url.replace(/Signature=([0-9a-f])/, (_m, c: string) => `Signature=${c === '0' ? '1' : '0'}`), { method: 'PUT', headers: { 'content-md5': md5(body) }, body }, 'URL_SIGNATURE_INVALID'],
      [p.url, { method: 'PUT', headers: { 'content-md5': md5(body) }, body: body.subarray(1) }, 'CONTENT_LENGTH_MISMATCH'],
      [p.url, { method: 'PUT', headers: { 'content-md5': md5(randomBytes(3)) }, body }, 'CONTENT_MD5_MISMATCH'],
      [p.url, { method: 'PUT', headers: {}, body }, 'CONTENT_MD5_MISMATCH'],
      [p.url, { method: 'PUT', headers: { 'content-md5': md5(body) }, body: randomBytes(300) }, 'CONTENT_MD5_MISMATCH'],
    ];
    for (const [url, init, code] of cases) {
      const res = await fetch(url, init);
      const text = await res.text();
      expect(res.status, code).toBeGreaterThanOrEqual(400);
      expect(JSON.parse(text).error.code).toBe(code);
      expect(text).not.toMatch(/ at |stack/);
    }
    expect(await s.objects.head('codes/a.mp4')).toBeNull();
  });

  it('streams an upload far larger than the JSON body limit', async () => {
    const body = randomBytes(1024 * 1024 + 7);
    const p = await s.objects.presignPut('big/one.mp4', { contentLength: body.length, contentMd5: md5(body), expiresInSec: 60 });
    const res = await fetch(p.url, { method: 'PUT', headers: { 'content-md5': md5(body), 'content-type': 'video/mp4' }, body });
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe(`"${createHash('md5').update(body).digest('hex')}"`);
    expect(await s.objects.head('big/one.mp4')).toEqual({ size: body.length, md5: md5(body), etag: createHash('md5').update(body).digest('hex') });
  });

  it('serves a single byte range, and HEAD without a body', async () => {
    const body = randomBytes(1000);
    const p = await s.objects.presignPut('range/r.mp4', { contentLength: 1000, contentMd5: md5(body), expiresInSec: 60 });
    expect((await fetch(p.url, { method: 'PUT', headers: { 'content-md5': md5(body) }, body })).status).toBe(200);
    const view = await s.objects.presignGet('range/r.mp4', { expiresInSec: 60 });
    const part = await fetch(view.url, { headers: { range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 100-199/1000');
    expect(Buffer.from(await part.arrayBuffer()).equals(body.subarray(100, 200))).toBe(true);
    const tail = await fetch(view.url, { headers: { range: 'bytes=-10' } });
    expect(Buffer.from(await tail.arrayBuffer()).equals(body.subarray(990))).toBe(true);
    const outside = await fetch(view.url, { headers: { range: 'bytes=5000-' } });
    expect(outside.status).toBe(416);
    await outside.arrayBuffer();
    const head = await fetch(view.url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('1000');
    expect(head.headers.get('content-type')).toBe('video/mp4');
  });

  it('head() hashes a file that has no matching MD5 sidecar', async () => {
    const body = Buffer.from('placed by hand');
    await mkdir(join(s.root, 'manual'), { recursive: true });
    await writeFile(join(s.root, 'manual', 'x.mp4'), body);
    expect(await s.objects.head('manual/x.mp4')).toEqual({ size: body.length, md5: md5(body), etag: createHash('md5').update(body).digest('hex') });
  });

  it('keeps multipart uploads outside the key space, and completing or aborting removes their folder', async () => {
    const part = randomBytes(5 * 1024 * 1024);
    const last = randomBytes(100);
    const key = 'mp/done.mp4';
    const done = await s.objects.createMultipartUpload(key);
    expect(done).toMatch(/^[0-9a-f]{32}$/);
    const etags: { partNumber: number; etag: string }[] = [];
    for (const [i, body] of [part, last].entries()) {
      const p = await s.objects.presignUploadPart(key, done, i + 1, { contentLength: body.length, contentMd5: md5(body), expiresInSec: 60 });
      const res = await fetch(p.url, { method: 'PUT', headers: { 'content-md5': md5(body) }, body });
      expect(res.status).toBe(200);
      etags.push({ partNumber: i + 1, etag: res.headers.get('etag') as string });
    }
    // a refused part leaves no temp file behind
    const p3 = await s.objects.presignUploadPart(key, done, 3, { contentLength: 10, contentMd5: md5(Buffer.alloc(10)), expiresInSec: 60 });
    expect((await fetch(p3.url, { method: 'PUT', headers: { 'content-md5': md5(Buffer.alloc(10)) }, body: randomBytes(10) })).status).toBe(400);
    expect((await allFiles(s.root, `.multipart/${done}`)).sort()).toEqual(
      ['part-00001', 'part-00001.md5', 'part-00002', 'part-00002.md5', 'upload.json'].map((f) => `.multipart/${done}/${f}`),
    );
    // the upload's files are not objects
    expect((await s.objects.list('')).objects.map((o) => o.key)).not.toContain(expect.stringContaining('multipart'));
    await s.objects.completeMultipartUpload(key, done, etags);
    expect(await allFiles(s.root, `.multipart/${done}`)).toEqual([]);

    const aborted = await s.objects.createMultipartUpload('mp/aborted.mp4');
    await s.objects.abortMultipartUpload('mp/aborted.mp4', aborted);
    expect(await allFiles(s.root, '.multipart')).toEqual([]);
    // an upload id is checked before it names a folder
    for (const bad of ['../x', 'ABC', `${aborted}/..`]) {
      await expect(s.objects.presignUploadPart(key, bad, 1, { contentLength: 1, contentMd5: md5(Buffer.from('x')), expiresInSec: 60 })).rejects.toMatchObject({
        code: 'BAD_REQUEST',
      });
      await expect(s.objects.listParts(key, bad)).rejects.toMatchObject({ code: 'MULTIPART_UPLOAD_NOT_FOUND' });
    }
  });

  it('deleting the last object of a folder removes the empty folders, and no sidecar stays', async () => {
    const body = randomBytes(10);
    const key = 'prune/a/b/c.mp4';
    const p = await s.objects.presignPut(key, { contentLength: 10, contentMd5: md5(body), expiresInSec: 60 });
    expect((await fetch(p.url, { method: 'PUT', headers: { 'content-md5': md5(body) }, body })).status).toBe(200);
    expect(await allFiles(s.root, 'prune')).toEqual(['a/b/.c.mp4.md5', 'a/b/c.mp4'].map((f) => `prune/${f}`).sort());
    await s.objects.deleteMany([key]);
    expect(await allFiles(s.root, 'prune')).toEqual([]);
    await expect(readdir(join(s.root, 'prune'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
