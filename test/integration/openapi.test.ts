/**
 * GET /docs is generated from the schemas the routes validate with, and stays
 * so: every route fastify registered must be documented (or listed as not
 * part of the API, with the reason), every documented route must exist, and
 * for a sample of routes the document's JSON Schema and the API accept and
 * refuse the same inputs.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_ROUTES, routeKey, UNDOCUMENTED_ROUTES } from '../../cloud/http/api-routes.js';
import { registeredRoutes } from '../../cloud/http/hardening.js';
import { openApiPath, type JsonSchema, type OpenApiDocument, type Operation } from '../../cloud/openapi.js';
import { newClipId } from '../../shared/ids.js';
import { expectCatalogueError } from '../helpers/api-checks.js';
import { api, claimDevice, randomSerial, registerAndLogin, setPlan, startTestCloud, type ApiOptions, type ClaimedDevice, type TestAccount, type TestCloud } from '../helpers/cloud.js';

let cloud: TestCloud;
let acct: TestAccount;
let device: ClaimedDevice;
let doc: OpenApiDocument;

beforeAll(async () => {
  // with an origin listed, so the CORS preflight route exists too
  cloud = await startTestCloud({ corsOrigins: ['https://app.example.com'] });
  acct = await registerAndLogin(cloud.url);
  await setPlan(cloud.url, acct.token, 'standard');
  device = await claimDevice(cloud.url, acct.token, randomSerial('DOCS'));
  const res = await api(cloud.url, 'GET', '/docs');
  expect(res.status).toBe(200);
  doc = res.body as OpenApiDocument;
});

afterAll(async () => {
  await cloud?.close();
});

function operation(method: string, path: string): Operation {
  const op = doc.paths[openApiPath(path)]?.[method.toLowerCase()];
  if (!op) throw new Error(`/docs has no ${method} ${path}`);
  return op;
}

describe('GET /docs', () => {
  it('documents every route the app registered, and only those', () => {
    const registered = registeredRoutes(cloud.app);
    expect(registered.length).toBeGreaterThan(20);
    const documented = new Set(API_ROUTES.map((r) => routeKey(r.method, r.path)));
    const missing: string[] = [];
    for (const r of registered) {
      const key = routeKey(r.method, r.url);
      if (documented.has(key) || key in UNDOCUMENTED_ROUTES) continue;
      // fastify derives a HEAD from each GET
      if (r.method === 'HEAD' && documented.has(routeKey('GET', r.url))) continue;
      missing.push(key);
    }
    expect(missing, 'routes without an entry in cloud/http/api-routes.ts').toEqual([]);
    const keys = new Set(registered.map((r) => routeKey(r.method, r.url)));
    expect(
      [...documented].filter((k) => !keys.has(k)),
      'documented routes the app does not serve',
    ).toEqual([]);
    for (const route of API_ROUTES) expect(operation(route.method, route.path).summary).toBe(route.summary);
  });

  it('is an OpenAPI 3.1 document: path parameters declared, operation ids unique, every $ref resolves', async () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.servers).toEqual([{ url: cloud.url }]);
    const ids = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(ops)) {
        expect(ids.has(op.operationId), `${op.operationId} is unique`).toBe(false);
        ids.add(op.operationId);
        expect((op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name).sort(), `${method} ${path}`).toEqual([...templated].sort());
        expect(Object.keys(op.responses).some((s) => /^[23]\d\d$/.test(s)), `${method} ${path} has a success answer`).toBe(true);
      }
    }
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1] as string);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) expect(doc.components.schemas[ref], ref).toBeDefined();
    // the catalogue's codes, for clients to branch on
    expect(JSON.stringify(doc.components.schemas.Error)).toContain('VALIDATION_FAILED');
    // the same document under the file name tools look for
    expect((await api(cloud.url, 'GET', '/docs/openapi.json')).body).toEqual(doc);
  });

  it('says who may call each route and what it takes', () => {
    expect(operation('POST', '/v1/device/uploads').security).toEqual([{ device: [] }]);
    expect(operation('GET', '/v1/clips').security).toEqual([{ session: [] }]);
    expect(operation('POST', '/v1/accounts').security).toBeUndefined();
    const claim = operation('POST', '/v1/device/claim').requestBody?.content['application/json'].schema as JsonSchema;
    expect(claim).toMatchObject({ type: 'object', required: ['serial', 'model', 'bindCode'], additionalProperties: false });
    const list = operation('GET', '/v1/clips').parameters ?? [];
    expect(list.map((p) => p.name)).toEqual(['serial', 'from', 'to', 'kind', 'cursor', 'limit']);
    expect(list.every((p) => p.in === 'query' && !p.required)).toBe(true);
    expect(operation('POST', '/v1/device/uploads/:clipId/complete').requestBody?.required).toBe(false);
  });
});

/**
 * The document's schema as a validator: a bare fastify route that validates
 * with it (fastify's own ajv, ajv-formats included), configured to refuse
 * rather than repair (no removed properties, no coercion of bodies).
 */
