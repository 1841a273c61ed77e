import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registeredRoutes } from '../../cloud/http/hardening.js';
import { errorCatalogue, isErrorCode, type ErrorCode } from '../../shared/errors.js';
import { newClipId } from '../../shared/ids.js';
import { accountPrefix } from '../../shared/keys.js';
import { expectCatalogueError } from '../helpers/api-checks.js';
import {
  api,
  claimDevice,
  randomSerial,
  registerAndLogin,
  setPlan,
  startTestCloud,
  type ApiResponse,
  type ClaimedDevice,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';

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

/**
 * The table over every route: each route the app registered has a row here
 * (or an exemption that says why not), so a new route without one fails.
 * From a row's valid shapes the test makes the bad ones: malformed JSON, a
 * body that is not an object, each field of the wrong type, an unknown field,
 * a body one byte over the route's limit, and traversal and non-ASCII in
 * every serial and id, in bodies, paths and queries. Each must get a 4xx with
 * a catalogue code, create nothing, and leave the server up.
 */
type Auth = 'none' | 'subscriber' | 'device';

interface Row {
  auth: Auth;
  /** a body of the right shape: the bad ones are made from it */
  body?: Record<string, unknown>;
  /** top-level body fields holding a serial or an id (an array: its first element) */
  bodyIds?: string[];
  /** every path parameter, with a valid value; each is attacked in turn */
  params?: Record<string, string>;
  /** query parameters holding a serial, an id or another string the route parses */
  query?: string[];
}

const ULID = '01ARZ3NDEKTSV4RRFFQ69G5FAV';
const MD5 = '1B2M2Y8AsgTpgAmY7PhCfg==';
const SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const BAD_SERIAL = 'BADINPUT0001';
const BAD_EMAIL = 'bad-input@example.com';
const BAD_CLIP = newClipId();

const ROWS: Record<string, Row> = {
  'POST /v1/accounts': { auth: 'none', body: { email: BAD_EMAIL, password: 'long enough password' } },
  'POST /v1/accounts/verify': { auth: 'none', body: { email: BAD_EMAIL, code: '12345678' } },
  'POST /v1/accounts/password-reset': { auth: 'none', body: { email: BAD_EMAIL } },
  'POST /v1/accounts/password-reset/confirm': { auth: 'none', body: { email: BAD_EMAIL, code: '12345678', newPassword: 'long enough password' } },
  'POST /v1/sessions': { auth: 'none', body: { email: BAD_EMAIL, password: 'long enough password' } },
  'PATCH /v1/account': { auth: 'subscriber', body: { currentPassword: 'long enough password', newPassword: 'another long password' } },
  'PUT /v1/account/plan': { auth: 'subscriber', body: { plan: 'standard' } },
  'DELETE /v1/devices/:serial': { auth: 'subscriber', params: { serial: BAD_SERIAL } },
  'POST /v1/devices/:serial/shares': { auth: 'subscriber', params: { serial: BAD_SERIAL }, body: { accountId: ULID, role: 'viewer' }, bodyIds: ['accountId'] },
  'GET /v1/devices/:serial/shares': { auth: 'subscriber', params: { serial: BAD_SERIAL } },
  'DELETE /v1/devices/:serial/shares/:accountId': { auth: 'subscriber', params: { serial: BAD_SERIAL, accountId: ULID } },
  'POST /v1/device/claim': { auth: 'none', body: { serial: BAD_SERIAL, model: 'SIM-1', bindCode: 'ABCDEFGHJK' }, bodyIds: ['serial'] },
  'POST /v1/device/uploads': {
    auth: 'device',
    body: { clipId: BAD_CLIP, start: new Date().toISOString(), durationMs: 10_000, size: 1000, md5: MD5, sha256: SHA, kind: 'event' },
    bodyIds: ['clipId'],
  },
  'POST /v1/device/uploads/:clipId/complete': { auth: 'device', params: { clipId: BAD_CLIP }, body: { parts: [{ partNumber: 1, etag: '"abc"' }] } },
  'GET /v1/clips': { auth: 'subscriber', query: ['serial', 'cursor', 'kind', 'from', 'limit'] },
  'GET /v1/clips/:id': { auth: 'subscriber', params: { id: BAD_CLIP } },
  'GET /v1/clips/:id/view': { auth: 'subscriber', params: { id: BAD_CLIP }, query: ['download'] },
  'GET /v1/clips/:id/download': { auth: 'subscriber', params: { id: BAD_CLIP } },
  'DELETE /v1/clips/:id': { auth: 'subscriber', params: { id: BAD_CLIP } },
  'POST /v1/clips/delete': { auth: 'subscriber', body: { ids: [BAD_CLIP] }, bodyIds: ['ids'] },
  'PUT /v1/account/webhook': { auth: 'subscriber', body: { url: 'https://hooks.example.com/bad-input', secret: 'a-webhook-secret-0123' } },
  // never sent as it is: a bad one must not cancel the account (the check at the end asks it)
  'DELETE /v1/account': { auth: 'subscriber', body: { password: 'long enough password' } },
  'PUT /v1/account/consents': { auth: 'subscriber', body: { experience: false, marketing: false } },
};

/** Routes without a row, and why. */
const EXEMPT: Record<string, string> = {
  'GET /healthz': 'takes no input',
  'GET /docs': 'takes no input',
  'GET /docs/openapi.json': 'takes no input',
  'GET /v1/plans': 'takes no input',
  'GET /v1/account': 'takes no input but the session token (auth is tested in accounts.test.ts)',
  'DELETE /v1/sessions/current': 'takes no input but the session token',
  'DELETE /v1/account/plan': 'takes no input but the session token',
  'POST /v1/devices/bind-codes': 'takes no input but the session token (a body is not read)',
  'GET /v1/devices': 'takes no input but the session token',
  'GET /v1/account/export': 'takes no input but the session token',
  'GET /v1/account/consents': 'takes no input but the session token',
  'PUT /objects/*': 'not JSON: a signed URL; key traversal is tried in "object store keys" below',
  'GET /objects/*': 'not JSON: a signed URL; key traversal is tried in "object store keys" below',
  'HEAD /objects/*': 'not JSON: a signed URL; key traversal is tried in "object store keys" below',
  'OPTIONS *': 'CORS preflight (only with corsOrigins): no input; tested in http-hardening.test.ts',
  'GET /v1/notifications': 'no body, path or query; its Accept and Last-Event-ID headers are tried in notifications.test.ts',
  'DELETE /v1/account/webhook': 'takes no input but the session token',
  'GET /v1/device/config': 'takes no input but the device credential',
};

/** What goes into a path segment (sent byte for byte, not normalized) and the code it must get. */
const SEGMENT_ATTACKS: [string, string, ErrorCode][] = [
  ['a dot-dot segment', '..', 'VALIDATION_FAILED'],
  ['an encoded traversal', '..%2F..%2Fetc%2Fpasswd', 'VALIDATION_FAILED'],
  ['an encoded dot-dot-slash', '%2e%2e%2f', 'VALIDATION_FAILED'],
  ['encoded dots', '%2E%2E', 'VALIDATION_FAILED'],
  ['a double-encoded slash', '..%252f..%252fetc', 'VALIDATION_FAILED'],
  ['an encoded backslash', '..%5C..%5Cwin', 'VALIDATION_FAILED'],
  ['a non-ASCII letter', 'S%C3%89RIAL0001', 'VALIDATION_FAILED'],
  ['an emoji', 'CAM%F0%9F%93%B70001', 'VALIDATION_FAILED'],
  ['a NUL', 'CAM%000001', 'VALIDATION_FAILED'],
  ['a malformed escape', 'CAM%E0%A4%A', 'BAD_REQUEST'],
  ['an overlong value', 'A'.repeat(1000), 'VALIDATION_FAILED'],
  ['a value over the router\'s parameter limit', 'A'.repeat(1200), 'URI_TOO_LONG'],
];

/** What goes into a serial or id in a body or a query value. */
const VALUE_ATTACKS: [string, string][] = [
  ['a traversal', '../../etc/passwd'],
  ['an encoded traversal', '..%2F..%2F'],
  ['a lower-case value', 'badinput0001'],
  ['a non-ASCII letter', 'SÉRIAL0001'],
  ['an emoji', 'CAM📷0001'],
  ['a NUL', 'CAM\u00000001'],
  ['a newline', 'CAM0001\nX'],
  ['an overlong value', 'A'.repeat(300)],
];

function wrongType(value: unknown): unknown {
  if (typeof value === 'string') return 12345;
  if (typeof value === 'number') return 'twelve';
  if (typeof value === 'boolean') return 'yes';
  if (Array.isArray(value)) return { length: 1 };
  if (value !== null && typeof value === 'object') return 'an object';
  return 1;
}

interface RawAnswer {
  status: number;
  headers: string;
  body: { error?: { code?: string; message?: string; details?: { path: string; message: string }[] } } | undefined;
  text: string;
}

/**
 * One request with the path sent exactly as given: fetch and new URL() would
 * resolve '..' and %2e%2e before the server saw them.
 */
function rawCall(base: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<RawAnswer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: u.hostname, port: Number(u.port) });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      let parsed: RawAnswer['body'];
      try {
        parsed = JSON.parse(text.slice(split + 4)) as RawAnswer['body'];
      } catch {
        parsed = undefined;
      }
      resolve({ status, headers: text.slice(0, split), body: parsed, text });
    });
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body, 'utf8');
    const head = [`${method} ${path} HTTP/1.1`, `Host: ${u.host}`, 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    if (body !== undefined) head.push('Content-Type: application/json', `Content-Length: ${payload.length}`);
    // write, not end: a half-closed socket makes the server drop an answer still being worked out (Connection: close ends it)
    socket.write(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), payload]));
  });
}

