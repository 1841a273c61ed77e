/**
 * The owner's commands over MQTT (issue 7), obeyed by a real agent (real
 * ffmpeg recording the sim's stream, real journal) connected to a real aedes
 * broker; the device API is the small stub, so the test sees every presign.
 *
 * - set-upload-mode events: only event clips are uploaded, continuous
 *   footage stays queued on the device, not failed; back to continuous, the
 *   backlog goes; the mode survives a restart;
 * - sync-now: a parked queue is uploaded at once;
 * - a command sent while the device is offline is obeyed when it is back;
 * - invalid commands are ignored and logged without their payload;
 * - unbind: credentials wiped, uploads stop, no more alerts, recording goes
 *   on; a restart with the spent bind code stays unbound; a new bind code
 *   binds it again, and what was recorded before is not uploaded.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, type ClipQueued } from '../../agent/agent.js';
import type { AgentConfig, AgentConfigInput } from '../../agent/config.js';
import { loadEmailSettings, saveEmailSettings } from '../../agent/email/store.js';
import { parseEmailSettings } from '../../agent/email/settings.js';
import { Journal } from '../../agent/journal/journal.js';
import type { MqttStatus } from '../../agent/mqtt/connection.js';
import { formatDeviceStatus, readDeviceStatus } from '../../agent/status.js';
import type { ClipUploaded, UploadFailed } from '../../agent/uploader/uploader.js';
import type { SimCamera } from '../../firmware-sim/camera.js';
import type { DeviceCommand } from '../../shared/contracts/alerts.js';
import { alertsTopic } from '../../shared/topics.js';
import { captureLog, simAgentConfig, startMqttRig, type MqttRig } from '../helpers/agent-run.js';
import type { DeviceApiStub } from '../helpers/device-api-stub.js';
import { waitFor } from '../helpers/media.js';
import type { TcpProxy } from '../helpers/tcp-proxy.js';
import type { TestBroker } from '../helpers/mqtt-test-broker.js';

const SERIAL = 'SIMMQTTCMD01';
const STUB_MQTT_PASSWORD = 'mqtt-secret';
const FAST = { minDelayMs: 200, maxDelayMs: 1000, factor: 2, jitter: 0.2, refusedMinDelayMs: 1000, refusedMaxDelayMs: 2000, healthyMs: 5000 };
/** a park long enough that only sync-now can end it within a test */
const LONG_PARK_MS = 600_000;

let root: string;
let camera: SimCamera;
let cloud: DeviceApiStub;
let broker: TestBroker;
let proxy: TcpProxy;
let rig: MqttRig;
const { logger, rawLog, logLines } = captureLog();

beforeAll(async () => {
  rig = await startMqttRig(SERIAL, STUB_MQTT_PASSWORD, 'camvault-agent-mqtt-cmd-');
  ({ root, camera, cloud, broker, proxy } = rig);
}, 60_000);

afterAll(() => rig?.close());

const config = (dataDir: string, over: Partial<AgentConfigInput> = {}): AgentConfig =>
  simAgentConfig({ serial: SERIAL, camera, cloud }, dataDir, { mqttUrl: rig.mqttUrl, ...over });

interface Running {
  agent: Agent;
  config: AgentConfig;
  queued: ClipQueued[];
  uploaded: ClipUploaded[];
  failed: UploadFailed[];
  commands: DeviceCommand[];
}

async function startAgent(cfg: AgentConfig): Promise<Running> {
  const agent = await Agent.start({
    config: cfg,
    logger,
    mqtt: { policy: FAST, keepaliveSec: 5, connectTimeoutMs: 3000 },
    retryPolicy: { minDelayMs: 100, maxDelayMs: 200, maxRetries: 0, parkMs: LONG_PARK_MS },
  });
  const r: Running = { agent, config: cfg, queued: [], uploaded: [], failed: [], commands: [] };
  agent.on('clip-queued', (e: ClipQueued) => r.queued.push(e));
  agent.on('clip-uploaded', (e: ClipUploaded) => r.uploaded.push(e));
  agent.on('upload-failed', (e: UploadFailed) => r.failed.push(e));
  agent.on('command', (c: DeviceCommand) => r.commands.push(c));
  return r;
}

const connected = (r: Running): boolean => (r.agent.mqttStatus as MqttStatus | null)?.state === 'connected';
const presignedKinds = (fromIndex: number): string[] =>
  cloud.requests.slice(fromIndex).filter((q) => q.step === 'presign').map((q) => (q.body as { kind: string }).kind);

