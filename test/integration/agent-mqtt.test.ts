/**
 * The agent's alerts over MQTT (issue 7), end to end on one machine: the
 * simulated camera's motion events reach a real agent (real ffmpeg
 * recording the sim's stream, real journal), which publishes alerts to a
 * real aedes broker behind a TCP proxy the test breaks. The device API is
 * the small stub; the broker checks the credential the stub's claim gave.
 *
 * - a motion becomes an alert with exactly the schema's fields; status
 *   "online" is retained;
 * - alerts made while the broker is unreachable wait in the journal, bounded
 *   (the oldest dropped and counted), and arrive in order after the network
 *   returns, and after an agent restart;
 * - a refused credential is retried slowly (connection attempts counted);
 * - `agent status` shows the broker, the outbox, the upload mode.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import type { AgentConfig, AgentConfigInput } from '../../agent/config.js';
import { Journal } from '../../agent/journal/journal.js';
import type { MqttStatus } from '../../agent/mqtt/connection.js';
import { formatDeviceStatus, readDeviceStatus } from '../../agent/status.js';
import type { SimCamera } from '../../firmware-sim/camera.js';
import { Alert } from '../../shared/contracts/alerts.js';
import { alertsTopic, statusTopic } from '../../shared/topics.js';
import { captureLog, simAgentConfig, startMqttRig, type MqttRig } from '../helpers/agent-run.js';
import type { DeviceApiStub } from '../helpers/device-api-stub.js';
import { waitFor } from '../helpers/media.js';
import type { TcpProxy } from '../helpers/tcp-proxy.js';
import type { TestBroker } from '../helpers/mqtt-test-broker.js';

const SERIAL = 'SIMMQTT00001';
/** what the stub's claim answers as the MQTT password */
const STUB_MQTT_PASSWORD = 'mqtt-secret';
const FAST = { minDelayMs: 200, maxDelayMs: 1000, factor: 2, jitter: 0.2, refusedMinDelayMs: 1000, refusedMaxDelayMs: 2000, healthyMs: 5000 };

let root: string;
let camera: SimCamera;
let cloud: DeviceApiStub;
let broker: TestBroker;
let proxy: TcpProxy;
let rig: MqttRig;
const { logger, rawLog, logLines } = captureLog();

beforeAll(async () => {
  rig = await startMqttRig(SERIAL, STUB_MQTT_PASSWORD, 'camvault-agent-mqtt-');
  ({ root, camera, cloud, broker, proxy } = rig);
}, 60_000);

afterAll(() => rig?.close());

const config = (dataDir: string, over: Partial<AgentConfigInput> = {}): AgentConfig =>
  simAgentConfig({ serial: SERIAL, camera, cloud }, dataDir, { mqttUrl: rig.mqttUrl, ...over });

interface Running {
  agent: Agent;
  config: AgentConfig;
  queued: { seq: number; atMs: number; dropped: number }[];
}

async function startAgent(cfg: AgentConfig): Promise<Running> {
  const agent = await Agent.start({ config: cfg, logger, mqtt: { policy: FAST, keepaliveSec: 5, connectTimeoutMs: 3000 } });
  const queued: Running['queued'] = [];
  agent.on('alert-queued', (e: Running['queued'][number]) => queued.push(e));
  return { agent, config: cfg, queued };
}

/** A motion from the camera that the agent took in (the first may come before the agent's event feed is connected). */
async function motion(r: Running): Promise<void> {
  const before = r.queued.length;
  for (let tries = 0; tries < 20 && r.queued.length === before; tries++) {
    camera.triggerMotion();
    const until = Date.now() + 1000;
    while (r.queued.length === before && Date.now() < until) await new Promise((res) => setTimeout(res, 25));
  }
  if (r.queued.length === before) throw new Error('the agent never took the motion in');
}

const alertsAtBroker = (): Alert[] => broker.on(alertsTopic(SERIAL)).map((m) => JSON.parse(m.payload) as Alert);
const mqttState = (r: Running): MqttStatus['state'] | undefined => r.agent.mqttStatus?.state;

