/**
 * Account cancellation (issue 6, acceptance "Cancellation"): DELETE
 * /v1/account leaves no object under the account's prefix and no row, in any
 * table, that mentions the account: its id, its email (or the hash the
 * mailed codes are keyed by), its devices' serials, its clips' ids, and the
 * hashes of its session and device tokens. The scan reads every table the
 * database has (sqlite_master, or information_schema on PostgreSQL), whole
 * rows, so a table added later is scanned too. A crash part-way resumes and
 * completes: a store that fails after some deletions, and a restart of the
 * server. CAMVAULT_TEST_DATABASE=postgres runs every test here on PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beginCancellation, resumeCancellations, runCancellation, type CancelContext } from '../../cloud/account-cancel.js';
import { appContext } from '../../cloud/app.js';
import { emailHash } from '../../cloud/auth/email-codes.js';
import { sha256Hex } from '../../cloud/auth/tokens.js';
import { loadCloudConfig, type CloudConfig } from '../../cloud/config.js';
import { DevOutbox } from '../../cloud/mail/outbox.js';
import type { ObjectStore } from '../../cloud/objects/types.js';
import { startServer, type RunningServer } from '../../cloud/server.js';
import { createLogger } from '../../shared/log.js';
import { newClipId } from '../../shared/ids.js';
import { accountPrefix, clipObjectKey } from '../../shared/keys.js';
import { commandsTopic } from '../../shared/topics.js';
import { expectCatalogueError } from '../helpers/api-checks.js';
import {
  api,
  claimDevice,
  createBindCode,
  defaultTestDatabase,
  randomSerial,
  registerAndLogin,
  setPlan,
  shareDevice,
  startTestCloud,
  type ClaimedDevice,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';
import { createTestSchema, type TestSchema } from '../helpers/pg.js';
import { presignBody, putPresigned, uploadClip } from '../helpers/upload.js';

const MIN = 60_000;
const quiet = createLogger({ level: 'silent' });

/** Every row of every table of the cloud's database, as text, by table. */
async function dumpDatabase(config: CloudConfig): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (config.databaseUrl) {
    const c = new pg.Client({ connectionString: config.databaseUrl });
    await c.connect();
    try {
      const { rows: tables } = await c.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
      );
      for (const { table_name: t } of tables) {
        const { rows } = await c.query(`SELECT * FROM ${pg.escapeIdentifier(t)}`);
        out.set(t, rows.map((r) => JSON.stringify(r)));
      }
    } finally {
      await c.end();
    }
    return out;
  }
  const db = new Database(join(config.dataDir, 'camvault.db'), { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
    for (const { name } of tables) {
      const rows = db.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}"`).all();
      out.set(name, rows.map((r) => JSON.stringify(r)));
    }
  } finally {
    db.close();
  }
  return out;
}

/** where each needle occurs: "table: row" lines (case-insensitive) */
async function findInDatabase(config: CloudConfig, needles: string[]): Promise<Map<string, string[]>> {
  const dump = await dumpDatabase(config);
  expect(dump.size, 'the scan sees the tables').toBeGreaterThan(10);
  const found = new Map<string, string[]>();
  for (const needle of needles) {
    const n = needle.toLowerCase();
    const hits: string[] = [];
    for (const [table, rows] of dump) for (const row of rows) if (row.toLowerCase().includes(n)) hits.push(`${table}: ${row.slice(0, 300)}`);
    if (hits.length > 0) found.set(needle, hits);
  }
  return found;
}

async function listAll(objects: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await objects.list(prefix, cursor);
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.nextCursor;
  } while (cursor !== null);
  return keys;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An account with everything a subscriber leaves behind, and what must be gone of it afterwards. */
interface Footprint {
  account: TestAccount;
  secondToken: string;
  devices: ClaimedDevice[];
  clipIds: string[];
  needles: string[];
}