function expectRefused(res: RawAnswer, code: ErrorCode, what: string): void {
  const got = res.body?.error?.code;
  expect(isErrorCode(got), `${what}: a catalogue code, got ${res.status} ${res.text.slice(0, 300)}`).toBe(true);
  expect(got, what).toBe(code);
  expect(res.status, what).toBe(errorCatalogue[code].status);
  expect(res.text, what).not.toMatch(/\bat .+\.(ts|js):\d+|"stack"/);
}

describe('bad input on every route: the table', () => {
  let cloud: TestCloud;
  let acct: TestAccount;
  let device: ClaimedDevice;

  beforeAll(async () => {
    cloud = await startTestCloud();
    acct = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, acct.token, 'standard');
    device = await claimDevice(cloud.url, acct.token, randomSerial('BADIN'));
  });
  afterAll(async () => {
    await cloud?.close();
  });

  function authHeaders(auth: Auth): Record<string, string> {
    if (auth === 'subscriber') return { authorization: `Bearer ${acct.token}` };
    if (auth === 'device') return { authorization: `Device ${device.serial}:${device.token}` };
    return {};
  }

  function pathOf(url: string, params: Record<string, string> = {}): string {
    return url.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => params[name] ?? '');
  }

  it('has a row or an exemption for every route the app registered, and no row for a route that is gone', () => {
    const routes = registeredRoutes(cloud.app);
    const keys = routes
      .map((r) => `${r.method} ${r.url}`)
      // fastify derives a HEAD from each GET: the GET's row covers it
      .filter((k) => !(k.startsWith('HEAD ') && !(k in EXEMPT) && routes.some((g) => `GET ${g.url}` === k.replace(/^HEAD /, 'GET '))));
    expect(keys.length).toBeGreaterThan(20);
    expect(keys.filter((k) => !(k in ROWS) && !(k in EXEMPT)), 'routes without a bad-input row').toEqual([]);
    expect(Object.keys(ROWS).filter((k) => !keys.includes(k)), 'rows for routes that are gone').toEqual([]);
  });

  it.each(Object.entries(ROWS).filter(([, row]) => row.body !== undefined))('%s: bodies', async (key, row) => {
    const [method, url] = key.split(' ') as [string, string];
    const path = pathOf(url, row.params);
    const headers = authHeaders(row.auth);
    const body = row.body as Record<string, unknown>;
    const send = (text: string): Promise<RawAnswer> => rawCall(cloud.url, method, path, headers, text);

    expectRefused(await send('{"a": '), 'BAD_REQUEST', 'malformed JSON');
    expectRefused(await send('{"a": 1} trailing'), 'BAD_REQUEST', 'JSON with trailing garbage');
    expectRefused(await send('[1, 2]'), 'VALIDATION_FAILED', 'an array');
    expectRefused(await send('"text"'), 'VALIDATION_FAILED', 'a string');
    for (const field of Object.keys(body)) {
      const res = await send(JSON.stringify({ ...body, [field]: wrongType(body[field]) }));
      expectRefused(res, 'VALIDATION_FAILED', `${field} of the wrong type`);
      expect(JSON.stringify(res.body?.error?.details ?? []), `${field} of the wrong type`).toMatch(/"path":"body/);
    }
    const unknown = await send(JSON.stringify({ ...body, isAdmin: true }));
    expectRefused(unknown, 'VALIDATION_FAILED', 'an unknown field');
    expect(JSON.stringify(unknown.body?.error?.details), 'an unknown field').toMatch(/Unrecognized key|Invalid input/);
    for (const field of row.bodyIds ?? []) {
      for (const [name, value] of VALUE_ATTACKS) {
        const attacked = { ...body, [field]: Array.isArray(body[field]) ? [value] : value };
        expectRefused(await send(JSON.stringify(attacked)), 'VALIDATION_FAILED', `${name} in ${field}`);
      }
    }
    const limit = registeredRoutes(cloud.app).find((r) => r.method === method && r.url === url)?.bodyLimit;
    expect(limit, 'the route has a body limit').toBeTypeOf('number');
    const huge = JSON.stringify({ ...body, pad: 'x'.repeat(limit as number) });
    expectRefused(await send(huge), 'BODY_TOO_LARGE', 'a body over the limit');
  });

  it.each(Object.entries(ROWS).filter(([, row]) => row.params !== undefined))('%s: path parameters', async (key, row) => {
    const [method, url] = key.split(' ') as [string, string];
    const params = row.params as Record<string, string>;
    const body = row.body !== undefined ? JSON.stringify(row.body) : undefined;
    for (const name of Object.keys(params)) {
      for (const [what, segment, code] of SEGMENT_ATTACKS) {
        const path = pathOf(url, { ...params, [name]: segment });
        expectRefused(await rawCall(cloud.url, method, path, authHeaders(row.auth), body), code, `${what} in :${name} (${path.slice(0, 80)})`);
      }
    }
  });

  it.each(Object.entries(ROWS).filter(([, row]) => row.query !== undefined))('%s: query values', async (key, row) => {
    const [method, url] = key.split(' ') as [string, string];
    const base = pathOf(url, row.params);
    for (const name of row.query ?? []) {
      for (const [what, value] of [...VALUE_ATTACKS, ['a raw encoded traversal', '%2e%2e%2f'] as [string, string]]) {
        const query = what === 'a raw encoded traversal' ? `${name}=${value}` : new URLSearchParams({ [name]: value }).toString();
        expectRefused(await rawCall(cloud.url, method, `${base}?${query}`, authHeaders(row.auth)), 'VALIDATION_FAILED', `${what} in ?${name}`);
      }
    }
  });

  it('object store keys: traversal and non-ASCII get a catalogue refusal and write nothing', async () => {
    for (const [what, key] of [
      ['a dot-dot key', '../../etc/passwd'],
      ['an encoded traversal', '..%2F..%2Fetc%2Fpasswd'],
      ['an encoded dot-dot-slash', `accounts/${acct.accountId}/%2e%2e%2f%2e%2e%2fx.mp4`],
      ['a non-ASCII key', `accounts/${acct.accountId}/S%C3%89RIAL.mp4`],
      ['a NUL', `accounts/${acct.accountId}/x%00.mp4`],
    ]) {
      for (const method of ['PUT', 'GET']) {
        const res = await rawCall(cloud.url, method, `/objects/${key}?X-Camvault-Expires=9999999999&X-Camvault-Signature=00`, { 'content-md5': MD5 }, method === 'PUT' ? '' : undefined);
        expect(res.status, `${what} ${method}: ${res.text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
        expect(res.status, `${what} ${method}`).toBeLessThan(500);
        expect(isErrorCode(res.body?.error?.code), `${what} ${method}: ${res.text.slice(0, 200)}`).toBe(true);
      }
    }
  });

  it('afterwards, nothing was created and the server is up', async () => {
    expect(await cloud.store.getAccountByEmail(BAD_EMAIL)).toBeNull();
    expect(await cloud.store.getDevice(BAD_SERIAL)).toBeNull();
    expect(await cloud.store.getUpload(BAD_CLIP)).toBeNull();
    expect(await cloud.store.getClip(BAD_CLIP)).toBeNull();
    expect((await cloud.store.listDevices(acct.accountId)).map((d) => d.serial)).toEqual([device.serial]);
    expect((await cloud.objects.list(accountPrefix(acct.accountId), null)).objects).toEqual([]);
    const account = await api(cloud.url, 'GET', '/v1/account', { token: acct.token });
    expect(account.body).toMatchObject({ accountId: acct.accountId, plan: 'standard' });
    expect((await api(cloud.url, 'GET', '/healthz')).status).toBe(200);
  });
});
