/**
 * HTTP hardening: security headers on every answer, CORS only for listed
 * origins, and a body limit on every route, sized from the largest legitimate
 * body (measured here), except the object store's streamed PUT.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DELETE_CLIPS_BODY_BYTES, SMALL_JSON_BODY_BYTES } from '../../cloud/http/api-routes.js';
import { registeredRoutes } from '../../cloud/http/hardening.js';
import { ConfigError, loadCloudConfig } from '../../cloud/config.js';
import { MAX_CLIP_BYTES } from '../../shared/contracts/uploads.js';
import { newClipId } from '../../shared/ids.js';
import { MIN_PART_BYTES, partEtag } from '../../shared/multipart.js';
import { expectCatalogueError } from '../helpers/api-checks.js';
import { api, claimDevice, randomSerial, registerAndLogin, setPlan, startTestCloud, type ClaimedDevice, type TestAccount, type TestCloud } from '../helpers/cloud.js';
import { uploadClip } from '../helpers/upload.js';

const APP = 'https://app.example.com';

let cloud: TestCloud;
let acct: TestAccount;
let device: ClaimedDevice;

beforeAll(async () => {
  cloud = await startTestCloud({ corsOrigins: [APP] });
  acct = await registerAndLogin(cloud.url);
  await setPlan(cloud.url, acct.token, 'premium');
  device = await claimDevice(cloud.url, acct.token, randomSerial('HARD'));
});

afterAll(async () => {
  await cloud?.close();
});

function limitOf(method: string, url: string): number | undefined {
  const route = registeredRoutes(cloud.app).find((r) => r.method === method && r.url === url);
  if (!route) throw new Error(`no route ${method} ${url}`);
  return route.bodyLimit;
}

describe('security headers', () => {
  it('every API answer, errors included, carries them; no HSTS over plain HTTP; nothing is cached', async () => {
    for (const res of [
      await api(cloud.url, 'GET', '/v1/plans'),
      await api(cloud.url, 'GET', '/v1/account', { token: acct.token }),
      await api(cloud.url, 'GET', '/v1/clips/not-a-ulid', { token: acct.token }),
      await api(cloud.url, 'GET', '/v1/nothing-here'),
    ]) {
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('cross-origin-resource-policy')).toBe('same-origin');
      expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('strict-transport-security')).toBeNull();
      expect(res.headers.get('content-security-policy')).toBeNull();
      expect(res.headers.get('x-powered-by')).toBeNull();
    }
  });

  it('a signed clip URL may be embedded from another origin (CORP cross-origin), and keeps its own cache rule', async () => {
    const body = randomBytes(4096);
    const up = await uploadClip(cloud.url, device, { body });
    expect(up.complete?.status).toBe(200);
    const view = await api(cloud.url, 'GET', `/v1/clips/${up.clipId}/view`, { token: acct.token });
    const res = await fetch(view.body.url);
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
    expect(res.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('cache-control')).toBe('private, max-age=0');
  });

  it('sends HSTS when the public URL is https (behind a TLS terminator)', async () => {
    const behind = await startTestCloud({ publicUrl: 'https://cams.example.com' });
    try {
      const res = await fetch(`http://127.0.0.1:${(behind.app.server.address() as { port: number }).port}/v1/plans`);
      expect(res.headers.get('strict-transport-security')).toMatch(/^max-age=31536000$/);
    } finally {
      await behind.close();
    }
  });
});

describe('CORS', () => {
  it('answers a preflight from a listed origin, and gives nothing to any other origin', async () => {
    const pre = await fetch(`${cloud.url}/v1/clips`, {
      method: 'OPTIONS',
      headers: { origin: APP, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe(APP);
    expect(pre.headers.get('access-control-allow-headers')).toMatch(/authorization/);
    expect(pre.headers.get('access-control-allow-credentials')).toBeNull();
    const get = await api(cloud.url, 'GET', '/v1/account', { token: acct.token, headers: { origin: APP } });
    expect(get.headers.get('access-control-allow-origin')).toBe(APP);

    const evil = await api(cloud.url, 'GET', '/v1/account', { token: acct.token, headers: { origin: 'https://evil.example.com' } });
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    const evilPre = await fetch(`${cloud.url}/v1/clips`, { method: 'OPTIONS', headers: { origin: 'https://evil.example.com', 'access-control-request-method': 'DELETE' } });
    expect(evilPre.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('sends no CORS headers at all when no origin is listed (the default)', async () => {
    const plain = await startTestCloud();
    try {
      const get = await api(plain.url, 'GET', '/v1/plans', { headers: { origin: APP } });
      expect(get.status).toBe(200);
      expect([...get.headers.keys()].filter((h) => h.startsWith('access-control-'))).toEqual([]);
      const pre = await api(plain.url, 'OPTIONS', '/v1/plans', { headers: { origin: APP, 'access-control-request-method': 'GET' } });
      expectCatalogueError(pre, 'ROUTE_NOT_FOUND');
      expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await plain.close();
    }
  });

  it.each([
    [{ CAMVAULT_CORS_ORIGINS: '*' }, /^invalid config: corsOrigins\.0: '\*' is not allowed/],
    [{ CAMVAULT_CORS_ORIGINS: `${APP}, *` }, /corsOrigins\.1: '\*' is not allowed/],
    [{ CAMVAULT_CORS_ORIGINS: `${APP}/path` }, /corsOrigins\.0: each origin must be scheme:\/\/host\[:port\]/],
    [{ CAMVAULT_CORS_ORIGINS: 'null' }, /corsOrigins\.0: each origin must be/],
  ])('refuses %o at load with one line', (env, message) => {
    let err: unknown;
    try {
      loadCloudConfig({ env });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });

  it('reads a comma-separated allowlist from CAMVAULT_CORS_ORIGINS', () => {
    expect(loadCloudConfig({ env: { CAMVAULT_CORS_ORIGINS: `${APP}, http://localhost:5173` } }).corsOrigins).toEqual([APP, 'http://localhost:5173']);
    expect(loadCloudConfig({ env: {} }).corsOrigins).toEqual([]);
  });
});

/** The largest presign body the agent sends: a 5 GiB clip (the API's maximum) in 5 MiB parts, every field at its longest. */
function largestPresign(): { body: Record<string, unknown>; json: string } {
  const size = MAX_CLIP_BYTES;
  const parts = Math.ceil(size / MIN_PART_BYTES);
  const md5 = randomBytes(16).toString('base64');
  const body = {
    clipId: newClipId(),
    start: new Date().toISOString(),
    durationMs: 24 * 3600 * 1000,
    size,
    md5,
    sha256: randomBytes(32).toString('hex'),
    kind: 'continuous',
    multipart: { partBytes: MIN_PART_BYTES, parts: Array.from({ length: parts }, () => ({ md5 })) },
  };
  return { body, json: JSON.stringify(body) };
}

