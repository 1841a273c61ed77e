/**
 * `npm run bench -- mqtt`: a fleet against one cloud process (issue 7,
 * "Benchmark bench/mqtt"). 5,000 simulated devices, each sending an alert
 * every 10 s (500 a second in all), through the broker into the cloud, which
 * turns each into a notification (stored, rate-limited per device) and
 * pushes it over SSE to the owner's stream. Run once on the embedded broker
 * (aedes inside the cloud) and once on Mosquitto with dynsec (external; the
 * cloud is its admin client). Where Mosquitto is not installed, its figures
 * say so and are not printed as passing.
 *
 * Figures (JSON lines, bench/_figures.ts):
 * - delivered_per_s_aedes, delivered_per_s_mosquitto: notifications that
 *   reached the SSE stream per second of sending; target 99% of what was
 *   sent (no loss).
 * - p95_ms_aedes_5000_devices, p95_ms_mosquitto_5000_devices: device publish
 *   → SSE event at the subscriber, 95th percentile; target 100 ms.
 * - alert_to_sse_p95_ms: a motion event in the sim → the real agent's alert
 *   → the cloud → the owner's SSE stream, 100 alerts; target 1 s (see
 *   alertToSse). MQTT_BENCH_E2E=0 skips it.
 *
 * The cloud runs as its own process (`npm run cloud`), so the fleet and the
 * cloud do not share an event loop; its metadata is SQLite (seeded straight
 * into the file: one account owning every device, with a session), and on
 * Mosquitto the 5,000 device clients and roles are written into the dynsec
 * file before the broker starts (DESIGN.md: provisioning them one by one is
 * quadratic). The devices are mqtt.js clients (MQTT 3.1.1, client id =
 * username = serial), connected 250 at a time, each publishing a retained
 * "online" and then its alerts at QoS 1, evenly spread over each 10 s.
 *
 * MQTT_BENCH_DEVICES (default 5000), MQTT_BENCH_SECONDS (sending time,
 * default 30), MQTT_BENCH_BROKERS (aedes,mosquitto) make a quick run smaller.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { ulid } from 'ulid';
import { Agent } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import { hashPassword } from '../cloud/auth/passwords.js';
import { loadCloudConfig } from '../cloud/config.js';
import type { DevOutbox } from '../cloud/mail/index.js';
import { startServer } from '../cloud/server.js';
import { SimCamera } from '../firmware-sim/camera.js';
import { createLogger } from '../shared/log.js';
import { sha256Hex } from '../cloud/auth/tokens.js';
import { SqliteStore } from '../cloud/store/sqlite.js';
import { alertsTopic, statusTopic } from '../shared/topics.js';
import { mosquittoSkipReason, startMosquitto, type RunningMosquitto } from '../test/helpers/mosquitto.js';
import { figurePrinter, round } from './_figures.js';

const print = figurePrinter('mqtt');
const DEVICES = Number(process.env.MQTT_BENCH_DEVICES ?? 5000);
const SECONDS = Number(process.env.MQTT_BENCH_SECONDS ?? 30);
const PERIOD_MS = 10_000;
const CONNECT_CONCURRENCY = 250;
const TAIL_MS = 5000;
const P95_TARGET_MS = 100;
const DELIVERY_TARGET = 0.99;
const BROKERS = (process.env.MQTT_BENCH_BROKERS ?? 'aedes,mosquitto')
  .split(',')
  .map((b) => b.trim())
  .filter((b): b is 'aedes' | 'mosquitto' => b === 'aedes' || b === 'mosquitto');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const E2E_ALERTS = Number(process.env.MQTT_BENCH_E2E_ALERTS ?? 100);
const ALERT_TO_SSE_TARGET_MS = 1000;

/**
 * alert_to_sse_p95_ms: the whole path, with the real parts. A cloud (SQLite,
 * local store, aedes embedded) and a firmware-sim camera with motion events;
 * the real Agent claims the camera (its ffmpeg records the stream) and
 * publishes an alert for each motion event; the owner's SSE stream receives
 * the notification. Each of E2E_ALERTS motion events, 300 ms apart: SSE
 * arrival − the time in the sim's event (device clock = this clock). The
 * cloud's per-device alert limit (12 a minute by default) is raised for the
 * run: it exists to stop a flood, and 100 alerts in 30 s is one.
 */
