/**
 * Account webhooks (issue 7): every notification is also POSTed to the
 * account's webhook, signed with HMAC-SHA256; failures are retried a bounded
 * number of times without ever holding up alert intake; only https:// URLs
 * of public hosts are taken (development lifts that); and with several cloud
 * nodes, each hearing every alert, the webhook is sent exactly once.
 *
 * Receivers are real HTTP servers on 127.0.0.1, so these clouds run with
 * notifications.webhook.allowInsecure (development), except the one that
 * checks the URL rules.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { lookup } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notificationsOf } from '../../cloud/notifications/index.js';
import { isSpecialAddress } from '../../cloud/notifications/webhook-url.js';
import { verifyWebhookSignature, webhookSignature } from '../../cloud/notifications/webhook-sender.js';
import { loadCloudConfig } from '../../cloud/config.js';
import type { DevOutbox } from '../../cloud/mail/index.js';
import { startServer, type RunningServer } from '../../cloud/server.js';
import { Notification } from '../../shared/contracts/alerts.js';
import { createLogger } from '../../shared/log.js';
import { expectCatalogueError } from '../helpers/api-checks.js';
import {
  api,
  claimDevice,
  connectDeviceMqtt,
  randomSerial,
  registerAndLogin,
  setPlan,
  shareDevice,
  startTestCloud,
  waitForNotification,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';
import { mosquittoSkipReason, startMosquitto } from '../helpers/mosquitto.js';
import { createTestSchema, postgresSkipReason } from '../helpers/pg.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function waitUntil<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = 8000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A webhook receiver: records every POST; `answer` decides the status (or to never answer). */
async function startReceiver(answer: (path: string, n: number) => number | 'hang' = () => 204) {
  const got: Received[] = [];
  const counts = new Map<string, number>();
  const hanging: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const n = (counts.get(path) ?? 0) + 1;
      counts.set(path, n);
      got.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const a = answer(path, n);
      if (a === 'hang') {
        hanging.push(() => res.destroy());
        return;
      }
      res.statusCode = a;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    got,
    on: (path: string) => got.filter((r) => r.path === path),
    close: async () => {
      for (const h of hanging) h();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const SECRET = 'whsec-0123456789-abcdefghij';

describe('webhooks', () => {
  let cloud: TestCloud;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let owner: TestAccount;
  let viewer: TestAccount;
  let stranger: TestAccount;
  const logLines: string[] = [];

  beforeAll(async () => {
    receiver = await startReceiver((path, n) => {
      if (path.startsWith('/flaky/')) return n <= 2 ? 503 : 204;
      if (path.startsWith('/gone/')) return 410;
      if (path.startsWith('/down/')) return 500;
      if (path.startsWith('/hang/')) return 'hang';
      return 204;
    });
    const logger = createLogger(
      { name: 'cloud', level: 'debug' },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          logLines.push(chunk.toString('utf8'));
          cb();
        },
      }),
    );
    cloud = await startTestCloud({
      logger,
      notifications: { webhook: { allowInsecure: true, minDelayMs: 20, maxDelayMs: 200, maxAttempts: 3, timeoutMs: 300 } },
      closeGraceMs: 1000,
    });
    [owner, viewer, stranger] = await Promise.all([registerAndLogin(cloud.url), registerAndLogin(cloud.url), registerAndLogin(cloud.url)]);
    await setPlan(cloud.url, owner.token, 'standard');
  });
  afterAll(async () => {
    await cloud?.close();
    await receiver?.close();
  });

  async function alertFrom(serialPrefix: string): Promise<{ at: string; serial: string }> {
    const cam = await claimDevice(cloud.url, owner.token, randomSerial(serialPrefix));
    await shareDevice(cloud.url, owner.token, cam.serial, viewer.accountId, 'viewer');
    const device = await connectDeviceMqtt(cam);
    const alert = await device.publishAlert();
    await device.end();
    return alert;
  }

  it("a notification is POSTed to the owner's and the grantee's webhooks, signed so the receiver can check it; a stranger's gets nothing", async () => {
    const put = await api(cloud.url, 'PUT', '/v1/account/webhook', { token: owner.token, body: { url: `${receiver.base}/owner/tok-123`, secret: SECRET } });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ webhook: { url: `${receiver.base}/owner/tok-123`, createdAt: expect.any(String) } });
    expect(JSON.stringify(put.body)).not.toContain(SECRET);
    await api(cloud.url, 'PUT', '/v1/account/webhook', { token: viewer.token, body: { url: `${receiver.base}/viewer`, secret: `${SECRET}-v` } });
    await api(cloud.url, 'PUT', '/v1/account/webhook', { token: stranger.token, body: { url: `${receiver.base}/stranger`, secret: `${SECRET}-s` } });

    const alert = await alertFrom('HOOK');
    await waitUntil('the owner webhook', () => receiver.on('/owner/tok-123').length > 0);
    await waitUntil('the viewer webhook', () => receiver.on('/viewer').length > 0);
    await notificationsOf(cloud.app).webhooks.idle();

    const [hit] = receiver.on('/owner/tok-123');
    const body = Notification.parse(JSON.parse(hit!.body));
    expect(body).toMatchObject({ serial: alert.serial, type: 'motion', at: alert.at });
    expect(hit!.headers['content-type']).toBe('application/json');
    expect(hit!.headers['x-camvault-notification-id']).toBe(body.id);
    const headers = { timestamp: hit!.headers['x-camvault-timestamp'] as string, signature: hit!.headers['x-camvault-signature'] as string };
    const now = Math.floor(Date.now() / 1000);
    expect(headers.signature).toMatch(/^v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, headers, hit!.body, now)).toBe(true);
    expect(verifyWebhookSignature(`${SECRET}-v`, headers, hit!.body, now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, headers, hit!.body.replace('motion', 'motiom'), now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, headers, hit!.body, now + 3600)).toBe(false);
    // the signature is over "<timestamp>.<body>", as documented
    expect(headers.signature).toBe(webhookSignature(SECRET, Number(headers.timestamp), hit!.body));
    const viewerHit = receiver.on('/viewer')[0]!;
    expect(JSON.parse(viewerHit.body)).toEqual(body);
    expect(receiver.on('/viewer')).toHaveLength(1);
    expect(receiver.on('/owner/tok-123')).toHaveLength(1);
    expect(receiver.on('/stranger')).toEqual([]);
    // the secret and the URL's path (it may hold a token) never reach a log line
    const log = logLines.join('');
    expect(log).toContain('webhook set');
    expect(log).not.toContain(SECRET);
    expect(log).not.toContain('tok-123');
  });

  it('a failing receiver is retried until it answers; a 4xx is final; a receiver that always fails is given up after maxAttempts', async () => {
    const sender = notificationsOf(cloud.app).webhooks;
    for (const [path, attempts] of [
      ['/flaky/', 3],
      ['/gone/', 1],
      ['/down/', 3],
    ] as const) {
      await api(cloud.url, 'PUT', '/v1/account/webhook', { token: owner.token, body: { url: `${receiver.base}${path}`, secret: SECRET } });
      await api(cloud.url, 'DELETE', '/v1/account/webhook', { token: viewer.token });
      const before = sender.stats();
      await alertFrom('RTRY');
      await waitUntil(`a try at ${path}`, () => receiver.on(path).length > 0);
      await sender.idle();
      const hits = receiver.on(path);
      expect(hits, path).toHaveLength(attempts);
      // every try is the same notification, signed again
      expect(new Set(hits.map((h) => JSON.parse(h.body).id)).size).toBe(1);
      const after = sender.stats();
      expect(after.delivered - before.delivered, path).toBe(path === '/flaky/' ? 1 : 0);
      expect(after.failed - before.failed, path).toBe(path === '/flaky/' ? 0 : 1);
      receiver.got.length = 0;
    }
  });

  it('a receiver that never answers holds up nothing: the stream has the notification while the POST still waits', async () => {
    await api(cloud.url, 'PUT', '/v1/account/webhook', { token: owner.token, body: { url: `${receiver.base}/hang/`, secret: SECRET } });
    const alert = await alertFrom('HANG');
    await waitUntil('the hanging POST', () => receiver.on('/hang/').length > 0);
    // the POST is open at the receiver, and the notification is already listed
    await waitForNotification(cloud.url, owner.token, (n) => n.at === alert.at && n.serial === alert.serial);
    await notificationsOf(cloud.app).webhooks.idle();
    expect(receiver.on('/hang/')).toHaveLength(3);
    await api(cloud.url, 'DELETE', '/v1/account/webhook', { token: owner.token });
    expect(await cloud.store.getWebhooks([owner.accountId])).toEqual([]);
  });
});