describe('agent alerts over MQTT', () => {
  it('publishes a motion as an alert with exactly the schema fields, QoS 1, and says online (retained)', async () => {
    const r = await startAgent(config(join(root, 'basic')));
    try {
      await waitFor(() => mqttState(r) === 'connected', 15_000, 'connected to the broker');
      const before = alertsAtBroker().length;
      const t0 = Date.now();
      await motion(r);
      await waitFor(() => alertsAtBroker().length > before, 10_000, 'the alert at the broker');
      const m = broker.on(alertsTopic(SERIAL)).at(-1);
      expect(m).toMatchObject({ qos: 1, retain: false, clientId: SERIAL });
      const body = JSON.parse(m?.payload ?? '') as Record<string, unknown>;
      // an allowlist: nothing but these keys (clipId only when the clip was known)
      expect(Object.keys(body).every((k) => ['serial', 'type', 'at', 'clipId'].includes(k))).toBe(true);
      expect(Alert.safeParse(body).success).toBe(true);
      expect(body).toMatchObject({ serial: SERIAL, type: 'motion' });
      const at = Date.parse(body.at as string);
      expect(at).toBeGreaterThanOrEqual(t0 - 1000);
      expect(at).toBeLessThanOrEqual(Date.now());
      expect(await broker.retained(statusTopic(SERIAL))).toBe('online');
      await waitFor(() => r.agent.status().alerts.waiting === 0, 5000, 'an empty outbox');
      expect(r.agent.status().alerts.sent).toBeGreaterThanOrEqual(1);
    } finally {
      await r.agent.stop();
    }
    // a stopped agent is offline, retained
    expect(await broker.retained(statusTopic(SERIAL))).toBe('offline');
    // the password the claim gave is in the journal (mode 0600) and in no log line
    const j = Journal.open(join(root, 'basic'), { readonly: true });
    expect(j.getCredentials()?.mqtt.password).toBe(STUB_MQTT_PASSWORD);
    j.close();
    expect(rawLog.join('\n')).not.toContain(STUB_MQTT_PASSWORD);
  });

  it('keeps alerts through an outage and a restart, bounded, and delivers them in order once the broker is back', async () => {
    const dataDir = join(root, 'outage');
    const cfg = config(dataDir, { alertOutboxMax: 5 });
    let r = await startAgent(cfg);
    try {
      await waitFor(() => mqttState(r) === 'connected', 15_000, 'connected to the broker');
      await motion(r); // the event feed is up
      await waitFor(() => r.agent.status().alerts.waiting === 0, 10_000, 'the first alert delivered');

      // 1. an outage: alerts wait, and go in order when the network returns
      proxy.setMode('refuse');
      await waitFor(() => mqttState(r) === 'disconnected', 15_000, 'the broker lost');
      const sentBefore = alertsAtBroker().length;
      for (let i = 0; i < 3; i++) await motion(r);
      expect(r.agent.status().alerts.waiting).toBe(3);
      const waitingAts = r.queued.slice(-3).map((q) => q.atMs);
      proxy.setMode('forward');
      await waitFor(() => alertsAtBroker().length >= sentBefore + 3, 15_000, 'the kept alerts');
      expect(alertsAtBroker().slice(sentBefore).map((a) => Date.parse(a.at))).toEqual(waitingAts);
      await waitFor(() => r.agent.status().alerts.waiting === 0, 5000, 'an empty outbox');

      // 2. another outage, longer than the outbox, and the agent restarts in the middle of it
      proxy.setMode('refuse');
      await waitFor(() => mqttState(r) === 'disconnected', 15_000, 'the broker lost');
      const connectionsBefore = proxy.connections;
      const outageStart = Date.now();
      for (let i = 0; i < 7; i++) await motion(r);
      const st = r.agent.status();
      expect(st.alerts.waiting).toBe(5);
      expect(st.alerts.dropped).toBe(2);
      // the five kept are the five newest, in the order of their motions
      const j = Journal.open(dataDir, { readonly: true });
      const kept = j.alertsInOrder(10).map((a) => a.atMs);
      j.close();
      expect(kept).toEqual(r.queued.slice(-5).map((q) => q.atMs));
      await r.agent.stop();
      r = await startAgent(cfg);
      await new Promise((res) => setTimeout(res, 1500));
      expect(r.agent.status().alerts.waiting).toBe(5);
      // the device knocked, but did not hammer (backoff 200 ms doubling to 1 s, ±20%; a restart starts it over)
      const outageMs = Date.now() - outageStart;
      const knocks = proxy.connections - connectionsBefore;
      expect(knocks).toBeGreaterThanOrEqual(1);
      expect(knocks).toBeLessThanOrEqual(2 * (1 + Math.ceil(outageMs / (FAST.minDelayMs * (1 - FAST.jitter)))));
      const atBroker = alertsAtBroker().length;
      proxy.setMode('forward');
      await waitFor(() => alertsAtBroker().length >= atBroker + 5, 15_000, 'the five kept alerts after the restart');
      expect(alertsAtBroker().slice(atBroker).map((a) => Date.parse(a.at))).toEqual(kept);
      await waitFor(() => r.agent.status().alerts.waiting === 0, 5000, 'an empty outbox');
      expect(r.agent.status().alerts.dropped).toBe(2);
      // the status line an operator reads
      const text = formatDeviceStatus(await readDeviceStatus(cfg));
      expect(text).toMatch(/^broker: +connected to mqtt:\/\/127\.0\.0\.1:\d+ since /m);
      expect(text).toMatch(/^alerts: +0 waiting for the broker, 2 dropped \(outbox full\), \d+ sent$/m);
      expect(text).toMatch(/^upload mode: +continuous: every clip$/m);
    } finally {
      proxy.setMode('forward');
      await r.agent.stop();
    }
  });

  it('retries a refused credential slowly, shows it in agent status, and delivers once the broker accepts it', async () => {
    const dataDir = join(root, 'refused');
    const cfg = config(dataDir);
    broker.credentials.set(SERIAL, 'another-credential');
    const loginsBefore = broker.logins;
    const r = await startAgent(cfg);
    try {
      await waitFor(() => mqttState(r) === 'refused', 15_000, 'refused');
      const windowStart = Date.now();
      await new Promise((res) => setTimeout(res, 4000));
      const logins = broker.logins - loginsBefore;
      const windowMs = Date.now() - windowStart + 4000;
      expect(logins).toBeGreaterThanOrEqual(2);
      expect(logins).toBeLessThanOrEqual(1 + Math.ceil(windowMs / (FAST.refusedMinDelayMs * (1 - FAST.jitter))));
      const st = await readDeviceStatus(cfg);
      expect(st.mqtt).toMatchObject({ state: 'refused', code: 'NOT_AUTHORIZED' });
      expect(formatDeviceStatus(st)).toMatch(/^broker: +REFUSED the device credential \(NOT_AUTHORIZED\) since .*retrying slowly; next try at /m);
      // one warning per change, not one per attempt
      expect(logLines.filter((l) => l.msg.startsWith('the MQTT broker refused the device credential')).length).toBeLessThan(logins);
      await motion(r);
      expect(r.agent.status().alerts.waiting).toBeGreaterThanOrEqual(1);
      const before = alertsAtBroker().length;
      broker.credentials.set(SERIAL, STUB_MQTT_PASSWORD);
      await waitFor(() => mqttState(r) === 'connected', 15_000, 'accepted');
      await waitFor(() => alertsAtBroker().length > before, 10_000, 'the alert');
      expect((await readDeviceStatus(cfg)).mqtt?.state).toBe('connected');
    } finally {
      broker.credentials.set(SERIAL, STUB_MQTT_PASSWORD);
      await r.agent.stop();
    }
    expect((await readDeviceStatus(cfg)).mqtt).toMatchObject({ state: 'off', code: 'STOPPED' });
  });

  it('with alertClipWaitSec, an alert waits for its motion clip and carries its id', async () => {
    const dataDir = join(root, 'clipwait');
    const r = await startAgent(config(dataDir, { alertClipWaitSec: 30 }));
    const queuedClips: { clipId: string; kind: string }[] = [];
    r.agent.on('clip-queued', (c: { clipId: string; kind: string }) => queuedClips.push(c));
    try {
      await waitFor(() => mqttState(r) === 'connected', 15_000, 'connected to the broker');
      // the recorder is recording: the motion falls into a segment
      await waitFor(() => queuedClips.length > 0, 15_000, 'a first clip');
      const before = alertsAtBroker().length;
      await motion(r);
      await waitFor(() => alertsAtBroker().length > before, 20_000, 'the alert');
      const alert = alertsAtBroker().at(-1) as Alert;
      expect(alert.clipId).toBeDefined();
      expect(queuedClips.find((c) => c.clipId === alert.clipId)?.kind).toBe('event');
    } finally {
      await r.agent.stop();
    }
  });
});