async function makeFootprint(cloud: TestCloud, friend: { account: TestAccount; device: ClaimedDevice }): Promise<Footprint> {
  const base = cloud.url;
  const account = await registerAndLogin(base);
  const second = await api(base, 'POST', '/v1/sessions', { body: { email: account.email, password: account.password } });
  expect(second.status).toBe(200);
  await setPlan(base, account.token, 'standard');
  // the experience program on: its events are the account's too
  expect((await api(base, 'PUT', '/v1/account/consents', { token: account.token, body: { experience: true, marketing: true } })).status).toBe(200);
  const devices = [await claimDevice(base, account.token, randomSerial('CANA')), await claimDevice(base, account.token, randomSerial('CANB'))];
  const clipIds: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await uploadClip(base, devices[i % 2]!, { body: randomBytes(300 + i), startMs: Date.now() - (i + 1) * MIN });
    expect(r.complete?.status).toBe(200);
    clipIds.push(r.clipId);
  }
  // a clip viewed (an experience event), a pending upload whose object is in the store, an open multipart upload
  expect((await api(base, 'GET', `/v1/clips/${clipIds[0]}/view`, { token: account.token })).status).toBe(200);
  const pendingBody = randomBytes(222);
  const presign = presignBody({ body: pendingBody, startMs: Date.now() - MIN });
  const presigned = await api(base, 'POST', '/v1/device/uploads', { device: devices[0], body: presign });
  expect(presigned.status).toBe(200);
  expect((await putPresigned(presigned.body, pendingBody)).status).toBe(200);
  clipIds.push(presign.clipId as string);
  // (its key is in no row: the object store's listing is what must come back empty)
  await cloud.objects.createMultipartUpload(clipObjectKey(account.accountId, devices[1]!.serial, newClipId(), Date.now()));
  // shares both ways, a bind code never used, a reset code mailed, a failed sign-in, an export
  await shareDevice(base, account.token, devices[0]!.serial, friend.account.accountId, 'viewer');
  await shareDevice(base, friend.account.token, friend.device.serial, account.accountId, 'manager');
  await createBindCode(base, account.token);
  expect((await api(base, 'POST', '/v1/accounts/password-reset', { body: { email: account.email } })).status).toBe(202);
  expect((await api(base, 'POST', '/v1/sessions', { body: { email: account.email, password: 'a wrong password' } })).status).toBe(401);
  expect((await api(base, 'GET', '/v1/account/export', { token: account.token })).status).toBe(200);
  // the broker's side (issue 7): a webhook, its notifications, and the friend's copy of an alert of its camera
  await cloud.store.putWebhook({ accountId: account.accountId, url: 'https://hooks.example.com/cancel', secret: 'a-secret-of-twenty-chars', createdAt: Date.now() });
  const note = (accountId: string, serial: string, clipId: string | null) => ({
    id: randomBytes(8).toString('hex'),
    accountId,
    serial,
    type: 'motion',
    atMs: Date.now(),
    clipId,
    receivedAt: Date.now(),
  });
  await cloud.store.putNotifications([note(account.accountId, devices[0]!.serial, clipIds[0]!), note(friend.account.accountId, devices[0]!.serial, clipIds[0]!)]);

  const sessionHashes = [account.token, second.body.token as string].map(sha256Hex);
  const deviceRows = await Promise.all(devices.map((d) => cloud.store.getDevice(d.serial)));
  const needles = [
    account.accountId,
    account.email,
    emailHash(account.email),
    ...devices.map((d) => d.serial),
    ...clipIds,
    ...sessionHashes,
    ...deviceRows.flatMap((d) => [d!.tokenHash, d!.mqttPasswordHash]),
  ];
  return { account, secondToken: second.body.token as string, devices, clipIds, needles };
}

/** Nothing of the account is left: no row mentions it, no object or multipart upload under its prefix. */
async function expectNothingLeft(cloud: { config: CloudConfig; objects: ObjectStore }, fp: Footprint): Promise<void> {
  const found = await findInDatabase(cloud.config, fp.needles);
  expect(Object.fromEntries(found), 'rows that still mention the cancelled account').toEqual({});
  const prefix = accountPrefix(fp.account.accountId);
  expect(await listAll(cloud.objects, prefix)).toEqual([]);
  expect(await cloud.objects.listMultipartUploads(prefix)).toEqual([]);
}