async function alertToSse(): Promise<{ sent: number; received: number; p50Ms: number; p95Ms: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'camvault-bench-alert-'));
  const silent = createLogger({ level: 'silent' });
  const config = loadCloudConfig({
    env: {},
    overrides: {
      host: '127.0.0.1',
      port: 0,
      dataDir: join(dir, 'cloud'),
      logLevel: 'silent',
      notifications: { alertBurst: 1000, alertsPerMinute: 60_000 },
    },
  });
  const server = await startServer(config, { logger: silent });
  let camera: SimCamera | undefined;
  let agent: Agent | undefined;
  let stream: Awaited<ReturnType<typeof openStream>> | undefined;
  try {
    const call = async (method: string, path: string, body: unknown, auth?: string): Promise<Record<string, unknown>> => {
      const res = await fetch(server.url + path, {
        method,
        headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
      return text ? (JSON.parse(text) as Record<string, unknown>) : {};
    };
    const email = `bench-mqtt-${randomBytes(4).toString('hex')}@example.com`;
    const password = 'correct horse battery staple';
    const outbox = server.mailer as DevOutbox;
    const since = outbox.cursor;
    await call('POST', '/v1/accounts', { email, password });
    await call('POST', '/v1/accounts/verify', { email, code: await outbox.waitForCode(email, since) });
    const { token } = await call('POST', '/v1/sessions', { email, password });
    await call('PUT', '/v1/account/plan', { plan: 'premium' }, `Bearer ${token as string}`);
    const { code } = await call('POST', '/v1/devices/bind-codes', {}, `Bearer ${token as string}`);

    const serial = 'BENCHALERT01';
    camera = await SimCamera.start({ serial, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger: silent });
    stream = await openStream(server.url, token as string);
    agent = await Agent.start({
      config: loadAgentConfig({
        env: {},
        overrides: {
          serial,
          cloudUrl: server.url,
          input: camera.streamUrl,
          eventsUrl: camera.eventsUrl,
          dataDir: join(dir, 'agent'),
          segmentSeconds: 2,
          bindCode: code as string,
          development: true,
          logLevel: 'silent',
        },
      }),
      logger: silent,
    });
    const a = agent;
    const deadline = Date.now() + 60_000;
    while (a.mqttStatus?.state !== 'connected') {
      if (Date.now() > deadline) throw new Error(`the agent did not connect to the broker: ${JSON.stringify(a.mqttStatus)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const sentAt: number[] = [];
    for (let i = 0; i < E2E_ALERTS; i++) {
      camera.triggerMotion();
      sentAt.push(Date.now());
      await new Promise((r) => setTimeout(r, 300));
    }
    // the last ones: a few seconds to arrive
    const arrivals = stream.arrivals;
    const until = Date.now() + 10_000;
    while (arrivals.size < E2E_ALERTS && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    // latency: arrival − the event time the alert carries (key: "serial at")
    const lat = [...arrivals.entries()].map(([key, arrived]) => arrived - Date.parse(key.split(' ')[1] as string)).sort((x, y) => x - y);
    const pct = (p: number): number => (lat.length ? (lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)] as number) : Number.NaN);
    return { sent: sentAt.length, received: arrivals.size, p50Ms: pct(50), p95Ms: pct(95) };
  } finally {
    await stream?.close();
    await agent?.stop();
    await camera?.stop();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

interface Seeded {
  dataDir: string;
  token: string;
  devices: { serial: string; password: string }[];
}

/** One account (the plan allows every camera) owning DEVICES devices, and a session, straight into the SQLite file. */
async function seed(): Promise<Seeded> {
  const dataDir = await mkdtemp(join(tmpdir(), 'camvault-bench-mqtt-'));
  const dbPath = join(dataDir, 'camvault.db');
  const store = new SqliteStore({ path: dbPath });
  const accountId = ulid();
  const now = Date.now();
  await store.createAccount({ id: accountId, email: `bench-${accountId.toLowerCase()}@example.com`, passwordHash: await hashPassword('bench password, unused'), plan: 'premium', createdAt: now });
  await store.markEmailVerified(accountId, now);
  const token = randomBytes(32).toString('base64url');
  await store.createSession({ tokenHash: sha256Hex(token), accountId, createdAt: now, expiresAt: now + 24 * 3600_000 });
  await store.close();
  const devices = Array.from({ length: DEVICES }, (_, i) => ({ serial: `BENCH${String(i).padStart(8, '0')}`, password: randomBytes(32).toString('base64url') }));
  const db = new Database(dbPath);
  try {
    const insert = db.prepare('INSERT INTO devices (serial, model, account_id, token_hash, mqtt_password_hash, bound_at) VALUES (?, ?, ?, ?, ?, ?)');
    db.transaction(() => {
      for (const d of devices) insert.run(d.serial, 'BENCH', accountId, sha256Hex(`${d.password}-token`), sha256Hex(d.password), now);
    })();
  } finally {
    db.close();
  }
  return { dataDir, token, devices };
}

interface RunningCloud {
  url: string;
  /** aedes's port (the embedded broker) */
  mqttPort: number | undefined;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `npm run cloud` in its own process, on free ports; resolves once it listens (and, on aedes, its broker too). */
function startCloud(dataDir: string, env: Record<string, string>): Promise<RunningCloud> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'cloud/server.ts')], {
    cwd: root,
    env: {
      ...process.env,
      CAMVAULT_DATA_DIR: dataDir,
      CAMVAULT_HOST: '127.0.0.1',
      CAMVAULT_PORT: '0',
      CAMVAULT_MQTT_PORT: '0',
      CAMVAULT_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let url: string | undefined;
    let mqttPort: number | undefined;
    let stderr = '';
    let buf = '';
    const external = env.CAMVAULT_MQTT_URL !== undefined;
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.stdout?.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (url && (mqttPort || external)) continue;
        try {
          const j = JSON.parse(line) as { msg?: string; port?: number };
          const m = /listening on (http:\/\/\S+)/.exec(j.msg ?? '');
          if (m) url = m[1];
          if (j.msg === 'MQTT broker listening') mqttPort = j.port;
        } catch {
          // not a log line
        }
        if (url && (mqttPort || external)) {
          resolve({
            url,
            mqttPort,
            child,
            stop: () =>
              new Promise<void>((r) => {
                if (child.exitCode !== null) return r();
                child.once('exit', () => r());
                child.kill('SIGTERM');
                setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
              }),
          });
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`the cloud exited (${code}) before it listened: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)));
  });
}

