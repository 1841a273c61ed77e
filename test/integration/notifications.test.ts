/**
 * Alerts to notifications (issue 7), end to end on a real cloud: a camera's
 * MQTT alert reaches its owner and its grantees over server-sent events
 * (GET /v1/notifications), and nobody else; streams resume with
 * Last-Event-ID; the payload is an allowlist; a device over its limit is
 * dropped; unbinding tells a connected camera and cuts its MQTT session.
 *
 * The main flows run twice: on the embedded broker (aedes) and on a real
 * Mosquitto with dynsec started by this file (skipped, in one line, where
 * Mosquitto is not installed).
 */
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appContext } from '../../cloud/app.js';
import { notificationsOf } from '../../cloud/notifications/index.js';
import { eraseOldNotifications } from '../../cloud/notifications/erase.js';
import { Notification } from '../../shared/contracts/alerts.js';
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
  type ClaimedDevice,
  type TestAccount,
  type TestCloud,
  type TestCloudOptions,
} from '../helpers/cloud.js';
import { mosquittoSkipReason, startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';

/** after the last expected event arrived, how long an unexpected one gets to show up (it must not) */
const SETTLE_MS = 300;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitUntil<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 8000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

/** A subscriber's EventSource, by hand: fetch with Accept: text/event-stream, the body parsed as it arrives. */
async function openStream(base: string, token: string, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const res = await fetch(`${base}/v1/notifications`, {
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers },
    signal: abort.signal,
  });
  const events: SseEvent[] = [];
  let comments = 0;
  let retry: number | undefined;
  let ended = false;
  const done = (async () => {
    if (!res.ok || !res.body) return;
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev: SseEvent = { data: '' };
          let isEvent = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) {
              comments++;
              continue;
            }
            if (line.startsWith('retry: ')) {
              retry = Number(line.slice(7));
              continue;
            }
            if (line.startsWith('id: ')) ev.id = line.slice(4);
            else if (line.startsWith('event: ')) ev.event = line.slice(7);
            else if (line.startsWith('data: ')) ev.data += line.slice(6);
            else continue;
            isEvent = true;
          }
          if (isEvent) events.push(ev);
        }
      }
    } catch {
      // aborted by close()
    }
    ended = true;
  })();
  return {
    status: res.status,
    headers: res.headers,
    events,
    /** the notifications received, parsed with the contract (strict: no other field) */
    notifications: (): Notification[] => events.filter((e) => e.event === 'alert').map((e) => Notification.parse(JSON.parse(e.data))),
    comments: () => comments,
    retry: () => retry,
    ended: () => ended,
    done,
    body: res.ok ? undefined : await res.json().catch(() => undefined),
    close: async () => {
      abort.abort();
      await done;
    },
  };
}
type Stream = Awaited<ReturnType<typeof openStream>>;

const mosquittoSkip = mosquittoSkipReason();
if (mosquittoSkip) console.log(`Mosquitto suites skipped: ${mosquittoSkip}`);