describe('account cancellation', () => {
  let cloud: TestCloud;
  let friend: { account: TestAccount; device: ClaimedDevice; clipId: string; bytes: Buffer };

  beforeAll(async () => {
    // upload URLs live 1 s, so a cancellation's last pass (after they expire) comes within seconds;
    // no scheduled jobs: the crash tests look at a cancellation stopped half-way, which a pass of the
    // job "account-cancellations" would finish under them (it is run by hand below)
    cloud = await startTestCloud({ uploadUrlTtlSec: 1, jobs: { enabled: false } });
    const account = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, account.token, 'standard');
    const device = await claimDevice(cloud.url, account.token, randomSerial('FRND'));
    const bytes = randomBytes(400);
    const up = await uploadClip(cloud.url, device, { body: bytes, startMs: Date.now() - MIN });
    expect(up.complete?.status).toBe(200);
    friend = { account, device, clipId: up.clipId, bytes };
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('needs the password again: a wrong one is 403 CURRENT_PASSWORD_WRONG and changes nothing; a missing one is 400', async () => {
    const a = await registerAndLogin(cloud.url);
    expectCatalogueError(await api(cloud.url, 'DELETE', '/v1/account', { token: a.token, body: { password: 'not my password' } }), 'CURRENT_PASSWORD_WRONG');
    expectCatalogueError(await api(cloud.url, 'DELETE', '/v1/account', { token: a.token }), 'VALIDATION_FAILED');
    expectCatalogueError(await api(cloud.url, 'DELETE', '/v1/account', { body: { password: a.password } }), 'UNAUTHENTICATED');
    expect((await api(cloud.url, 'GET', '/v1/account', { token: a.token })).status).toBe(200);
    expect((await cloud.store.getAccountById(a.accountId))?.cancelledAt).toBeNull();
  });

  it('erases everything: no row in any table mentions the account, no object is left under its prefix, and the other account keeps all of its own', async () => {
    const fp = await makeFootprint(cloud, friend);
    // the scan finds every needle before: it is no scan that finds nothing
    const before = await findInDatabase(cloud.config, fp.needles);
    expect(fp.needles.filter((n) => !before.has(n)), 'needles the scan cannot find before the cancellation').toEqual([]);
    expect((await listAll(cloud.objects, accountPrefix(fp.account.accountId))).length).toBe(6);

    const res = await api(cloud.url, 'DELETE', '/v1/account', { token: fp.account.token, body: { password: fp.account.password } });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ status: 'cancelling', cancelledAt: expect.any(String) });
    // from the answer on: both sessions and both devices are 410
    for (const token of [fp.account.token, fp.secondToken]) expectCatalogueError(await api(cloud.url, 'GET', '/v1/account', { token }), 'ACCOUNT_CANCELLED');
    for (const device of fp.devices) {
      const presign = await api(cloud.url, 'POST', '/v1/device/uploads', { device, body: presignBody({ body: randomBytes(10) }) });
      expectCatalogueError(presign, 'ACCOUNT_CANCELLED');
    }

    await waitFor('the cancellation to finish', async () => (await cloud.store.getAccountById(fp.account.accountId)) === null);
    await expectNothingLeft(cloud, fp);

    // afterwards too, from the tombstones: the old credentials are 410, a login is an unknown address
    for (const token of [fp.account.token, fp.secondToken]) expectCatalogueError(await api(cloud.url, 'GET', '/v1/devices', { token }), 'ACCOUNT_CANCELLED');
    for (const device of fp.devices) {
      expectCatalogueError(await api(cloud.url, 'POST', '/v1/device/uploads', { device, body: presignBody({ body: randomBytes(10) }) }), 'ACCOUNT_CANCELLED');
    }
    expectCatalogueError(
      await api(cloud.url, 'POST', '/v1/sessions', { body: { email: fp.account.email, password: fp.account.password } }),
      'INVALID_CREDENTIALS',
    );

    // the friend: its camera, its clip, its session; A's camera no longer shared with it, its camera no longer shared with A
    expect((await api(cloud.url, 'GET', '/v1/account', { token: friend.account.token })).status).toBe(200);
    const devices = await api(cloud.url, 'GET', '/v1/devices', { token: friend.account.token });
    expect(devices.body.devices.map((d: { serial: string }) => d.serial)).toEqual([friend.device.serial]);
    expect((await api(cloud.url, 'GET', `/v1/devices/${friend.device.serial}/shares`, { token: friend.account.token })).body.shares).toEqual([]);
    const view = await api(cloud.url, 'GET', `/v1/clips/${friend.clipId}/view`, { token: friend.account.token });
    expect(Buffer.from(await (await fetch(view.body.url)).arrayBuffer()).equals(friend.bytes)).toBe(true);
    const presign = await api(cloud.url, 'POST', '/v1/device/uploads', { device: friend.device, body: presignBody({ body: randomBytes(10) }) });
    expect(presign.status).toBe(200);
    const exported = await api(cloud.url, 'GET', '/v1/account/export', { token: friend.account.token });
    expect(exported.body.securityLog.map((e: { event: string }) => e.event)).toEqual(expect.arrayContaining(['sign-in', 'device-bound']));

    // and the address is free again: a new account, with nothing of the old one
    const again = await registerAndLogin(cloud.url, { email: fp.account.email });
    expect(again.accountId).not.toBe(fp.account.accountId);
    const fresh = await api(cloud.url, 'GET', '/v1/account/export', { token: again.token });
    expect(fresh.body).toMatchObject({ devices: [], sharedWithMe: [], shares: [], clips: [], experienceEvents: [] });
  });

  it('from the first step on, before anything is erased: sessions, devices and a login with the right password are 410; a wrong password is the usual 401', async () => {
    const fp = await makeFootprint(cloud, friend);
    // the first step alone, as if the process died right after it
    expect(await beginCancellation(appContext(cloud.app), fp.account.accountId)).toBe('started');
    expectCatalogueError(await api(cloud.url, 'GET', '/v1/clips', { token: fp.account.token }), 'ACCOUNT_CANCELLED');
    expectCatalogueError(await api(cloud.url, 'PUT', '/v1/account/consents', { token: fp.secondToken, body: { experience: true } }), 'ACCOUNT_CANCELLED');
    expectCatalogueError(
      await api(cloud.url, 'POST', '/v1/device/uploads', { device: fp.devices[0], body: presignBody({ body: randomBytes(10) }) }),
      'ACCOUNT_CANCELLED',
    );
    expectCatalogueError(
      await api(cloud.url, 'POST', '/v1/sessions', { body: { email: fp.account.email, password: fp.account.password } }),
      'ACCOUNT_CANCELLED',
    );
    expectCatalogueError(await api(cloud.url, 'POST', '/v1/sessions', { body: { email: fp.account.email, password: 'a wrong password' } }), 'INVALID_CREDENTIALS');
    // nobody can share with it any more, and the friend lost its share of A's camera at once
    expectCatalogueError(
      await api(cloud.url, 'POST', `/v1/devices/${friend.device.serial}/shares`, {
        token: friend.account.token,
        body: { accountId: fp.account.accountId, role: 'viewer' },
      }),
      'GRANTEE_NOT_FOUND',
    );
    const friendDevices = await api(cloud.url, 'GET', '/v1/devices', { token: friend.account.token });
    expect(friendDevices.body.devices.map((d: { serial: string }) => d.serial)).not.toContain(fp.devices[0]!.serial);
    // nothing erased yet: the objects are all there
    expect((await listAll(cloud.objects, accountPrefix(fp.account.accountId))).length).toBe(6);

    // the next job pass finishes it
    const counts = await resumeCancellations(appContext(cloud.app), { log: quiet, maxWaitMs: 30_000 });
    expect(counts).toMatchObject({ done: 1, failed: 0 });
    await expectNothingLeft(cloud, fp);
    expectCatalogueError(await api(cloud.url, 'GET', '/v1/clips', { token: fp.account.token }), 'ACCOUNT_CANCELLED');
  });

  it('a crash part-way through the objects (the store fails after 3 deletions) leaves the account cancelled, and the next pass completes it', async () => {
    const fp = await makeFootprint(cloud, friend);
    const ctx = appContext(cloud.app);
    expect(await beginCancellation(ctx, fp.account.accountId)).toBe('started');
    // the real store, that dies after deleting 3 objects: mid-batch, like a process killed there
    let budget = 3;
    const deleteThenDie = async (keys: string[]): Promise<never> => {
      const some = keys.slice(0, budget);
      budget -= some.length;
      await cloud.objects.deleteMany(some);
      throw new Error('connection reset');
    };
    const dying = new Proxy(cloud.objects, {
      get: (target, prop) => {
        if (prop === 'deleteMany') return deleteThenDie;
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const crashing: CancelContext = { ...ctx, objects: dying };
    await expect(runCancellation(crashing, fp.account.accountId, { log: quiet })).rejects.toThrow('connection reset');

    // where it stopped: devices unbound, 3 of 6 objects gone, every clip row still there, the account still cancelled
    expect(await listAll(cloud.objects, accountPrefix(fp.account.accountId))).toHaveLength(3);
    expect(await cloud.store.listDevices(fp.account.accountId)).toEqual([]);
    for (const id of fp.clipIds.slice(0, 5)) expect(await cloud.store.getClip(id)).not.toBeNull();
    expect((await cloud.store.getAccountById(fp.account.accountId))?.cancelledAt).toEqual(expect.any(Number));
    expectCatalogueError(await api(cloud.url, 'GET', '/v1/account', { token: fp.account.token }), 'ACCOUNT_CANCELLED');
    // its lease was released: the next pass need not wait for it to lapse
    expect(await cloud.store.listCancellations(Date.now(), 100)).toContain(fp.account.accountId);

    const counts = await resumeCancellations(ctx, { log: quiet, maxWaitMs: 30_000 });
    expect(counts).toMatchObject({ done: 1, failed: 0 });
    await expectNothingLeft(cloud, fp);
  });

  it('a connected camera is told over MQTT that it is unbound, is disconnected, and cannot log in to the broker again', async () => {
    const a = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, a.token, 'basic');
    const device = await claimDevice(cloud.url, a.token, randomSerial('MQTT'));
    const url = (device.mqtt as { url?: string }).url;
    expect(url).toMatch(/^mqtts?:\/\//);
    const login = { protocolVersion: 4 as const, clientId: device.serial, username: device.serial, password: device.mqtt.password, reconnectPeriod: 0, connectTimeout: 5000 };
    const client = await mqtt.connectAsync(url!, login, false);
    try {
      const commands: { type: string }[] = [];
      client.on('message', (_topic, payload) => commands.push(JSON.parse(payload.toString('utf8')) as { type: string }));
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      await client.subscribeAsync(commandsTopic(device.serial), { qos: 1 });

      expect((await api(cloud.url, 'DELETE', '/v1/account', { token: a.token, body: { password: a.password } })).status).toBe(202);
      await closed;
      expect(commands.map((c) => c.type)).toEqual(['unbind']);
      await expect(mqtt.connectAsync(url!, login, false)).rejects.toThrow();
      await waitFor('the cancellation to finish', async () => (await cloud.store.getAccountById(a.accountId)) === null);
      await expect(mqtt.connectAsync(url!, login, false)).rejects.toThrow();
    } finally {
      client.end(true);
    }
  });

  it('two runners at once: one works, the other finds it busy; the account is erased once', async () => {
    const fp = await makeFootprint(cloud, friend);
    const ctx = appContext(cloud.app);
    expect(await beginCancellation(ctx, fp.account.accountId)).toBe('started');
    const outcomes = await Promise.all([
      runCancellation(ctx, fp.account.accountId, { log: quiet }),
      runCancellation(ctx, fp.account.accountId, { log: quiet }),
    ]);
    expect(outcomes.sort()).toEqual(['busy', 'done']);
    await expectNothingLeft(cloud, fp);
  });
});

/**
 * The server that dies: the first step committed and nothing else, then the
 * process is gone. The next start of the server (another process on the same
 * data) finishes the cancellation by itself, and the job pass picks up one
 * that a node left while its lease lapsed.
 */
describe('account cancellation across a restart', () => {
  let dataDir: string;
  let schema: TestSchema | undefined;
  let config: CloudConfig;
  const servers: RunningServer[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'camvault-cancel-restart-'));
    schema = defaultTestDatabase() === 'postgres' ? await createTestSchema() : undefined;
    config = loadCloudConfig({
      env: {},
      overrides: {
        host: '127.0.0.1',
        port: 0,
        dataDir,
        logLevel: 'silent',
        uploadUrlTtlSec: 1,
        ...(schema ? { databaseUrl: schema.url, databasePoolSize: 4 } : {}),
      },
    });
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await rm(dataDir, { recursive: true, force: true });
    await schema?.drop();
  });

  async function start(): Promise<RunningServer> {
    const s = await startServer(config, { jobs: false });
    servers.push(s);
    return s;
  }

  async function subscriber(s: RunningServer): Promise<TestAccount> {
    const email = `restart-${randomBytes(5).toString('hex')}@example.com`;
    const password = 'correct horse battery staple';
    const outbox = s.mailer as DevOutbox;
    const since = outbox.cursor;
    expect((await api(s.url, 'POST', '/v1/accounts', { body: { email, password } })).status).toBe(202);
    const code = await outbox.waitForCode(email, since);
    expect((await api(s.url, 'POST', '/v1/accounts/verify', { body: { email, code } })).status).toBe(200);
    const login = await api(s.url, 'POST', '/v1/sessions', { body: { email, password } });
    return { accountId: login.body.accountId, email, password, token: login.body.token };
  }

  it('a cancellation whose server died after the first step is finished by the next start', async () => {
    const first = await start();
    const a = await subscriber(first);
    await setPlan(first.url, a.token, 'basic');
    const device = await claimDevice(first.url, a.token, randomSerial('RSTA'));
    const clipIds: string[] = [];
    for (let i = 0; i < 3; i++) clipIds.push((await uploadClip(first.url, device, { body: randomBytes(100), startMs: Date.now() - (i + 1) * MIN })).clipId);
    const deviceRow = (await first.store.getDevice(device.serial))!;
    expect(await beginCancellation(appContext(first.app), a.accountId)).toBe('started');
    // the lease a dying runner would hold is not there: the first step takes none
    await first.close();

    const second = await start();
    await waitFor('the restarted server to finish the cancellation', async () => (await second.store.getAccountById(a.accountId)) === null);
    const fp: Footprint = {
      account: a,
      secondToken: a.token,
      devices: [device],
      clipIds,
      needles: [a.accountId, a.email, emailHash(a.email), device.serial, ...clipIds, sha256Hex(a.token), deviceRow.tokenHash, deviceRow.mqttPasswordHash],
    };
    await expectNothingLeft(second, fp);
    expectCatalogueError(await api(second.url, 'GET', '/v1/account', { token: a.token }), 'ACCOUNT_CANCELLED');
    await second.close();
  });

  it('closing the server mid-cancellation stops its runner after the step in hand; the next start finishes the cancellation', async () => {
    // upload URLs of 15 minutes: the runner erases, then waits for them to expire
    const first = await startServer({ ...config, uploadUrlTtlSec: 900 }, { jobs: false });
    servers.push(first);
    const a = await subscriber(first);
    await setPlan(first.url, a.token, 'basic');
    const device = await claimDevice(first.url, a.token, randomSerial('RSTC'));
    const up = await uploadClip(first.url, device, { body: randomBytes(100), startMs: Date.now() - MIN });
    expect((await api(first.url, 'DELETE', '/v1/account', { token: a.token, body: { password: a.password } })).status).toBe(202);
    await waitFor('the first pass to erase the clips', async () => (await first.store.getClip(up.clipId)) === null);
    expect(await first.store.getAccountById(a.accountId)).not.toBeNull();
    // the runner is waiting out the URLs' 15 minutes: closing does not wait for them
    await first.close();

    const second = await start();
    await waitFor('the next start to finish the cancellation', async () => (await second.store.getAccountById(a.accountId)) === null);
    expect(await listAll(second.objects, accountPrefix(a.accountId))).toEqual([]);
    await second.close();
  });

  it('the job "account-cancellations" takes over a cancellation whose runner died holding its lease, once the lease lapses', async () => {
    const s = await start();
    const a = await subscriber(s);
    await setPlan(s.url, a.token, 'basic');
    const device = await claimDevice(s.url, a.token, randomSerial('RSTB'));
    const up = await uploadClip(s.url, device, { body: randomBytes(100), startMs: Date.now() - MIN });
    const ctx = appContext(s.app);
    expect(await beginCancellation(ctx, a.accountId)).toBe('started');
    // a runner on a node that died: its lease holds for a minute from "now"
    const now = Date.now();
    expect(await s.store.leaseCancellation(a.accountId, 'a-node-that-died', now, now + 60_000)).toBe(true);
    const held = await s.jobs.run('account-cancellations');
    expect(held.ok).toBe(true);
    expect(await s.store.getAccountById(a.accountId)).not.toBeNull();
    expect(await s.store.getClip(up.clipId)).not.toBeNull();
    // the lease lapses (shortened here rather than waited for); the next passes finish it
    expect(await s.store.leaseCancellation(a.accountId, 'a-node-that-died', now, Date.now())).toBe(true);
    await waitFor('the job to finish the cancellation', async () => {
      await s.jobs.run('account-cancellations');
      return (await s.store.getAccountById(a.accountId)) === null;
    });
    expect(await s.store.getClip(up.clipId)).toBeNull();
    expect(await listAll(s.objects, accountPrefix(a.accountId))).toEqual([]);
    const receipts = await s.store.listJobRuns('account-cancellations', 100);
    expect(receipts.some((r) => r.ok && r.counts.done === 1)).toBe(true);
    await s.close();
  });
});
