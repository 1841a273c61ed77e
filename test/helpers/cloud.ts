/**
 * A real cloud for tests and the demo: SQLite in a fresh temp folder (or a fresh
 * PostgreSQL schema: `database`, CAMVAULT_TEST_DATABASE), the local object store there too (or the s3 driver on the S3 that CAMVAULT_S3_* name),
 * listening on 127.0.0.1 port 0. Plus the few HTTP calls every test needs (sign
 * up, choose a plan, make a bind code, claim a camera).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/log.js';
import { loadCloudConfig, type CloudConfig, type CloudConfigInput } from '../../cloud/config.js';
import { DevOutbox, type Mailer } from '../../cloud/mail/index.js';
import { S3ObjectStore } from '../../cloud/objects/s3.js';
import type { ObjectStore } from '../../cloud/objects/types.js';
import { startServer } from '../../cloud/server.js';
import type { Store } from '../../cloud/store/types.js';
import { accountPrefix } from '../../shared/keys.js';
import { createTestSchema } from './pg.js';
import { S3_SKIP_REASON, s3EnvFromProcess, type Driver } from './s3-env.js';

export interface TestCloudOptions extends CloudConfigInput {
  clock?: Clock;
  logger?: Logger;
  closeGraceMs?: number;
  /**
   * the object-store driver: 'local' (default) keeps objects in the temp folder;
   * 's3' uses the S3 that CAMVAULT_S3_* in process.env name (Ceph RGW in CI)
   */
  objects?: Driver;
  /**
   * the metadata store: 'sqlite' keeps the file in the temp folder; 'postgres'
   * uses a fresh schema on the tests' PostgreSQL (test/helpers/pg.ts), dropped
   * at close. Default: env CAMVAULT_TEST_DATABASE ('postgres' in CI's second
   * pass), else sqlite.
   */
  database?: TestDatabase;
}

export type TestDatabase = 'sqlite' | 'postgres';

/** the metadata store test clouds use unless told: env CAMVAULT_TEST_DATABASE=postgres, else sqlite */
export function defaultTestDatabase(): TestDatabase {
  const v = process.env.CAMVAULT_TEST_DATABASE;
  if (v === undefined || v === '' || v === 'sqlite') return 'sqlite';
  if (v === 'postgres') return 'postgres';
  throw new Error(`CAMVAULT_TEST_DATABASE must be sqlite or postgres, got ${JSON.stringify(v)}`);
}

export interface TestCloud {
  /** base URL, no trailing slash */
  url: string;
  app: FastifyInstance;
  store: Store;
  objects: ObjectStore;
  config: CloudConfig;
  /** the cloud's mail: a DevOutbox unless the test configured mail.smtpUrl */
  mailer: Mailer;
  /**
   * closes the server and deletes its temp folder; on s3, also every object
   * under the prefixes of the accounts this cloud made; idempotent
   */
  close(): Promise<void>;
}

export async function startTestCloud(overrides: TestCloudOptions = {}): Promise<TestCloud> {
  const { clock, logger, closeGraceMs, objects: driver = 'local', database = defaultTestDatabase(), ...configOverrides } = overrides;
  let env: Record<string, string> = {};
  if (driver === 's3') {
    env = s3EnvFromProcess();
    if (!env.CAMVAULT_S3_ENDPOINT) throw new Error(`startTestCloud({ objects: 's3' }): ${S3_SKIP_REASON}`);
  }
  // postgres: a schema of this cloud's own (a few connections: workers run side by side)
  const pgSchema = database === 'postgres' ? await createTestSchema() : undefined;
  const dataDir = await mkdtemp(join(tmpdir(), 'camvault-cloud-'));
  let config: CloudConfig;
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    config = loadCloudConfig({
      env,
      overrides: {
        host: '127.0.0.1',
        port: 0,
        dataDir,
        logLevel: (process.env.CAMVAULT_TEST_LOG_LEVEL as CloudConfigInput['logLevel']) ?? 'silent',
        ...(pgSchema ? { databaseUrl: pgSchema.url, databasePoolSize: 4 } : {}),
        ...configOverrides,
      },
    });
    server = await startServer(config, { clock, logger, closeGraceMs });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    await pgSchema?.drop();
    throw err;
  }
  const outboxUrls = registerOutbox(server);
  let closing: Promise<void> | undefined;
  return {
    url: server.url,
    app: server.app,
    store: server.store,
    objects: server.objects,
    config,
    mailer: server.mailer,
    close: () =>
      (closing ??= (async () => {
        for (const u of outboxUrls) outboxes.delete(u);
        await server.close();
        try {
          if (config.s3) {
            const accountIds = pgSchema ? await pgSchema.ids('accounts') : sqliteAccountIds(join(dataDir, 'camvault.db'));
            await deleteAccountObjects(config, accountIds);
          }
        } finally {
          await rm(dataDir, { recursive: true, force: true });
          await pgSchema?.drop();
        }
      })()),
  };
}

/**
 * The bucket is shared by every test (and every developer's run) on the same
 * RGW. Keys start with accounts/<accountId>/, and account ids are ULIDs made by
 * this cloud's own database, so deleting under those prefixes removes exactly
 * what this cloud stored and nothing of anyone else's.
 */
function sqliteAccountIds(dbPath: string): string[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT id FROM accounts').all() as { id: string }[]).map((r) => r.id);
  } finally {
    db.close();
  }
}