async function docValidator(part: 'body' | 'params' | 'querystring', schema: JsonSchema): Promise<{ accepts(input: unknown): Promise<boolean>; close(): Promise<void> }> {
  const f: FastifyInstance = Fastify({
    ajv: { customOptions: { removeAdditional: false, coerceTypes: part === 'querystring', useDefaults: false, strict: false } },
  });
  const url = part === 'params' ? '/:v' : '/';
  f.route({ method: part === 'body' ? 'POST' : 'GET', url, schema: { [part]: schema }, handler: async () => ({ ok: true }) });
  await f.ready();
  return {
    async accepts(input: unknown): Promise<boolean> {
      const res =
        part === 'body'
          ? await f.inject({ method: 'POST', url: '/', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(input) })
          : part === 'params'
            ? await f.inject({ method: 'GET', url: `/${encodeURIComponent(String(input))}` })
            : await f.inject({ method: 'GET', url: `/?${new URLSearchParams(input as Record<string, string>).toString()}` });
      return res.statusCode === 200;
    },
    close: () => f.close(),
  };
}

/** The API's verdict: refused as input (400 VALIDATION_FAILED) or taken past validation (any other answer). */
async function apiAccepts(method: string, url: string, opts: ApiOptions): Promise<boolean> {
  const res = await api(cloud.url, method, url, opts);
  if (res.status >= 400) expectCatalogueError(res);
  return !(res.status === 400 && res.body?.error?.code === 'VALIDATION_FAILED');
}