/** The owner's SSE stream: every notification's arrival time, by (serial, at). */
async function openStream(url: string, token: string): Promise<{ arrivals: Map<string, number>; close(): Promise<void> }> {
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/notifications`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal: abort.signal });
  if (res.status !== 200 || !res.body) throw new Error(`the stream answered ${res.status}`);
  const arrivals = new Map<string, number>();
  const decoder = new TextDecoder();
  const reading = (async () => {
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const now = performance.timeOrigin + performance.now();
        buf += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!data) continue;
          const n = JSON.parse(data) as { serial: string; at: string };
          const key = `${n.serial} ${n.at}`;
          if (!arrivals.has(key)) arrivals.set(key, now);
        }
      }
    } catch {
      // aborted at the end
    }
  })();
  return {
    arrivals,
    close: async () => {
      abort.abort();
      await reading;
    },
  };
}

/** Connects the fleet, CONNECT_CONCURRENCY at a time; each device says "online" (retained) with its "offline" will. */
async function connectFleet(brokerUrl: string, devices: Seeded['devices']): Promise<{ clients: MqttClient[]; connectMs: number }> {
  const clients: MqttClient[] = new Array(devices.length);
  const t0 = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= devices.length) return;
      const d = devices[i] as Seeded['devices'][number];
      const c = await mqtt.connectAsync(
        brokerUrl,
        {
          protocolVersion: 4,
          clientId: d.serial,
          username: d.serial,
          password: d.password,
          clean: true,
          keepalive: 120,
          reconnectPeriod: 0,
          connectTimeout: 30_000,
          will: { topic: statusTopic(d.serial), payload: Buffer.from('offline'), qos: 1, retain: true },
        },
        false,
      );
      c.publish(statusTopic(d.serial), 'online', { qos: 1, retain: true });
      clients[i] = c;
    }
  };
  await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
  return { clients, connectMs: performance.now() - t0 };
}

interface Outcome {
  sent: number;
  delivered: number;
  p95Ms: number;
  p50Ms: number;
  connectMs: number;
  sendSeconds: number;
}

/**
 * Every device sends an alert every PERIOD_MS, device i at offset i/N of the
 * period, for SECONDS; one 5 ms tick publishes whatever is due (5,000 timers
 * would cost more than the publishing). `at` is the publish time: the
 * latency is SSE arrival − at, both on this machine's clock.
 */
async function drive(clients: MqttClient[], devices: Seeded['devices'], arrivals: Map<string, number>): Promise<Omit<Outcome, 'connectMs'>> {
  const sentAt = new Map<string, number>();
  const start = Date.now() + 200;
  const end = start + SECONDS * 1000;
  const offsets = devices.map((_, i) => (i * PERIOD_MS) / devices.length);
  const due = devices.map((_, i) => start + (offsets[i] as number));
  let lastAt = '';
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = Date.now();
      if (now >= end) {
        clearInterval(tick);
        resolve();
        return;
      }
      for (let i = 0; i < devices.length; i++) {
        if ((due[i] as number) > now) continue;
        const serial = (devices[i] as { serial: string }).serial;
        // a distinct `at` per alert of a device, at millisecond precision
        let at = new Date(performance.timeOrigin + performance.now()).toISOString();
        if (at === lastAt) at = new Date(Date.parse(at) + 1).toISOString();
        lastAt = at;
        sentAt.set(`${serial} ${at}`, Date.parse(at));
        (clients[i] as MqttClient).publish(alertsTopic(serial), JSON.stringify({ serial, type: 'motion', at }), { qos: 1 });
        due[i] = (due[i] as number) + PERIOD_MS;
      }
    }, 5);
  });
  // the tail: alerts still on their way
  const tailEnd = Date.now() + TAIL_MS;
  while (Date.now() < tailEnd) {
    let missing = 0;
    for (const k of sentAt.keys()) if (!arrivals.has(k)) missing++;
    if (missing === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const latencies: number[] = [];
  for (const [k, t] of sentAt) {
    const a = arrivals.get(k);
    if (a !== undefined) latencies.push(a - t);
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => (latencies.length ? (latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] as number) : Number.NaN);
  return { sent: sentAt.size, delivered: latencies.length, p95Ms: pct(95), p50Ms: pct(50), sendSeconds: SECONDS };
}

async function runOn(broker: 'aedes' | 'mosquitto'): Promise<Outcome> {
  const seeded = await seed();
  let mosquitto: RunningMosquitto | undefined;
  let cloud: RunningCloud | undefined;
  let clients: MqttClient[] = [];
  try {
    const env: Record<string, string> = {};
    if (broker === 'mosquitto') {
      mosquitto = await startMosquitto({ devices: seeded.devices, extraConfig: ['max_connections -1'] });
      Object.assign(env, { CAMVAULT_MQTT_URL: mosquitto.url, CAMVAULT_MQTT_ADMIN_USER: mosquitto.adminUser, CAMVAULT_MQTT_ADMIN_PASSWORD: mosquitto.adminPassword });
    }
    cloud = await startCloud(seeded.dataDir, env);
    const brokerUrl = mosquitto ? mosquitto.url : `mqtt://127.0.0.1:${cloud.mqttPort}`;
    const stream = await openStream(cloud.url, seeded.token);
    const fleet = await connectFleet(brokerUrl, seeded.devices);
    clients = fleet.clients;
    const outcome = await drive(clients, seeded.devices, stream.arrivals);
    await stream.close();
    return { ...outcome, connectMs: fleet.connectMs };
  } finally {
    for (const c of clients) c?.end(true);
    await cloud?.stop();
    await mosquitto?.stop();
    await rm(seeded.dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  let failed = false;
  for (const broker of BROKERS) {
    if (broker === 'mosquitto') {
      const why = mosquittoSkipReason();
      if (why) {
        console.error(`bench mqtt: Mosquitto figures not measured: ${why}`);
        failed = true;
        continue;
      }
    }
    const o = await runOn(broker);
    const rate = o.delivered / o.sendSeconds;
    const offered = o.sent / o.sendSeconds;
    const deliveredOk = o.delivered >= DELIVERY_TARGET * o.sent;
    print({
      figure: `delivered_per_s_${broker}`,
      value: round(rate, 1),
      unit: 'notifications/s',
      target: round(DELIVERY_TARGET * offered, 1),
      pass: deliveredOk,
      devices: DEVICES,
      sent: o.sent,
      delivered: o.delivered,
      seconds: o.sendSeconds,
      connect_all_s: round(o.connectMs / 1000, 1),
    });
    const p95Ok = Number.isFinite(o.p95Ms) && o.p95Ms <= P95_TARGET_MS;
    print({ figure: `p95_ms_${broker}_${DEVICES}_devices`, value: round(o.p95Ms, 1), unit: 'ms', target: P95_TARGET_MS, pass: p95Ok, p50_ms: round(o.p50Ms, 1) });
    if (!deliveredOk || !p95Ok) failed = true;
  }

  if (process.env.MQTT_BENCH_E2E !== '0') {
    const e2e = await alertToSse();
    const ok = e2e.received === e2e.sent && e2e.p95Ms < ALERT_TO_SSE_TARGET_MS;
    print({
      figure: 'alert_to_sse_p95_ms',
      value: round(e2e.p95Ms, 1),
      unit: 'ms',
      target: ALERT_TO_SSE_TARGET_MS,
      pass: ok,
      p50_ms: round(e2e.p50Ms, 1),
      alerts: e2e.sent,
      received: e2e.received,
      broker: 'aedes',
    });
    if (!ok) failed = true;
  }

  process.exit(failed ? 1 : 0);
}

void main().catch((err: unknown) => {
  console.error(`bench mqtt: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