for (const broker of ['aedes', 'mosquitto'] as const) {
  describe.skipIf(broker === 'mosquitto' && mosquittoSkip !== null)(`notifications over ${broker}${broker === 'mosquitto' && mosquittoSkip ? ` (skipped: ${mosquittoSkip})` : ''}`, () => {
    let mosquitto: RunningMosquitto | undefined;
    let cloud: TestCloud;
    let owner: TestAccount;
    let viewer: TestAccount;
    let stranger: TestAccount;
    let cam: ClaimedDevice;
    let strangersCam: ClaimedDevice;
    const streams: Stream[] = [];
    const stream = async (token: string, headers?: Record<string, string>): Promise<Stream> => {
      const s = await openStream(cloud.url, token, headers);
      streams.push(s);
      return s;
    };

    beforeAll(async () => {
      const overrides: TestCloudOptions = { notifications: { heartbeatSec: 0.2, maxStreamsPerAccount: 4 } };
      if (broker === 'mosquitto') {
        mosquitto = await startMosquitto();
        overrides.mqtt = { url: mosquitto.url, adminUser: mosquitto.adminUser, adminPassword: mosquitto.adminPassword };
      }
      // a short grace: fetch leaves a connection behind when a stream is aborted, which only the grace cuts
      cloud = await startTestCloud({ ...overrides, closeGraceMs: 1000 });
      [owner, viewer, stranger] = await Promise.all([registerAndLogin(cloud.url), registerAndLogin(cloud.url), registerAndLogin(cloud.url)]);
      await setPlan(cloud.url, owner.token, 'standard');
      await setPlan(cloud.url, stranger.token, 'standard');
      cam = await claimDevice(cloud.url, owner.token, randomSerial('NOTE'));
      strangersCam = await claimDevice(cloud.url, stranger.token, randomSerial('STRG'));
      await shareDevice(cloud.url, owner.token, cam.serial, viewer.accountId, 'viewer');
    });
    afterAll(async () => {
      for (const s of streams) await s.close();
      await cloud?.close();
      await mosquitto?.stop();
    });

    it("the claim names the broker, and GET /v1/device/config names the same one", async () => {
      const url = (cam.mqtt as { url?: string }).url;
      expect(url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
      if (mosquitto) expect(url).toBe(mosquitto.url);
      const res = await api(cloud.url, 'GET', '/v1/device/config', { device: cam });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ serial: cam.serial, mqtt: { url, username: cam.serial } });
    });

    it("an alert reaches its owner and its grantee over SSE, as the allowlisted notification only; a stranger's stream gets nothing of it", async () => {
      const [sOwner, sViewer, sStranger] = [await stream(owner.token), await stream(viewer.token), await stream(stranger.token)];
      expect(sOwner.status).toBe(200);
      expect(sOwner.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(sOwner.headers.get('cache-control')).toBe('no-store');
      const device = await connectDeviceMqtt(cam);
      // one that is not an alert the schema allows: dropped at intake, never forwarded
      await device.client.publishAsync(`devices/${cam.serial}/alerts`, JSON.stringify({ serial: cam.serial, type: 'motion', at: new Date().toISOString(), ssid: 'home-wifi' }), { qos: 1 });
      const alert = await device.publishAlert({ clipId: '01ARZ3NDEKTSV4RRFFQ69G5FAV' });
      await waitUntil('the owner', () => sOwner.notifications().length > 0);
      await waitUntil('the viewer', () => sViewer.notifications().length > 0);
      // the stranger's own camera as a marker: once its alert is in, A's would have been too
      const marker = await connectDeviceMqtt(strangersCam);
      await marker.publishAlert();
      await waitUntil("the stranger's own", () => sStranger.notifications().length > 0);
      await sleep(SETTLE_MS);

      const [got] = sOwner.notifications();
      expect(got).toEqual({ id: expect.stringMatching(/^[0-9a-f]{32}$/), serial: cam.serial, type: 'motion', at: alert.at, clipId: alert.clipId, receivedAt: expect.any(String) });
      expect(sOwner.events[0]?.id).toBe(got?.id);
      expect(sOwner.notifications()).toHaveLength(1);
      expect(sViewer.notifications()).toEqual([got]);
      expect(sStranger.notifications().map((n) => n.serial)).toEqual([strangersCam.serial]);
      // the JSON form lists the same, newest first
      const list = await api(cloud.url, 'GET', '/v1/notifications', { token: owner.token });
      expect(list.status).toBe(200);
      expect(list.body.notifications[0]).toEqual(got);
      await device.end();
      await marker.end();
    });

    it('the same alert delivered twice (a QoS 1 redelivery) notifies once', async () => {
      const s = await stream(owner.token);
      const device = await connectDeviceMqtt(cam);
      const at = new Date().toISOString();
      await device.publishAlert({ at });
      await device.publishAlert({ at });
      const next = await device.publishAlert({ at: new Date(Date.parse(at) + 1).toISOString() });
      await waitUntil('the later alert', () => s.notifications().find((n) => n.at === next.at));
      await sleep(SETTLE_MS);
      expect(s.notifications().map((n) => n.at)).toEqual([at, next.at]);
      const list = await api(cloud.url, 'GET', '/v1/notifications', { token: owner.token });
      expect(list.body.notifications.filter((n: Notification) => n.at === at)).toHaveLength(1);
      await device.end();
      await s.close();
    });

    it('Last-Event-ID resumes a stream: what was missed comes first, in order, then live alerts, nothing twice', async () => {
      const device = await connectDeviceMqtt(cam);
      const first = await stream(owner.token);
      const a1 = await device.publishAlert();
      await waitUntil('a1', () => first.notifications().find((n) => n.at === a1.at));
      const lastId = first.events.at(-1)?.id as string;
      await first.close();
      const missed = [];
      for (let i = 0; i < 3; i++) {
        const a = await device.publishAlert({ at: new Date(Date.now() + i + 1).toISOString() });
        missed.push(a.at);
        await waitForNotification(cloud.url, owner.token, (n) => n.at === a.at);
      }
      const resumed = await stream(owner.token, { 'last-event-id': lastId });
      await waitUntil('the missed three', () => resumed.notifications().length >= 3);
      const live = await device.publishAlert({ at: new Date(Date.now() + 10).toISOString() });
      await waitUntil('the live one', () => resumed.notifications().find((n) => n.at === live.at));
      await sleep(SETTLE_MS);
      expect(resumed.retry()).toBe(3000);
      expect(resumed.notifications().map((n) => n.at)).toEqual([...missed, live.at]);
      // an id the cloud does not know (erased, or never ours): no replay, live only
      const unknown = await stream(owner.token, { 'last-event-id': '0'.repeat(32) });
      const live2 = await device.publishAlert({ at: new Date(Date.now() + 20).toISOString() });
      await waitUntil('live2', () => unknown.notifications().find((n) => n.at === live2.at));
      expect(unknown.notifications().map((n) => n.at)).toEqual([live2.at]);
      await Promise.all([resumed.close(), unknown.close(), device.end()]);
    });

    it('unbinding tells a connected camera, disconnects its MQTT session, and its credential stops working; its alerts notify nobody after', async () => {
      const d = await claimDevice(cloud.url, owner.token, randomSerial('UNBD'));
      const session = await connectDeviceMqtt(d);
      const got: string[] = [];
      session.client.on('message', (_t, p) => got.push(p.toString('utf8')));
      await session.client.subscribeAsync(`devices/${d.serial}/commands`, { qos: 1 });
      const closed = new Promise<void>((resolve) => session.client.once('close', () => resolve()));
      // the cloud must know it is online before the unbind (Mosquitto: from its retained status)
      await waitUntil('online', () => appContext(cloud.app).broker?.isOnline(d.serial));
      const res = await api(cloud.url, 'DELETE', `/v1/devices/${d.serial}`, { token: owner.token });
      expect(res.status).toBe(204);
      await closed;
      expect(got.map((p) => JSON.parse(p))).toEqual([{ type: 'unbind', id: expect.any(String) }]);
      const url = (d.mqtt as { url?: string }).url as string;
      const again = await mqtt
        .connectAsync(url, { protocolVersion: 4, clientId: d.serial, username: d.serial, password: d.mqtt.password, reconnectPeriod: 0 }, false)
        .then((c) => (c.end(true), 'connected'), () => 'refused');
      expect(again).toBe('refused');
      expect((await api(cloud.url, 'GET', '/v1/device/config', { device: d })).status).toBe(401);
    });

    it('a revoked share stops the grantee\'s notifications at once; the owner still gets them', async () => {
      const d = await claimDevice(cloud.url, owner.token, randomSerial('SHRV'));
      await shareDevice(cloud.url, owner.token, d.serial, viewer.accountId, 'viewer');
      const [sOwner, sViewer] = [await stream(owner.token), await stream(viewer.token)];
      const device = await connectDeviceMqtt(d);
      const before = await device.publishAlert();
      await waitUntil('viewer before', () => sViewer.notifications().find((n) => n.at === before.at));
      expect((await api(cloud.url, 'DELETE', `/v1/devices/${d.serial}/shares/${viewer.accountId}`, { token: owner.token })).status).toBe(204);
      const after = await device.publishAlert({ at: new Date(Date.now() + 5).toISOString() });
      await waitUntil('owner after', () => sOwner.notifications().find((n) => n.at === after.at));
      await sleep(SETTLE_MS);
      expect(sViewer.notifications().filter((n) => n.serial === d.serial).map((n) => n.at)).toEqual([before.at]);
      await Promise.all([sOwner.close(), sViewer.close(), device.end()]);
    });
  });
}