const ULID = '01ARZ3NDEKTSV4RRFFQ69G5FAV';
const MD5 = '1B2M2Y8AsgTpgAmY7PhCfg==';
const SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('the document and the API agree', () => {
  const sub = (): ApiOptions => ({ token: acct.token });
  const dev = (): ApiOptions => ({ device: { serial: device.serial, token: device.token } });
  // a start far outside the accepted window: a presign valid in shape that stops before writing anything
  const presign = { clipId: newClipId(Date.parse('2001-01-01T00:00:00Z')), start: '2001-01-01T00:00:00.000Z', durationMs: 10_000, size: 1000, md5: MD5, sha256: SHA, kind: 'event' };

  const bodies: [string, string, () => ApiOptions, [unknown, boolean][]][] = [
    [
      'POST',
      '/v1/accounts',
      () => ({}),
      [
        [{ email: 'agree-1@example.com', password: 'long enough password' }, true],
        [{ email: 'agree-2@example.com' }, false],
        [{ email: 'not-an-email', password: 'long enough password' }, false],
        [{ email: 'agree-3@example.com', password: 'short' }, false],
        [{ email: 'agree-4@example.com', password: 'long enough password', admin: true }, false],
        [{ email: 42, password: 'long enough password' }, false],
      ],
    ],
    [
      'POST',
      '/v1/device/claim',
      () => ({}),
      [
        [{ serial: 'AGREE0001', model: 'SIM-1', bindCode: 'ABCDEFGHJK' }, true],
        [{ serial: 'agree0001', model: 'SIM-1', bindCode: 'ABCDEFGHJK' }, false],
        [{ serial: 'SÉRIAL001', model: 'SIM-1', bindCode: 'ABCDEFGHJK' }, false],
        [{ serial: 'AGREE0001', model: 'SIM-1', bindCode: 'ILOU000000' }, false],
        [{ serial: 'AGREE0001', model: 'x'.repeat(65), bindCode: 'ABCDEFGHJK' }, false],
        [{ serial: 'AGREE0001', model: 'SIM-1', bindCode: 'ABCDEFGHJK', firmware: '1.0' }, false],
      ],
    ],
    [
      'POST',
      '/v1/device/uploads',
      dev,
      [
        [presign, true],
        [{ ...presign, size: 0 }, false],
        [{ ...presign, md5: 'not-md5' }, false],
        [{ ...presign, kind: 'motion' }, false],
        [{ ...presign, durationMs: 1.5 }, false],
        [{ ...presign, start: 'yesterday' }, false],
        [{ ...presign, multipart: { partBytes: 1024, parts: [{ md5: MD5 }] } }, false],
        [{ ...presign, path: '../../etc/passwd' }, false],
      ],
    ],
    [
      'POST',
      '/v1/clips/delete',
      sub,
      [
        [{ ids: [ULID] }, true],
        [{ serial: 'AGREE0001', from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z' }, true],
        [{}, false],
        [{ ids: [] }, false],
        [{ ids: ['x'] }, false],
        [{ ids: [ULID], serial: 'AGREE0001' }, false],
      ],
    ],
    [
      'PUT',
      '/v1/account/plan',
      sub,
      [
        [{ plan: 'no-such-plan' }, true],
        [{ plan: 'Bad Plan!' }, false],
        [{ plan: 'standard', until: 'forever' }, false],
      ],
    ],
  ];

  it.each(bodies)('%s %s: bodies', async (method, path, auth, cases) => {
    const route = API_ROUTES.find((r) => r.method === method && r.path === path);
    const schema = operation(method, path).requestBody?.content['application/json'].schema;
    expect(route?.body, `${method} ${path} has a body schema`).toBeDefined();
    const v = await docValidator('body', schema as JsonSchema);
    try {
      for (const [body, valid] of cases) {
        expect(await v.accepts(body), `the document on ${JSON.stringify(body)}`).toBe(valid);
        expect(await apiAccepts(method, path, { ...auth(), body }), `the API on ${JSON.stringify(body)}`).toBe(valid);
      }
    } finally {
      await v.close();
    }
  });

  const params: [string, string, string, () => ApiOptions, [string, boolean][]][] = [
    ['DELETE', '/v1/devices/:serial', 'serial', sub, [['NOSUCH0001', true], ['abc', false], ['SÉRIAL0001', false], ['nosuch0001', false]]],
    ['GET', '/v1/clips/:id', 'id', sub, [[ULID, true], ['not-a-ulid', false], [ULID.toLowerCase(), false], [`${ULID}\u0000`, false]]],
    ['POST', '/v1/device/uploads/:clipId/complete', 'clipId', dev, [[ULID, true], ['...', false], ['📷', false], ['01ARZ3NDEKTSV4RRFFQ69G5FA%2F', false]]],
  ];

  it.each(params)('%s %s: path parameter', async (method, path, name, auth, cases) => {
    const p = operation(method, path).parameters?.find((x) => x.name === name && x.in === 'path');
    expect(p, `${name} is documented`).toBeDefined();
    const v = await docValidator('params', { type: 'object', properties: { v: p?.schema ?? {} }, required: ['v'] });
    try {
      for (const [value, valid] of cases) {
        expect(await v.accepts(value), `the document on ${JSON.stringify(value)}`).toBe(valid);
        expect(await apiAccepts(method, path.replace(`:${name}`, encodeURIComponent(value)), auth()), `the API on ${JSON.stringify(value)}`).toBe(valid);
      }
    } finally {
      await v.close();
    }
  });

  it('GET /v1/clips: query', async () => {
    const ps = operation('GET', '/v1/clips').parameters ?? [];
    const schema = { type: 'object', properties: Object.fromEntries(ps.map((p) => [p.name, p.schema])), additionalProperties: false };
    const v = await docValidator('querystring', schema);
    try {
      for (const [query, valid] of [
        [{ limit: '10', kind: 'event' }, true],
        [{ serial: 'AGREE0001', from: '2026-01-01T00:00:00Z' }, true],
        [{ limit: '0' }, false],
        [{ limit: 'ten' }, false],
        [{ kind: 'motion' }, false],
        [{ from: 'yesterday' }, false],
        [{ serial: '../AGREE0001' }, false],
        [{ owner: 'someone' }, false],
      ] as [Record<string, string>, boolean][]) {
        expect(await v.accepts(query), `the document on ${JSON.stringify(query)}`).toBe(valid);
        expect(await apiAccepts('GET', `/v1/clips?${new URLSearchParams(query).toString()}`, sub()), `the API on ${JSON.stringify(query)}`).toBe(valid);
      }
    } finally {
      await v.close();
    }
  });
});
