/**
 * The agent's MQTT side against the real cloud (issue 7): a real agent
 * (ffmpeg recording the simulated camera) claims the camera with a bind
 * code, learns the cloud's embedded broker (aedes) from the claim answer,
 * and its motion reaches the owner as a notification. The owner unbinding
 * the camera (DELETE /v1/devices/:serial) reaches the agent as the unbind
 * command. An agent whose journal knows no broker (claimed before issue 7)
 * asks GET /v1/device/config. SQLite by default; PostgreSQL with
 * CAMVAULT_TEST_DATABASE=postgres.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { loadAgentConfig, type AgentConfig, type AgentConfigInput } from '../../agent/config.js';
import { Journal } from '../../agent/journal/journal.js';
import type { MqttStatus } from '../../agent/mqtt/connection.js';
import { formatDeviceStatus, readDeviceStatus } from '../../agent/status.js';
import type { ClipUploaded } from '../../agent/uploader/uploader.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { Notification } from '../../shared/contracts/alerts.js';
import { createLogger } from '../../shared/log.js';
import {
  api,
  claimDevice,
  createBindCode,
  registerAndLogin,
  setPlan,
  startTestCloud,
  waitForNotification,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';
import { waitFor } from '../helpers/media.js';

const SERIAL = 'SIMMQTTCLD01';
const OLD_SERIAL = 'SIMMQTTCLD02';
const FAST = { minDelayMs: 200, maxDelayMs: 1000, factor: 2, jitter: 0.2, refusedMinDelayMs: 1000, refusedMaxDelayMs: 2000, healthyMs: 5000 };
const logger = createLogger({ level: 'silent' });

let root: string;
let cloud: TestCloud;
let owner: TestAccount;
let camera: SimCamera;
let oldCamera: SimCamera;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-agent-mqtt-cloud-'));
  cloud = await startTestCloud();
  owner = await registerAndLogin(cloud.url);
  await setPlan(cloud.url, owner.token, 'standard');
  camera = await SimCamera.start({ serial: SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger });
  oldCamera = await SimCamera.start({ serial: OLD_SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger });
}, 60_000);

afterAll(async () => {
  await camera?.stop();
  await oldCamera?.stop();
  await cloud?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

function config(cam: SimCamera, dataDir: string, over: Partial<AgentConfigInput> = {}): AgentConfig {
  return loadAgentConfig({
    env: {},
    overrides: { serial: cam.serial, cloudUrl: cloud.url, input: cam.streamUrl, eventsUrl: cam.eventsUrl, dataDir, segmentSeconds: 2, development: true, ...over },
  });
}

const start = (cfg: AgentConfig): Promise<Agent> => Agent.start({ config: cfg, logger, mqtt: { policy: FAST, keepaliveSec: 5, connectTimeoutMs: 3000 } });
const state = (a: Agent): MqttStatus['state'] | undefined => a.mqttStatus?.state;

/** Motions until the owner has a notification for this camera. */
async function motionNotified(cam: SimCamera): Promise<Notification> {
  for (let i = 0; i < 10; i++) {
    const at = Date.now();
    cam.triggerMotion();
    try {
      return (await waitForNotification(cloud.url, owner.token, (n: Notification) => n.serial === cam.serial && Date.parse(n.at) >= at - 1000, 3000)) as Notification;
    } catch {
      // the agent's event feed may not have been connected yet
    }
  }
  throw new Error('no notification for the motion');
}

describe('agent with the cloud broker', () => {
  it('claims, connects to the broker named at claim, turns a motion into a notification, and obeys an unbind from the owner', async () => {
    const dataDir = join(root, 'claimed');
    const cfg = config(camera, dataDir, { bindCode: await createBindCode(cloud.url, owner.token) });
    const agent = await start(cfg);
    const uploaded: ClipUploaded[] = [];
    agent.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
    try {
      await waitFor(() => state(agent) === 'connected', 20_000, 'connected to the cloud broker');
      const j = Journal.open(dataDir, { readonly: true });
      const url = j.getCredentials()?.mqtt.url;
      j.close();
      expect(url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
      expect(agent.mqttStatus?.broker).toBe(url);
      const n = await motionNotified(camera);
      expect(Notification.parse(n)).toMatchObject({ serial: SERIAL, type: 'motion' });
      await waitFor(() => uploaded.length >= 1, 20_000, 'an upload');

      const unbound = new Promise<{ at: number }>((res) => agent.once('unbound', res));
      const del = await api(cloud.url, 'DELETE', `/v1/devices/${SERIAL}`, { token: owner.token });
      expect(del.status).toBe(204);
      await unbound;
      const after = Journal.open(dataDir, { readonly: true });
      expect(after.getCredentials()).toBeUndefined();
      after.close();
      await waitFor(() => state(agent) === 'off', 10_000, 'the MQTT side off');
      const text = formatDeviceStatus(await readDeviceStatus(cfg));
      expect(text).toMatch(/^binding: +UNBOUND by the owner at /m);
      const devices = await api(cloud.url, 'GET', '/v1/devices', { token: owner.token });
      expect(devices.body.devices.some((d: { serial: string }) => d.serial === SERIAL)).toBe(false);
    } finally {
      await agent.stop();
    }
  });

  it('an agent whose journal names no broker asks GET /v1/device/config, keeps the answer, and connects', async () => {
    // claimed the way an agent from before issue 7 did: the journal has no broker URL
    const claimed = await claimDevice(cloud.url, owner.token, OLD_SERIAL);
    const dataDir = join(root, 'old');
    const j = Journal.open(dataDir);
    j.setCredentials({ serial: OLD_SERIAL, deviceToken: claimed.token, mqtt: { username: claimed.mqtt.username, password: claimed.mqtt.password }, claimedAt: Date.now() });
    j.close();
    const agent = await start(config(oldCamera, dataDir));
    try {
      await waitFor(() => state(agent) === 'connected', 20_000, 'connected to the cloud broker');
      const again = Journal.open(dataDir, { readonly: true });
      expect(again.getCredentials()?.mqtt.url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
      again.close();
      await motionNotified(oldCamera);
    } finally {
      await agent.stop();
    }
  });
});
