/**
 * A real cloud for tests and the demo: SQLite and the local object store in a
 * fresh temp folder, listening on 127.0.0.1 port 0. Plus the few HTTP calls
 * every test needs (sign up, choose a plan, make a bind code, claim a camera).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/log.js';
import { loadCloudConfig, type CloudConfig, type CloudConfigInput } from '../../cloud/config.js';
import type { ObjectStore } from '../../cloud/objects/types.js';
import { startServer } from '../../cloud/server.js';
import type { Store } from '../../cloud/store/types.js';

export interface TestCloudOptions extends CloudConfigInput {
  clock?: Clock;
  logger?: Logger;
  closeGraceMs?: number;
}

export interface TestCloud {
  /** base URL, no trailing slash */
  url: string;
  app: FastifyInstance;
  store: Store;
  objects: ObjectStore;
  config: CloudConfig;
  /** closes the server and deletes its temp folder; idempotent */
  close(): Promise<void>;
}

export async function startTestCloud(overrides: TestCloudOptions = {}): Promise<TestCloud> {
  const { clock, logger, closeGraceMs, ...configOverrides } = overrides;
  const dataDir = await mkdtemp(join(tmpdir(), 'camvault-cloud-'));
  const config = loadCloudConfig({
    env: {},
    overrides: {
      host: '127.0.0.1',
      port: 0,
      dataDir,
      logLevel: (process.env.CAMVAULT_TEST_LOG_LEVEL as CloudConfigInput['logLevel']) ?? 'silent',
      ...configOverrides,
    },
  });
  const server = await startServer(config, { clock, logger, closeGraceMs });
  let closing: Promise<void> | undefined;
  return {
    url: server.url,
    app: server.app,
    store: server.store,
    objects: server.objects,
    config,
    close: () =>
      (closing ??= (async () => {
        await server.close();
        await rm(dataDir, { recursive: true, force: true });
      })()),
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read response bodies loosely
export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface ApiOptions {
  /** a session token: Authorization: Bearer … */
  token?: string;
  /** a device credential: Authorization: Device serial:token */
  device?: { serial: string; token: string };
  /** sent as JSON */
  body?: unknown;
  headers?: Record<string, string>;
}

/** One JSON call; never throws on an HTTP error status. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
export async function api<T = any>(base: string, method: string, path: string, opts: ApiOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body !== undefined) headers['content-type'] ??= 'application/json';
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.device) headers.authorization = `Device ${opts.device.serial}:${opts.device.token}`;
  const res = await fetch(base + path, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, headers: res.headers, body: body as T };
}

async function ok<T>(res: Promise<ApiResponse<T>>, what: string): Promise<T> {
  const r = await res;
  if (r.status >= 400) throw new Error(`${what} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export interface TestAccount {
  accountId: string;
  email: string;
  password: string;
  token: string;
}

/** Registers an account (a random email unless given) and opens a session. */
export async function registerAndLogin(base: string, opts: { email?: string; password?: string } = {}): Promise<TestAccount> {
  const email = opts.email ?? `user-${randomBytes(6).toString('hex')}@example.com`;
  const password = opts.password ?? 'correct horse battery staple';
  const { accountId } = await ok(api(base, 'POST', '/v1/accounts', { body: { email, password } }), 'register');
  const { token } = await ok(api(base, 'POST', '/v1/sessions', { body: { email, password } }), 'login');
  return { accountId, email, password, token };
}

export async function setPlan(base: string, token: string, plan: string): Promise<void> {
  await ok(api(base, 'PUT', '/v1/account/plan', { token, body: { plan } }), 'set plan');
}

export async function createBindCode(base: string, token: string): Promise<string> {
  const { code } = await ok(api(base, 'POST', '/v1/devices/bind-codes', { token }), 'bind code');
  return code as string;
}

export interface ClaimedDevice {
  serial: string;
  token: string;
  mqtt: { username: string; password: string };
}

/** Claims a camera for the account that owns the session: bind code, then claim. */
export async function claimDevice(base: string, token: string, serial: string, model = 'SIM-1'): Promise<ClaimedDevice> {
  const bindCode = await createBindCode(base, token);
  const res = await ok(api(base, 'POST', '/v1/device/claim', { body: { serial, model, bindCode } }), 'claim');
  return { serial, token: res.deviceToken, mqtt: res.mqtt };
}

/** A fresh valid serial: `prefix` then random upper-case hex, 16 characters in all. */
export function randomSerial(prefix = 'TEST'): string {
  return (prefix + randomBytes(8).toString('hex').toUpperCase()).slice(0, 16);
}