describe('body limits', () => {
  it('every route has one, except the streamed object PUT; small JSON routes get a few KiB', () => {
    const routes = registeredRoutes(cloud.app);
    for (const r of routes) {
      if (r.method === 'PUT' && r.url === '/objects/*') {
        expect(r.bodyLimit, 'the object store streams bodies: no JSON limit').toBeUndefined();
        continue;
      }
      expect(r.bodyLimit, `${r.method} ${r.url}`).toBeTypeOf('number');
    }
    expect(limitOf('POST', '/v1/accounts')).toBe(SMALL_JSON_BODY_BYTES);
    expect(limitOf('POST', '/v1/sessions')).toBe(SMALL_JSON_BODY_BYTES);
    expect(limitOf('POST', '/v1/clips/delete')).toBe(DELETE_CLIPS_BODY_BYTES);
    expect(SMALL_JSON_BODY_BYTES).toBeLessThan(cloud.config.bodyLimitBytes);
  });

  it('the largest legitimate bodies fit their routes, with room to spare, and one byte over the limit does not', async () => {
    // presign: measured, ~36 KB for 1024 parts
    const { body, json } = largestPresign();
    const presignLimit = limitOf('POST', '/v1/device/uploads') as number;
    expect(json.length).toBeGreaterThan(30_000);
    expect(json.length * 2).toBeLessThan(presignLimit);
    const presigned = await api(cloud.url, 'POST', '/v1/device/uploads', { device, body });
    expect(presigned.status, JSON.stringify(presigned.body).slice(0, 200)).toBe(200);
    expect(presigned.body.parts).toHaveLength(1024);

    // complete listing every part's ETag as S3 sends it (quoted): ~68 KB; no part is there, so the store says so
    const parts = (body.multipart as { parts: { md5: string }[] }).parts.map((p, i) => ({ partNumber: i + 1, etag: `"${partEtag(p.md5)}"` }));
    const completeJson = JSON.stringify({ parts });
    expect(completeJson.length * 2).toBeLessThan(limitOf('POST', '/v1/device/uploads/:clipId/complete') as number);
    const completed = await api(cloud.url, 'POST', `/v1/device/uploads/${body.clipId as string}/complete`, { device, body: { parts } });
    expectCatalogueError(completed, 'UPLOAD_OBJECT_MISSING');

    // 1000 clip ids to delete: ~29 KB
    const ids = Array.from({ length: 1000 }, () => newClipId());
    expect(JSON.stringify({ ids }, null, 2).length).toBeLessThan(DELETE_CLIPS_BODY_BYTES);
    const deleted = await api(cloud.url, 'POST', '/v1/clips/delete', { token: acct.token, body: { ids } });
    expect(deleted.status).toBe(200);

    // a registration at its longest, every character JSON-escaped: ~3 KB
    const longest = JSON.stringify({ email: `${'é'.repeat(64)}@${'d'.repeat(180)}.example`, password: '😀'.repeat(128) }).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    expect(longest.length).toBeLessThan(SMALL_JSON_BODY_BYTES);

    // one byte over, on each of these routes
    for (const [url, limit, auth] of [
      ['/v1/device/uploads', presignLimit, { authorization: `Device ${device.serial}:${device.token}` }],
      ['/v1/clips/delete', DELETE_CLIPS_BODY_BYTES, { authorization: `Bearer ${acct.token}` }],
      ['/v1/sessions', SMALL_JSON_BODY_BYTES, {}],
    ] as const) {
      const send = async (bytes: number): Promise<{ status: number; code: string }> => {
        const json = JSON.stringify({ pad: 'x'.repeat(bytes - '{"pad":""}'.length) });
        expect(json.length).toBe(bytes);
        const res = await fetch(cloud.url + url, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: json });
        return { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code };
      };
      // at the limit, the schema refuses it; one byte over, the limit does
      expect(await send(limit), url).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
      expect(await send(limit + 1), url).toEqual({ status: 413, code: 'BODY_TOO_LARGE' });
    }
  });

  it('a clip PUT to the local store is not held to the JSON limit', async () => {
    const body = randomBytes(cloud.config.bodyLimitBytes * 4);
    const up = await uploadClip(cloud.url, device, { body });
    expect(up.put?.status).toBe(200);
    expect(up.complete?.status).toBe(200);
  });
});