/** Motion until a clip of the segment being recorded comes out as an event clip. */
async function eventClip(r: Running): Promise<ClipQueued> {
  const before = r.queued.length;
  for (let i = 0; i < 10; i++) {
    camera.triggerMotion();
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      const ev = r.queued.slice(before).find((q) => q.kind === 'event');
      if (ev) return ev;
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  throw new Error('no event clip');
}

async function command(r: Running, cmd: DeviceCommand): Promise<void> {
  const n = r.commands.length;
  await broker.sendCommand(SERIAL, cmd);
  await waitFor(() => r.commands.length > n, 10_000, `the ${cmd.type} command obeyed`);
}

describe('agent commands over MQTT', () => {
  it("set-upload-mode events: only event clips go up, continuous footage stays queued on the device (not failed), and 'continuous' sends the backlog", async () => {
    const dataDir = join(root, 'mode');
    const cfg = config(dataDir);
    let r = await startAgent(cfg);
    try {
      await waitFor(() => connected(r), 15_000, 'connected');
      await waitFor(() => r.uploaded.length >= 1, 20_000, 'a first upload');
      await command(r, { type: 'set-upload-mode', id: 'mode-1', mode: 'events' });
      expect(r.agent.status().uploadMode).toBe('events');
      const mark = cloud.requests.length;
      const queuedMark = r.queued.length;
      const ev = await eventClip(r);
      await waitFor(() => r.uploaded.some((u) => u.clipId === ev.clipId), 20_000, 'the event clip uploaded');
      await waitFor(() => r.queued.slice(queuedMark).filter((q) => q.kind === 'continuous').length >= 2, 20_000, 'continuous clips recorded meanwhile');
      // a clip or two journaled as the mode changed may have been in flight already
      const continuousAfter = r.queued.slice(queuedMark).filter((q) => q.kind === 'continuous').map((q) => q.clipId);
      expect(presignedKinds(mark).filter((k) => k === 'continuous').length).toBeLessThanOrEqual(1);
      const st = r.agent.status();
      expect(st.counts.failed).toBe(0);
      const j = Journal.open(dataDir, { readonly: true });
      const states = continuousAfter.map((id) => j.getClip(id)?.state);
      j.close();
      expect(states.filter((s) => s === 'queued').length).toBeGreaterThanOrEqual(continuousAfter.length - 1);
      expect(formatDeviceStatus(await readDeviceStatus(cfg))).toMatch(/^upload mode: +events: event clips only; continuous footage stays on the device \(\d+ clips now, 0 evicted so far\)$/m);

      // the mode is the device's, not the process's
      await r.agent.stop();
      r = await startAgent(cfg);
      expect(r.agent.status().uploadMode).toBe('events');
      await waitFor(() => connected(r), 15_000, 'connected');
      await command(r, { type: 'set-upload-mode', id: 'mode-2', mode: 'continuous' });
      await waitFor(() => continuousAfter.every((id) => r.uploaded.some((u) => u.clipId === id)), 30_000, 'the continuous backlog uploaded');
      expect(r.agent.status().uploadMode).toBe('continuous');
    } finally {
      await r.agent.stop();
    }
  });

  it('sync-now uploads a parked queue at once, and a command sent while the device was offline is obeyed when it is back', async () => {
    const dataDir = join(root, 'sync');
    const r = await startAgent(config(dataDir));
    try {
      await waitFor(() => connected(r), 15_000, 'connected');
      // no plan yet: the whole queue parks for 10 minutes; then the owner chooses one and presses "sync now"
      cloud.refuse.presign = { status: 402, code: 'PLAN_REQUIRED' };
      await waitFor(() => r.failed.some((f) => f.next === 'parked'), 20_000, 'the queue parked');
      await waitFor(() => r.agent.status().queueDepth >= 2, 20_000, 'clips waiting');
      delete cloud.refuse.presign;
      const uploadedBefore = r.uploaded.length;
      // offline when the owner presses "sync now": the broker keeps it for the persistent session
      proxy.setMode('refuse');
      await waitFor(() => !connected(r) && !broker.online.has(SERIAL), 15_000, 'offline');
      await broker.sendCommand(SERIAL, { type: 'sync-now', id: 'sync-1' });
      await new Promise((res) => setTimeout(res, 500));
      expect(r.commands).toHaveLength(0);
      proxy.setMode('forward');
      await waitFor(() => r.commands.some((c) => c.id === 'sync-1'), 15_000, 'the kept command');
      // well inside the 10-minute park
      await waitFor(() => r.uploaded.length > uploadedBefore + 1, 20_000, 'uploads after sync-now');
    } finally {
      proxy.setMode('forward');
      delete cloud.refuse.presign;
      await r.agent.stop();
    }
  });

  it('ignores invalid commands, logging a reason and never the payload', async () => {
    const dataDir = join(root, 'invalid');
    const r = await startAgent(config(dataDir));
    try {
      await waitFor(() => connected(r), 15_000, 'connected');
      const secret = 'wifi-password-hunter2';
      const logMark = logLines.length;
      await broker.sendCommand(SERIAL, { type: 'reboot', id: 'x1', note: secret });
      await broker.sendCommand(SERIAL, { type: 'set-upload-mode', id: 'x2', mode: secret });
      await broker.sendCommand(SERIAL, { type: 'unbind', id: 'x3', extra: secret });
      await broker.sendCommand(SERIAL, `not json ${secret}`);
      await waitFor(() => logLines.slice(logMark).filter((l) => l.msg === 'a command was ignored').length === 4, 10_000, 'four ignored commands');
      const ignored = logLines.slice(logMark).filter((l) => l.msg === 'a command was ignored');
      expect(ignored.map((l) => l.reason)).toEqual(['invalid', 'invalid', 'invalid', 'not-json']);
      expect(ignored[0]?.type).toBe('reboot');
      expect(rawLog.join('\n')).not.toContain(secret);
      // none of them did anything: still bound, still continuous, still connected
      const st = r.agent.status();
      expect(st).toMatchObject({ claimed: true, uploadMode: 'continuous', unboundAt: null });
      expect(r.commands).toHaveLength(0);
      expect(connected(r)).toBe(true);
      // and the next valid command is obeyed
      await command(r, { type: 'sync-now', id: 'after-invalid' });
    } finally {
      await r.agent.stop();
    }
  });

  it('unbind wipes the credentials and the owner\'s email alert settings, and stops uploads and alerts while recording goes on; the spent code does not bind it again, a new one does', async () => {
    const dataDir = join(root, 'unbind');
    const cfg = config(dataDir);
    // the owner's email alert settings, on the device only (P4)
    mkdirSync(dataDir, { recursive: true });
    const pre = Journal.open(dataDir);
    saveEmailSettings(
      pre,
      dataDir,
      parseEmailSettings(
        { host: 'smtp.example.net', port: 465, security: 'tls', user: 'owner@example.net', recipients: ['owner@example.org'], from: 'owner@example.net' },
        { development: false },
      ),
      'owner-smtp-password',
    );
    pre.close();
    let r = await startAgent(cfg);
    let unboundAt: number | undefined;
    try {
      await waitFor(() => connected(r), 15_000, 'connected');
      await waitFor(() => r.uploaded.length >= 1, 20_000, 'a first upload');
      const unbound = new Promise<{ at: number; droppedClips: number }>((res) => r.agent.once('unbound', res));
      await command(r, { type: 'unbind', id: 'unbind-1' });
      unboundAt = (await unbound).at;
      const j = Journal.open(dataDir, { readonly: true });
      expect(j.getCredentials()).toBeUndefined();
      expect(j.unboundRecord()).toMatchObject({ commandId: 'unbind-1' });
      // the former owner's SMTP settings and their key went with the binding
      expect(loadEmailSettings(j)).toBeUndefined();
      j.close();
      expect(existsSync(join(dataDir, 'email.key'))).toBe(false);
      // the connection ends for good
      await waitFor(() => !broker.online.has(SERIAL), 10_000, 'disconnected');
      expect(r.agent.mqttStatus).toMatchObject({ state: 'off', code: 'UNBOUND' });
      // recording goes on, nothing goes up, no alert is made
      const presigns = cloud.count('presign');
      const alerts = broker.on(alertsTopic(SERIAL)).length;
      const queuedMark = r.queued.length;
      camera.triggerMotion();
      await waitFor(() => r.queued.length >= queuedMark + 2, 20_000, 'recording after the unbind');
      expect(cloud.count('presign')).toBe(presigns);
      expect(r.agent.status()).toMatchObject({ claimed: false, alerts: { waiting: 0 } });
      expect(broker.on(alertsTopic(SERIAL)).length).toBe(alerts);
      const text = formatDeviceStatus(await readDeviceStatus(cfg));
      expect(text).toMatch(/^binding: +UNBOUND by the owner at /m);
      expect(text).toMatch(/^broker: +not connected \(unbound at /m);
      // a command to an unbound device has nobody to reach: the broker keeps it
      expect(logLines.some((l) => l.msg.startsWith('the owner unbound this camera'))).toBe(true);
    } finally {
      await r.agent.stop();
    }

    // a restart with the same (spent) bind code: no claim, no upload, recording all the same
    const claims = cloud.count('claim');
    const presigns = cloud.count('presign');
    r = await startAgent(cfg);
    try {
      await waitFor(() => r.queued.length >= 1, 20_000, 'recording while unbound');
      expect(cloud.count('claim')).toBe(claims);
      expect(cloud.count('presign')).toBe(presigns);
      expect(r.agent.status().unboundAt).toBe(unboundAt);
      expect(r.agent.mqttStatus).toBeNull();
    } finally {
      await r.agent.stop();
    }
    const recordedWhileUnbound = Journal.open(dataDir, { readonly: true });
    const before = recordedWhileUnbound.listClips().filter((c) => c.state !== 'uploaded').map((c) => c.id);
    recordedWhileUnbound.close();
    expect(before.length).toBeGreaterThan(0);

    // a new bind code binds it again: new footage goes up, nothing recorded before does
    cloud.bindCode = 'NEWC0DE234';
    r = await startAgent(config(dataDir, { bindCode: cloud.bindCode }));
    try {
      expect(cloud.count('claim')).toBe(claims + 1);
      await waitFor(() => r.uploaded.length >= 1, 20_000, 'an upload after the new claim');
      await waitFor(() => connected(r), 15_000, 'connected again');
      expect(r.uploaded.some((u) => before.includes(u.clipId))).toBe(false);
      expect(r.agent.status().unboundAt).toBeNull();
      expect(cloud.requests.filter((q) => q.step === 'presign' && before.includes(q.clipId ?? '')).length).toBe(0);
    } finally {
      await r.agent.stop();
      cloud.bindCode = 'ABCDEFGHJK';
    }
  });
});
