/**
 * The agent's MQTT connection (agent/mqtt/connection.ts, issue 7) against a
 * real aedes broker on loopback, through a TCP proxy the test can break: the
 * retained status and its last will, a persistent session that keeps
 * commands for an offline device and whose PUBACK waits for the command's
 * effect, TLS with the agent's CA file, and no hot loop against a broker
 * that is down or refuses the credential.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DeviceMqtt, type MqttStatus } from '../../agent/mqtt/connection.js';
import { createLogger } from '../../shared/log.js';
import { statusTopic } from '../../shared/topics.js';
import { waitFor } from '../helpers/media.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { makeTestPki, type TestPki } from '../helpers/tls.js';
import { TestBroker } from '../helpers/mqtt-test-broker.js';

const SERIAL = 'CAMCONN00001';
const PASSWORD = 'device-mqtt-credential';
const logger = createLogger({ level: 'silent' });
const FAST = { minDelayMs: 200, maxDelayMs: 1000, factor: 2, jitter: 0.2, refusedMinDelayMs: 1000, refusedMaxDelayMs: 2000, healthyMs: 5000 };

let broker: TestBroker;
let proxy: TcpProxy;
let pki: TestPki;
const open: DeviceMqtt[] = [];

beforeAll(async () => {
  pki = makeTestPki();
  broker = await TestBroker.start();
  broker.credentials.set(SERIAL, PASSWORD);
  proxy = await TcpProxy.start({ host: '127.0.0.1', port: broker.port });
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.stop()));
  proxy.setMode('forward');
  broker.refuseAll = false;
});

afterAll(async () => {
  await proxy?.close();
  await broker?.close();
  pki?.remove();
});

const proxyMqttUrl = (): string => `mqtt://127.0.0.1:${new URL(proxy.url).port}`;

function connection(over: Partial<ConstructorParameters<typeof DeviceMqtt>[0]> = {}): DeviceMqtt {
  const c = new DeviceMqtt({
    url: proxyMqttUrl(),
    serial: SERIAL,
    username: SERIAL,
    password: PASSWORD,
    logger,
    policy: FAST,
    keepaliveSec: 5,
    connectTimeoutMs: 3000,
    onCommand: async () => undefined,
    ...over,
  });
  open.push(c);
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('device MQTT connection', () => {
  it('says online (retained) on connect, and the broker says offline (retained) for it when the connection dies', async () => {
    const c = connection();
    c.start();
    await waitFor(() => c.connected, 10_000, 'connected');
    await waitFor(() => broker.on(statusTopic(SERIAL)).some((m) => m.payload === 'online'), 5000, 'online');
    expect(await broker.retained(statusTopic(SERIAL))).toBe('online');
    // the network dies under the connection: no DISCONNECT reaches the broker, the will fires
    proxy.setMode('refuse');
    await waitFor(() => !broker.online.has(SERIAL), 10_000, 'the broker noticed');
    await waitFor(() => broker.on(statusTopic(SERIAL)).at(-1)?.payload === 'offline', 5000, 'the last will');
    expect(await broker.retained(statusTopic(SERIAL))).toBe('offline');
    await waitFor(() => c.status.state === 'disconnected', 5000, 'disconnected');
    proxy.setMode('forward');
    await waitFor(() => c.connected, 10_000, 'reconnected');
    await waitFor(() => broker.on(statusTopic(SERIAL)).at(-1)?.payload === 'online', 5000, 'online again');
    expect(await broker.retained(statusTopic(SERIAL))).toBe('online');
    expect(c.connects).toBe(2);
  });

  it('gets a command sent while it was offline, and acknowledges a command only once it is handled', async () => {
    const got: string[] = [];
    let release: (() => void) | undefined;
    const c = connection({
      onCommand: (payload) => {
        got.push(payload.toString('utf8'));
        // the first delivery is held until the test lets it go
        if (got.length === 1) return new Promise<void>((r) => (release = r));
        return Promise.resolve();
      },
    });
    c.start();
    await waitFor(() => c.connected, 10_000, 'connected');
    // the persistent session holds the subscription; the device goes offline
    await sleep(300);
    proxy.setMode('refuse');
    await waitFor(() => !broker.online.has(SERIAL), 10_000, 'offline');
    await broker.sendCommand(SERIAL, { type: 'sync-now', id: 'while-offline' });
    proxy.setMode('forward');
    await waitFor(() => got.length === 1, 15_000, 'the command kept for the offline device');
    expect(JSON.parse(got[0] as string)).toEqual({ type: 'sync-now', id: 'while-offline' });
    // not handled yet, so not acknowledged: when the connection breaks, the broker still has it
    proxy.setMode('refuse');
    await waitFor(() => c.status.state === 'disconnected', 10_000, 'disconnected');
    release?.();
    proxy.setMode('forward');
    await waitFor(() => got.length === 2, 15_000, 'the unacknowledged command again');
    expect(JSON.parse(got[1] as string)).toEqual({ type: 'sync-now', id: 'while-offline' });
    // handled and acknowledged now: a third connection gets nothing more
    await sleep(300);
    proxy.setMode('refuse');
    await waitFor(() => c.status.state === 'disconnected', 10_000, 'disconnected');
    proxy.setMode('forward');
    await waitFor(() => c.connects === 3, 15_000, 'a third connection');
    await sleep(500);
    expect(got).toHaveLength(2);
  });

  it('starts a fresh session for a new credential: commands queued for the serial before are gone, later ones are kept', async () => {
    // a session of this serial exists, offline, with a command queued in it (for a former owner)
    const before = connection();
    before.start();
    await waitFor(() => before.connected, 10_000, 'connected');
    await sleep(300);
    await before.stop();
    await waitFor(() => !broker.online.has(SERIAL), 10_000, 'offline');
    await broker.sendCommand(SERIAL, { type: 'set-upload-mode', id: 'former-owner', mode: 'events' });
    // the device is claimed again: a new credential, a fresh session
    const got: string[] = [];
    const c = connection({
      freshSession: true,
      onCommand: (payload) => {
        got.push((JSON.parse(payload.toString('utf8')) as { id: string }).id);
        return Promise.resolve();
      },
    });
    let wiped = false;
    c.on('session-wiped', () => (wiped = true));
    c.start();
    await waitFor(() => c.connected, 10_000, 'connected');
    expect(wiped).toBe(true);
    await sleep(500);
    expect(got).toEqual([]);
    // from here the session is persistent: a command while offline is kept
    proxy.setMode('refuse');
    await waitFor(() => !broker.online.has(SERIAL), 10_000, 'offline');
    await broker.sendCommand(SERIAL, { type: 'sync-now', id: 'new-owner' });
    proxy.setMode('forward');
    await waitFor(() => got.length === 1, 15_000, 'the kept command');
    expect(got).toEqual(['new-owner']);
  });

  it('does not hammer a broker that is down: attempts back off', async () => {
    proxy.setMode('refuse');
    const before = proxy.connections;
    const c = connection();
    const statuses: MqttStatus[] = [];
    c.on('status', (s: MqttStatus) => statuses.push(s));
    c.start();
    const windowMs = 4000;
    await sleep(windowMs);
    const attempts = proxy.connections - before;
    // delays 200, 400, 800, 1000, 1000… (±20%): at most 1 + windowMs / (minimum gap) attempts; a hot loop would be thousands
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(1 + Math.floor(windowMs / (FAST.minDelayMs * (1 - FAST.jitter))));
    expect(attempts).toBe(c.attempts);
    expect(c.status).toMatchObject({ state: 'disconnected', broker: proxyMqttUrl() });
    expect(c.status.code).toMatch(/^(ECONNRESET|CONNECTION_CLOSED|EPIPE)$/);
    expect(c.status.retryAt).not.toBeNull();
  });

  it('tries a refused credential again slowly, says so, and connects once the credential is accepted', async () => {
    broker.refuseAll = true;
    const refusalsBefore = broker.refusals;
    const c = connection();
    c.start();
    await waitFor(() => c.status.state === 'refused', 10_000, 'refused');
    expect(c.status.code).toBe('NOT_AUTHORIZED');
    const windowMs = 4000;
    await sleep(windowMs);
    const refused = broker.refusals - refusalsBefore;
    // refusedMinDelayMs 1 s doubling to 2 s (±20%): a handful in 4 s, never a loop
    expect(refused).toBeGreaterThanOrEqual(2);
    expect(refused).toBeLessThanOrEqual(2 + Math.floor(windowMs / (FAST.refusedMinDelayMs * (1 - FAST.jitter))));
    broker.refuseAll = false;
    await waitFor(() => c.connected, 10_000, 'connected once accepted');
    expect(c.status.code).toBeNull();
  });

  it('connects over TLS to a broker whose certificate the CA file vouches for, and refuses one it does not, without a hot loop', async () => {
    const tlsBroker = await TestBroker.start({ tls: pki.server });
    const selfSigned = await TestBroker.start({ tls: pki.selfSigned });
    try {
      tlsBroker.credentials.set(SERIAL, PASSWORD);
      selfSigned.credentials.set(SERIAL, PASSWORD);
      const good = connection({ url: tlsBroker.url, caFile: pki.caFile });
      good.start();
      await waitFor(() => good.connected, 10_000, 'connected over TLS');
      expect(tlsBroker.online.has(SERIAL)).toBe(true);
      await good.stop();
      const bad = connection({ url: selfSigned.url, caFile: pki.caFile });
      bad.start();
      await waitFor(() => bad.status.state === 'disconnected', 10_000, 'refused certificate');
      expect(bad.status.code).toBe('TLS_CERT_INVALID');
      await sleep(2000);
      expect(selfSigned.logins).toBe(0);
      expect(bad.attempts).toBeLessThanOrEqual(1 + Math.floor(2500 / (FAST.minDelayMs * (1 - FAST.jitter))));
      await bad.stop();
    } finally {
      await tlsBroker.close();
      await selfSigned.close();
    }
  });

  it('publishes QoS 1 and resolves on the PUBACK; refuses to publish while disconnected', async () => {
    const c = connection();
    await expect(c.publish(`devices/${SERIAL}/alerts`, '{}')).rejects.toMatchObject({ code: 'NOT_CONNECTED' });
    c.start();
    await waitFor(() => c.connected, 10_000, 'connected');
    await c.publish(`devices/${SERIAL}/alerts`, '{"x":1}');
    const m = broker.on(`devices/${SERIAL}/alerts`).at(-1);
    expect(m).toMatchObject({ payload: '{"x":1}', qos: 1, clientId: SERIAL });
  });
});