async function deleteAccountObjects(config: CloudConfig, accountIds: string[]): Promise<void> {
  if (!config.s3) return;
  if (accountIds.length === 0) return;
  const objects = new S3ObjectStore({ ...config.s3 });
  try {
    for (const id of accountIds) {
      const prefix = accountPrefix(id);
      let cursor: string | null = null;
      do {
        const page = await objects.list(prefix, cursor);
        if (page.objects.length > 0) {
          const result = await objects.deleteMany(page.objects.map((o) => o.key));
          if (result.failed.length > 0) throw new Error(`test cloud cleanup: ${result.failed.length} objects under ${prefix} not deleted: ${result.failed[0]?.error}`);
        }
        cursor = page.nextCursor;
      } while (cursor !== null);
    }
  } finally {
    await objects.close();
  }
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

/**
 * The development outboxes of this process's test clouds, by every URL a test
 * may call a cloud at (its public URL, and its listen address when a proxy
 * fronts it), so registerAndLogin(base) finds the mail a cloud sent.
 */
const outboxes = new Map<string, DevOutbox>();

function registerOutbox(server: { url: string; mailer: Mailer; app: FastifyInstance }): string[] {
  if (!(server.mailer instanceof DevOutbox)) return [];
  const address = server.app.server.address();
  const urls = [server.url];
  if (address && typeof address === 'object') urls.push(`http://127.0.0.1:${address.port}`, `https://127.0.0.1:${address.port}`);
  for (const u of urls) outboxes.set(u, server.mailer);
  return urls;
}

/** The development outbox of the test cloud at `base` (any URL it was reached at). */
export function outboxFor(base: string): DevOutbox {
  const outbox = outboxes.get(base.replace(/\/+$/, ''));
  if (!outbox) throw new Error(`no test cloud with a development outbox at ${base}`);
  return outbox;
}

/**
 * The code in the first mail to `email` whose seq is >= `since` (the outbox's
 * cursor before the request that mails it), waiting for it to arrive.
 */
export function mailedCode(base: string, email: string, since: number): Promise<string> {
  return outboxFor(base).waitForCode(email, since);
}

/** Registers an account and verifies its address with the mailed code; no session. */
export async function signUp(base: string, email: string, password: string): Promise<void> {
  const since = outboxFor(base).cursor;
  await ok(api(base, 'POST', '/v1/accounts', { body: { email, password } }), 'register');
  const code = await mailedCode(base, email, since);
  await ok(api(base, 'POST', '/v1/accounts/verify', { body: { email, code } }), 'verify');
}

/** Registers an account (a random email unless given), verifies its address and opens a session. */
export async function registerAndLogin(base: string, opts: { email?: string; password?: string } = {}): Promise<TestAccount> {
  const email = opts.email ?? `user-${randomBytes(6).toString('hex')}@example.com`;
  const password = opts.password ?? 'correct horse battery staple';
  await signUp(base, email, password);
  const { token, accountId } = await ok(api(base, 'POST', '/v1/sessions', { body: { email, password } }), 'login');
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

/** The owner (session `token`) shares a device with another account, by its account id. */
export async function shareDevice(
  base: string,
  token: string,
  serial: string,
  accountId: string,
  role: 'viewer' | 'manager',
): Promise<void> {
  await ok(api(base, 'POST', `/v1/devices/${serial}/shares`, { token, body: { accountId, role } }), 'share');
}

/**
 * A claimed camera's MQTT session (issue 7): connects to the broker its claim
 * named (MQTT 3.1.1, client id = username = serial), says "online" (retained,
 * with the "offline" last will), and can publish alerts. `end()` disconnects.
 */
export async function connectDeviceMqtt(
  device: ClaimedDevice,
  opts: { clean?: boolean } = {},
): Promise<{ client: import('mqtt').MqttClient; publishAlert(alert?: Partial<import('../../shared/contracts/alerts.js').Alert>): Promise<import('../../shared/contracts/alerts.js').Alert>; end(): Promise<void> }> {
  const { default: mqtt } = await import('mqtt');
  const url = (device.mqtt as { url?: string }).url;
  if (!url) throw new Error('the claim answer named no MQTT URL');
  const client = await mqtt.connectAsync(
    url,
    {
      protocolVersion: 4,
      clientId: device.serial,
      username: device.mqtt.username,
      password: device.mqtt.password,
      clean: opts.clean ?? true,
      reconnectPeriod: 0,
      will: { topic: `devices/${device.serial}/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
    },
    false,
  );
  await client.publishAsync(`devices/${device.serial}/status`, 'online', { qos: 1, retain: true });
  return {
    client,
    async publishAlert(over = {}) {
      const alert = { serial: device.serial, type: 'motion' as const, at: new Date().toISOString(), ...over };
      await client.publishAsync(`devices/${device.serial}/alerts`, JSON.stringify(alert), { qos: 1 });
      return alert;
    },
    end: () => client.endAsync(),
  };
}

/** Polls GET /v1/notifications (JSON) until one matches, or throws after timeoutMs. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read response bodies loosely
export async function waitForNotification(base: string, token: string, match: (n: any) => boolean, timeoutMs = 5000): Promise<any> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await api(base, 'GET', '/v1/notifications', { token });
    if (res.status !== 200) throw new Error(`GET /v1/notifications: ${res.status} ${JSON.stringify(res.body)}`);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    const found = (res.body.notifications as any[]).find(match);
    if (found) return found;
    if (Date.now() > until) throw new Error('no matching notification arrived');
    await new Promise((r) => setTimeout(r, 25));
  }
}