describe('webhook URLs outside development', () => {
  let cloud: TestCloud;
  let acct: TestAccount;
  beforeAll(async () => {
    cloud = await startTestCloud({ notifications: { webhook: { maxAttempts: 1 } } });
    acct = await registerAndLogin(cloud.url);
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('only https:// URLs of public hosts, without credentials, are taken', async () => {
    for (const url of [
      'http://hooks.example.com/x',
      'https://127.0.0.1/x',
      'https://127.8.9.10:8443/x',
      'https://localhost/x',
      'https://api.localhost/x',
      'https://10.1.2.3/x',
      'https://172.20.0.1/x',
      'https://192.168.1.1/x',
      'https://169.254.169.254/latest/meta-data',
      'https://[::1]/x',
      'https://[fd00::1]/x',
      'https://[::ffff:127.0.0.1]/x',
      'https://0.0.0.0/x',
      'https://user:pass@hooks.example.com/x',
      'ftp://hooks.example.com/x',
    ]) {
      const res = await api(cloud.url, 'PUT', '/v1/account/webhook', { token: acct.token, body: { url, secret: SECRET } });
      expectCatalogueError(res, url.startsWith('ftp') ? 'WEBHOOK_URL_INVALID' : 'WEBHOOK_URL_INVALID');
    }
    expect(await cloud.store.getWebhooks([acct.accountId])).toEqual([]);
    for (const body of [{ url: 'not a url', secret: SECRET }, { url: 'https://hooks.example.com/x', secret: 'short' }, { url: 'https://hooks.example.com/x' }]) {
      expectCatalogueError(await api(cloud.url, 'PUT', '/v1/account/webhook', { token: acct.token, body }), 'VALIDATION_FAILED');
    }
    const ok = await api(cloud.url, 'PUT', '/v1/account/webhook', { token: acct.token, body: { url: 'https://hooks.example.com/x', secret: SECRET } });
    expect(ok.status).toBe(200);
    expect((await cloud.store.getWebhooks([acct.accountId])).map((h) => h.url)).toEqual(['https://hooks.example.com/x']);
    await api(cloud.url, 'DELETE', '/v1/account/webhook', { token: acct.token });
  });

  it('a public-looking name that resolves to a loopback address gets no request', async () => {
    // this machine's own name: /etc/hosts maps it to a loopback address
    const name = hostname();
    const { address } = await lookup(name);
    expect(isSpecialAddress(address), `${name} resolves to ${address}`).toBe(true);
    const receiver = await startReceiver();
    try {
      const port = new URL(receiver.base).port;
      await setPlan(cloud.url, acct.token, 'standard');
      // set in the store directly: the route would take the name (it is not an address), the delivery must not
      await cloud.store.putWebhook({ accountId: acct.accountId, url: `http://${name}:${port}/sneaky`, secret: SECRET, createdAt: Date.now() });
      const sender = notificationsOf(cloud.app).webhooks;
      const before = sender.stats();
      const cam = await claimDevice(cloud.url, acct.token, randomSerial('DNSR'));
      const device = await connectDeviceMqtt(cam);
      const alert = await device.publishAlert();
      await device.end();
      await waitForNotification(cloud.url, acct.token, (n) => n.at === alert.at);
      await waitUntil('the refused delivery', () => sender.stats().failed > before.failed);
      expect(receiver.got).toEqual([]);
    } finally {
      await receiver.close();
    }
  });
});

const pgSkip = await postgresSkipReason();
const mqSkip = mosquittoSkipReason();
const multiSkip = pgSkip ?? mqSkip;

describe.skipIf(multiSkip !== null)(`two cloud nodes on one PostgreSQL and one Mosquitto${multiSkip ? ` (skipped: ${multiSkip})` : ''}`, () => {
  it('each node hears the alert and tells its own streams; the webhook is sent exactly once', async () => {
    const mosquitto = await startMosquitto();
    const schema = await createTestSchema();
    const receiver = await startReceiver();
    const nodes: RunningServer[] = [];
    const dirs: string[] = [];
    try {
      const { mkdtemp } = await import('node:fs/promises');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      for (let i = 0; i < 2; i++) {
        const dataDir = await mkdtemp(join(tmpdir(), 'camvault-node-'));
        dirs.push(dataDir);
        const config = loadCloudConfig({
          env: {},
          overrides: {
            host: '127.0.0.1',
            port: 0,
            dataDir,
            logLevel: 'silent',
            databaseUrl: schema.url,
            databasePoolSize: 3,
            urlSigningSecret: 'a-shared-url-signing-secret-0123',
            mqtt: { url: mosquitto.url, adminUser: mosquitto.adminUser, adminPassword: mosquitto.adminPassword },
            notifications: { webhook: { allowInsecure: true } },
          },
        });
        nodes.push(await startServer(config, { closeGraceMs: 1000 }));
      }
      const [n1, n2] = nodes as [RunningServer, RunningServer];
      // sign up through node 1 (its development outbox has the code), log in on node 2
      const email = `nodes-${Date.now()}@example.com`;
      const password = 'correct horse battery staple';
      const outbox = n1.mailer as DevOutbox;
      const since = outbox.cursor;
      expect((await api(n1.url, 'POST', '/v1/accounts', { body: { email, password } })).status).toBe(202);
      const code = await outbox.waitForCode(email, since);
      expect((await api(n1.url, 'POST', '/v1/accounts/verify', { body: { email, code } })).status).toBe(200);
      const login = await api(n2.url, 'POST', '/v1/sessions', { body: { email, password } });
      const acct = { token: login.body.token as string };
      await setPlan(n1.url, acct.token, 'standard');
      expect((await api(n2.url, 'PUT', '/v1/account/webhook', { token: acct.token, body: { url: `${receiver.base}/once`, secret: SECRET } })).status).toBe(200);
      const cam = await claimDevice(n1.url, acct.token, randomSerial('NODE'));

      // a stream on each node
      const streams = await Promise.all(
        [n1, n2].map(async (n) => {
          const abort = new AbortController();
          const res = await fetch(`${n.url}/v1/notifications`, { headers: { authorization: `Bearer ${acct.token}`, accept: 'text/event-stream' }, signal: abort.signal });
          let text = '';
          const reading = (async () => {
            try {
              for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) text += Buffer.from(c).toString('utf8');
            } catch {
              // aborted
            }
          })();
          return { text: () => text, close: async () => (abort.abort(), await reading) };
        }),
      );

      const device = await connectDeviceMqtt(cam);
      const alerts = [await device.publishAlert(), await device.publishAlert({ at: new Date(Date.now() + 1).toISOString() })];
      await device.end();
      for (const s of streams) await waitUntil('both alerts on this node', () => alerts.every((a) => s.text().includes(a.at)));
      await waitUntil('the webhook', () => receiver.on('/once').length >= 2);
      for (const n of nodes) {
        await notificationsOf(n.app).notifier.idle();
        await notificationsOf(n.app).webhooks.idle();
      }
      await sleep(200);
      const ids = receiver.on('/once').map((r) => JSON.parse(r.body).id as string);
      expect(ids).toHaveLength(2);
      expect(new Set(ids).size).toBe(2);
      for (const s of streams) {
        expect(s.text().match(/^event: alert$/gm)).toHaveLength(2);
        await s.close();
      }
      // both nodes took part: each stored its own share of rows or found them stored
      const stats = nodes.map((n) => notificationsOf(n.app).notifier.stats());
      expect(stats.map((s) => s.alertsIn)).toEqual([2, 2]);
      expect(stats[0]!.stored + stats[1]!.stored).toBe(2);
      expect(stats[0]!.webhooksQueued + stats[1]!.webhooksQueued).toBe(2);
    } finally {
      for (const n of nodes) await n.close();
      await receiver.close();
      await mosquitto.stop();
      await schema.drop();
      const { rm } = await import('node:fs/promises');
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    }
  });
});