describe('notification streams: limits, bad input, heartbeats, shutdown', () => {
  let cloud: TestCloud;
  let owner: TestAccount;
  let cam: ClaimedDevice;

  beforeAll(async () => {
    cloud = await startTestCloud({ notifications: { heartbeatSec: 0.1, maxStreamsPerAccount: 2, alertBurst: 3, alertsPerMinute: 0.1 }, closeGraceMs: 1000 });
    owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'standard');
    cam = await claimDevice(cloud.url, owner.token, randomSerial('LIMT'));
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it("alerts beyond a device's limit are dropped and counted: a burst of six makes three notifications", async () => {
    const notifier = notificationsOf(cloud.app).notifier;
    const before = notifier.stats();
    const device = await connectDeviceMqtt(cam);
    const sent = [];
    for (let i = 0; i < 6; i++) sent.push((await device.publishAlert({ at: new Date(Date.now() + i).toISOString() })).at);
    await waitUntil('six alerts in', () => notifier.stats().alertsIn - before.alertsIn === 6);
    await notifier.idle();
    const after = notifier.stats();
    expect(after.droppedRateLimited - before.droppedRateLimited).toBe(3);
    const list = await api(cloud.url, 'GET', '/v1/notifications', { token: owner.token });
    expect(list.body.notifications.map((n: Notification) => n.at).sort()).toEqual(sent.slice(0, 3).sort());
    await device.end();
  });

  it('refuses a stream without a session, a malformed Last-Event-ID, and streams past the per-account limit', async () => {
    const anonymous = await fetch(`${cloud.url}/v1/notifications`, { headers: { accept: 'text/event-stream' } });
    expect(anonymous.status).toBe(401);
    expectCatalogueError({ status: anonymous.status, headers: anonymous.headers, body: await anonymous.json() }, 'UNAUTHENTICATED');
    for (const bad of ['../../etc/passwd', 'X'.repeat(32), '0'.repeat(31), `${'0'.repeat(32)}\u00e9`]) {
      const res = await fetch(`${cloud.url}/v1/notifications`, { headers: { authorization: `Bearer ${owner.token}`, accept: 'text/event-stream', 'last-event-id': encodeURI(bad) } });
      expectCatalogueError({ status: res.status, headers: res.headers, body: await res.json() }, 'VALIDATION_FAILED');
    }
    const a = await openStream(cloud.url, owner.token);
    const b = await openStream(cloud.url, owner.token);
    const c = await openStream(cloud.url, owner.token);
    expect([a.status, b.status, c.status]).toEqual([200, 200, 429]);
    expect(c.body?.error?.code).toBe('TOO_MANY_STREAMS');
    await a.close();
    await waitUntil('a slot', async () => {
      const d = await openStream(cloud.url, owner.token);
      await d.close();
      return d.status === 200;
    });
    await b.close();
  });

  it('heartbeats keep a quiet stream alive, and logging out ends it', async () => {
    const login = await api(cloud.url, 'POST', '/v1/sessions', { body: { email: owner.email, password: owner.password } });
    const token = login.body.token as string;
    const s = await openStream(cloud.url, token);
    await waitUntil('three heartbeats', () => s.comments() >= 3);
    expect(s.ended()).toBe(false);
    expect((await api(cloud.url, 'DELETE', '/v1/sessions/current', { token })).status).toBe(204);
    await waitUntil('the stream to end', () => s.ended());
    await s.close();
  });

  it('HEAD answers the stream\'s headers without holding the connection', async () => {
    const res = await fetch(`${cloud.url}/v1/notifications`, { method: 'HEAD', headers: { authorization: `Bearer ${owner.token}`, accept: 'text/event-stream' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  });

  it('closing the server ends open streams instead of waiting for them', async () => {
    const own = await startTestCloud({ notifications: { heartbeatSec: 30 }, closeGraceMs: 120_000 });
    const acct = await registerAndLogin(own.url);
    const open = [await openStream(own.url, acct.token), await openStream(own.url, acct.token)];
    expect(open.map((s) => s.status)).toEqual([200, 200]);
    // with a 120 s grace, only the streams being ended by the server lets this finish inside the test's timeout
    await own.close();
    await Promise.all(open.map((s) => s.done));
    expect(open.every((s) => s.ended())).toBe(true);
  });
});

describe('notification retention', () => {
  it('the erase job removes notifications older than retentionDays and keeps the rest', async () => {
    const cloud = await startTestCloud({ notifications: { retentionDays: 7 } });
    try {
      const owner = await registerAndLogin(cloud.url);
      const cam = await claimDevice(cloud.url, owner.token, randomSerial('RETN'));
      const device = await connectDeviceMqtt(cam);
      const a = await device.publishAlert();
      await waitForNotification(cloud.url, owner.token, (n) => n.at === a.at);
      await device.end();
      const now = Date.now();
      expect(await eraseOldNotifications(cloud.store, now + 6 * 86_400_000, 7)).toBe(0);
      expect((await api(cloud.url, 'GET', '/v1/notifications', { token: owner.token })).body.notifications).toHaveLength(1);
      expect(await eraseOldNotifications(cloud.store, now + 8 * 86_400_000, 7)).toBe(1);
      expect((await cloud.store.listRecentNotifications(owner.accountId, 0, 10))).toEqual([]);
    } finally {
      await cloud.close();
    }
  });
});

describe('the embedded broker over TLS', () => {
  it("with the cloud's certificate set, devices are told mqtts:// and reach it only over TLS they trust", async () => {
    const { makeTestPki } = await import('../helpers/tls.js');
    const { readFileSync, rmSync } = await import('node:fs');
    const { sha256Hex, newBindCode } = await import('../../cloud/auth/tokens.js');
    const pki = makeTestPki();
    const cloud = await startTestCloud({ tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile } });
    try {
      // the API speaks HTTPS with a CA fetch does not trust: bind a device in the store, as a claim would
      const accountId = '01ARZ3NDEKTSV4RRFFQ69G5FAV';
      await cloud.store.createAccount({ id: accountId, email: 'tls-broker@example.com', passwordHash: 'h', plan: null, createdAt: Date.now() });
      const serial = randomSerial('TLSB');
      const password = 'a-device-mqtt-password-0123456789';
      const codeHash = sha256Hex(newBindCode());
      await cloud.store.createBindCode({ codeHash, accountId, createdAt: Date.now(), expiresAt: Date.now() + 60_000 });
      await cloud.store.claimDevice({ codeHash, serial, model: 'M', tokenHash: sha256Hex('t'), mqttPasswordHash: sha256Hex(password), nowMs: Date.now(), cameraLimit: () => null });
      const url = appContext(cloud.app).broker?.publicUrl as string;
      expect(url).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
      const opts = { protocolVersion: 4 as const, clientId: serial, username: serial, password, reconnectPeriod: 0, connectTimeout: 3000 };
      const trusted = await mqtt.connectAsync(url, { ...opts, ca: readFileSync(pki.caFile) }, false);
      expect(trusted.connected).toBe(true);
      await trusted.endAsync();
      // a device that does not trust the certificate does not connect; nor does plain MQTT on the TLS port
      const untrusted = await mqtt.connectAsync(url, opts, false).then((c) => (c.end(true), 'connected'), () => 'refused');
      expect(untrusted).toBe('refused');
      const plain = await mqtt.connectAsync(url.replace('mqtts:', 'mqtt:'), opts, false).then((c) => (c.end(true), 'connected'), () => 'refused');
      expect(plain).toBe('refused');
    } finally {
      await cloud.close();
      rmSync(pki.dir, { recursive: true, force: true });
    }
  });
});
