import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCatalogueError } from '../helpers/api-checks.js';
import { api, registerAndLogin, startTestCloud, type ApiResponse, type TestAccount, type TestCloud } from '../helpers/cloud.js';

/** a raw request, for bodies api() would not send */
async function raw(base: string, method: string, path: string, body: string | undefined, headers: Record<string, string>): Promise<ApiResponse> {
  const res = await fetch(base + path, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // keep the text: the assertion below will say what came back
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

describe('bad input gets a 4xx with a stable code and no stack', () => {
  let cloud: TestCloud;
  let acct: TestAccount;
  const SECRET = 'hunter2-hunter2-secret';

  beforeAll(async () => {
    cloud = await startTestCloud();
    acct = await registerAndLogin(cloud.url);
  });
  afterAll(async () => {
    await cloud?.close();
  });

  const json = { 'content-type': 'application/json' };

  it.each([
    ['bad JSON', 'POST', '/v1/accounts', '{"email": "a@b.co", ', json, 400, 'BAD_REQUEST'],
    ['a JSON array', 'POST', '/v1/accounts', '[1,2]', json, 400, 'VALIDATION_FAILED'],
    ['a JSON string', 'POST', '/v1/sessions', '"x"', json, 400, 'VALIDATION_FAILED'],
    ['no body', 'POST', '/v1/accounts', undefined, {}, 400, 'VALIDATION_FAILED'],
    ['an empty JSON body', 'POST', '/v1/accounts', '', json, 400, 'VALIDATION_FAILED'],
    ['wrong types', 'POST', '/v1/accounts', JSON.stringify({ email: 42, password: [SECRET] }), json, 400, 'VALIDATION_FAILED'],
    ['an extra field', 'POST', '/v1/accounts', JSON.stringify({ email: 'c@d.co', password: SECRET, admin: true }), json, 400, 'VALIDATION_FAILED'],
    ['a short password', 'POST', '/v1/accounts', JSON.stringify({ email: 'c@d.co', password: 'short' }), json, 400, 'VALIDATION_FAILED'],
    ['a prototype-poisoning body', 'POST', '/v1/accounts', '{"__proto__": {"admin": true}, "email": "e@f.co", "password": "x"}', json, 400, 'BAD_REQUEST'],
    ['a huge body', 'POST', '/v1/accounts', JSON.stringify({ email: 'a@b.co', password: 'x'.repeat(100 * 1024) }), json, 413, 'BODY_TOO_LARGE'],
    ['a text body', 'POST', '/v1/accounts', 'email=a@b.co', { 'content-type': 'text/plain' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['a form body', 'POST', '/v1/sessions', 'email=a', { 'content-type': 'application/x-www-form-urlencoded' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['an unknown route', 'GET', '/v1/nothing-here', undefined, {}, 404, 'ROUTE_NOT_FOUND'],
    ['a known path with the wrong method', 'PATCH', '/v1/plans', undefined, {}, 404, 'ROUTE_NOT_FOUND'],
    ['a bad serial in a claim', 'POST', '/v1/device/claim', JSON.stringify({ serial: 'abc/../x', model: 'M', bindCode: '0123456789' }), json, 400, 'VALIDATION_FAILED'],
    ['a bad bind code in a claim', 'POST', '/v1/device/claim', JSON.stringify({ serial: 'CAM00000001', model: 'M', bindCode: 'ILOU' }), json, 400, 'VALIDATION_FAILED'],
    ['a garbage device credential', 'POST', '/v1/device/uploads', '{}', { ...json, authorization: 'Device ../etc:x' }, 401, 'DEVICE_UNAUTHENTICATED'],
    ['a device credential without a token', 'POST', '/v1/device/uploads', '{}', { ...json, authorization: 'Device CAM00000001' }, 401, 'DEVICE_UNAUTHENTICATED'],
    ['an unknown device', 'POST', '/v1/device/uploads', '{}', { ...json, authorization: `Device CAM00000001:${'A'.repeat(43)}` }, 401, 'DEVICE_UNAUTHENTICATED'],
    ['a garbage clip id in complete', 'POST', '/v1/device/uploads/not-a-ulid/complete', undefined, { authorization: `Device CAM00000001:${'A'.repeat(43)}` }, 401, 'DEVICE_UNAUTHENTICATED'],
  ] as const)('%s', async (_name, method, path, body, headers, status, code) => {
    const res = await raw(cloud.url, method, path, body, headers);
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    expectCatalogueError(res, code);
    expect(JSON.stringify(res.body)).not.toContain(SECRET);
  });

  it('validation details name the fields, never the values sent', async () => {
    const res = await api(cloud.url, 'POST', '/v1/accounts', { body: { email: 'not-an-email', password: 7, extra: SECRET } });
    expectCatalogueError(res, 'VALIDATION_FAILED');
    const paths = (res.body.error.details as { path: string }[]).map((d) => d.path).sort();
    expect(paths).toEqual(['body', 'body.email', 'body.password']);
    expect(JSON.stringify(res.body)).not.toMatch(/not-an-email|hunter2/);
    const kind = await api(cloud.url, 'GET', `/v1/clips?kind=${SECRET}`, { token: acct.token });
    expectCatalogueError(kind, 'VALIDATION_FAILED');
    expect(JSON.stringify(kind.body)).not.toContain(SECRET);
  });

  it.each([
    ['a garbage clip id', '/v1/clips/not-a-clip-id'],
    ['a lower-case clip id', '/v1/clips/01arz3ndektsv4rrffq69g5fav'],
    ['a garbage clip id to view', '/v1/clips/..%2F..%2Fetc/view'],
    ['a zero limit', '/v1/clips?limit=0'],
    ['a limit that is not a number', '/v1/clips?limit=ten'],
    ['a limit over the maximum', '/v1/clips?limit=100000'],
    ['an unknown query parameter', '/v1/clips?owner=someone'],
    ['a time that is not ISO 8601', '/v1/clips?from=yesterday'],
    ['a repeated parameter', '/v1/clips?serial=CAM00000001&serial=CAM00000002'],
    ['a bad serial filter', '/v1/clips?serial=cam-1'],
    ['a forged cursor', `/v1/clips?cursor=${Buffer.from('[1,"x"]').toString('base64url')}`],
    ['a garbage cursor', '/v1/clips?cursor=!!!'],
    ['a bad download flag', '/v1/clips/01ARZ3NDEKTSV4RRFFQ69G5FAV/view?download=yes'],
  ])('%s is refused with VALIDATION_FAILED', async (_name, path) => {
    expectCatalogueError(await api(cloud.url, 'GET', path, { token: acct.token }), 'VALIDATION_FAILED');
  });

  it('a bad serial to unbind and a bad delete request are refused with VALIDATION_FAILED', async () => {
    expectCatalogueError(await api(cloud.url, 'DELETE', '/v1/devices/not_a_serial', { token: acct.token }), 'VALIDATION_FAILED');
    for (const body of [{}, { ids: [] }, { ids: ['x'] }, { serial: 'CAM00000001' }, { ids: ['01ARZ3NDEKTSV4RRFFQ69G5FAV'], serial: 'CAM00000001' }]) {
      expectCatalogueError(await api(cloud.url, 'POST', '/v1/clips/delete', { token: acct.token, body }), 'VALIDATION_FAILED');
    }
  });

  it('a malformed HTTP request gets a catalogue error from the parser', async () => {
    const { rawRequest } = await import('../helpers/raw-http.js');
    const res = await rawRequest(cloud.url + '/v1/plans', {
      method: 'GET',
      headers: { 'Content-Length': '1', 'Transfer-Encoding': 'chunked' },
      body: Buffer.from('0\r\n\r\n'),
    });
    expect(res.status).toBe(400);
    const body = JSON.parse(res.text.slice(res.text.indexOf('\r\n\r\n') + 4));
    expect(body.error.code).toBe('BAD_REQUEST');
  });
});
