/**
 * The device broker contract (cloud/mqtt/types.ts): what the cloud relies on
 * from aedes (embedded) and from Mosquitto with dynsec (production). Devices
 * here are real MQTT 3.1.1 clients (mqtt.js) on real sockets.
 *
 * Refused publishes look different on each broker (DESIGN.md, "Broker
 * facts": Mosquitto drops them silently under 3.1.1, aedes closes the
 * connection), so the ACL tests assert that nothing was delivered, never
 * that a publish failed: each sends a marker through an allowed path after
 * the forbidden attempts and waits past its arrival.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceBroker } from '../../cloud/mqtt/types.js';
import type { Alert, DeviceCommand, DeviceStatusPayload } from '../../shared/contracts/alerts.js';
import { alertsTopic, commandsTopic, statusTopic } from '../../shared/topics.js';

export interface BrokerHarness {
  broker: DeviceBroker;
  /** makes the credential valid, as a claim does (aedes: the store's device row; both: broker.provision) */
  provisionDevice(serial: string, password: string): Promise<void>;
  /** forgets the device, as an unbind does (aedes: the row goes), and revokes it */
  revokeDevice(serial: string, farewell?: DeviceCommand): Promise<void>;
  close(): Promise<void>;
}
export type BrokerFactory = () => Promise<BrokerHarness>;

/** after the last allowed message arrived, how long a forbidden one gets to show up (it must not) */
const SETTLE_MS = 400;

const newSerial = (): string => `BRK${randomBytes(6).toString('hex').toUpperCase()}`;
const newPassword = (): string => randomBytes(32).toString('base64url');

function alertOf(serial: string, over: Partial<Alert> = {}): Alert {
  return { serial, type: 'motion', at: new Date().toISOString(), ...over };
}

async function waitFor<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function brokerContract(name: string, factory: BrokerFactory): void {
  describe(`device broker contract: ${name}`, () => {
    let h: BrokerHarness;
    const alerts: Alert[] = [];
    const statuses: { serial: string; status: DeviceStatusPayload }[] = [];
    const clients: MqttClient[] = [];

    beforeAll(async () => {
      h = await factory();
      h.broker.onAlert((a) => alerts.push(a));
      h.broker.onStatus((serial, status) => statuses.push({ serial, status }));
    });
    afterAll(async () => {
      for (const c of clients) c.end(true);
      await h?.close();
    });

    interface DeviceOptions {
      password: string;
      clientId?: string;
      username?: string;
      clean?: boolean;
      will?: { topic: string; payload: string };
    }

    /** A device on MQTT 3.1.1 (aedes has no MQTT 5), with the last will a camvault device sets. */
    async function connectDevice(serial: string, o: DeviceOptions): Promise<MqttClient> {
      const c = await mqtt.connectAsync(
        h.broker.publicUrl,
        {
          protocolVersion: 4,
          clientId: o.clientId ?? serial,
          username: o.username ?? serial,
          password: o.password,
          clean: o.clean ?? true,
          reconnectPeriod: 0,
          connectTimeout: 5000,
          will: { topic: o.will?.topic ?? statusTopic(serial), payload: Buffer.from(o.will?.payload ?? 'offline'), qos: 1, retain: true },
        },
        false,
      );
      clients.push(c);
      return c;
    }

    async function refused(serial: string, o: DeviceOptions): Promise<boolean> {
      try {
        const c = await connectDevice(serial, o);
        c.end(true);
        return false;
      } catch {
        return true;
      }
    }

    function messagesOf(c: MqttClient): { topic: string; payload: string }[] {
      const got: { topic: string; payload: string }[] = [];
      c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString('utf8') }));
      return got;
    }

    async function provisioned(): Promise<{ serial: string; password: string }> {
      const serial = newSerial();
      const password = newPassword();
      await h.provisionDevice(serial, password);
      return { serial, password };
    }

    it('tells devices where to connect', () => {
      expect(h.broker.publicUrl).toMatch(/^mqtts?:\/\/[^/]+:\d+$/);
    });

    it('a provisioned device logs in; a wrong password, an unknown serial, another client id and a will on another device\'s topic are refused', async () => {
      const d = await provisioned();
      const other = await provisioned();
      const c = await connectDevice(d.serial, d);
      expect(c.connected).toBe(true);
      c.end(true);
      expect(await refused(d.serial, { password: newPassword() })).toBe(true);
      expect(await refused(newSerial(), { password: d.password })).toBe(true);
      // the other device's credential cannot take this device's session (client id), nor this one's take the other's
      expect(await refused(d.serial, { password: other.password, username: other.serial })).toBe(true);
      expect(await refused(d.serial, { password: d.password, clientId: other.serial })).toBe(true);
      expect(await refused(d.serial, { password: d.password, username: 'not a serial' })).toBe(true);
    });

    it('an alert reaches onAlert; one that fails the schema, is not JSON or names another serial is dropped and counted', async () => {
      const d = await provisioned();
      const c = await connectDevice(d.serial, d);
      const before = h.broker.stats();
      const topic = alertsTopic(d.serial);
      await c.publishAsync(topic, JSON.stringify({ ...alertOf(d.serial), ssid: 'home-wifi' }), { qos: 1 });
      await c.publishAsync(topic, 'not json', { qos: 1 });
      await c.publishAsync(topic, JSON.stringify(alertOf(newSerial())), { qos: 1 });
      await c.publishAsync(topic, JSON.stringify({ ...alertOf(d.serial), type: 'doorbell' }), { qos: 1 });
      const good = alertOf(d.serial, { clipId: '01ARZ3NDEKTSV4RRFFQ69G5FAV' });
      await c.publishAsync(topic, JSON.stringify(good), { qos: 1 });
      // messages of one connection arrive in order: once the good one is here, the bad ones have been read
      await waitFor('the valid alert', () => alerts.find((a) => a.serial === d.serial));
      await sleep(50);
      expect(alerts.filter((a) => a.serial === d.serial)).toEqual([good]);
      const after = h.broker.stats();
      expect(after.alertsReceived - before.alertsReceived).toBe(1);
      expect(after.droppedInvalid - before.droppedInvalid).toBe(3);
      expect(after.droppedSerialMismatch - before.droppedSerialMismatch).toBe(1);
      c.end(true);
    });

    it("a device's status is retained, and its last will says offline when its connection dies", async () => {
      const d = await provisioned();
      const c = await connectDevice(d.serial, d);
      await c.publishAsync(statusTopic(d.serial), 'online', { qos: 1, retain: true });
      await waitFor('online', () => statuses.find((s) => s.serial === d.serial && s.status === 'online'));
      await waitFor('isOnline', () => h.broker.isOnline(d.serial));
      // an abrupt end: the socket dies without DISCONNECT, so the will fires
      c.stream.destroy();
      await waitFor('the last will', () => statuses.find((s) => s.serial === d.serial && s.status === 'offline'));
      await waitFor('not online', () => !h.broker.isOnline(d.serial));
      // retained: the device sees its last status when it comes back
      const again = await connectDevice(d.serial, d);
      const got = messagesOf(again);
      await again.subscribeAsync(statusTopic(d.serial), { qos: 1 });
      await waitFor('the retained status', () => got.find((m) => m.topic === statusTopic(d.serial)));
      expect(got.filter((m) => m.topic === statusTopic(d.serial)).map((m) => m.payload)).toEqual(['offline']);
      again.end(true);
    });

    it("a device that tries another device's topics is refused: nothing it publishes there is delivered, and it receives nothing of the other's", async () => {
      const a = await provisioned();
      const b = await provisioned();
      const cb = await connectDevice(b.serial, b);
      const gotB = messagesOf(cb);
      await cb.subscribeAsync(`devices/${b.serial}/#`, { qos: 1 });
      await cb.publishAsync(statusTopic(b.serial), 'online', { qos: 1, retain: true });
      await waitFor("b's status", () => statuses.find((s) => s.serial === b.serial && s.status === 'online'));
      const statusesOfB = (): DeviceStatusPayload[] => statuses.filter((s) => s.serial === b.serial).map((s) => s.status);

      // a snoops: subscriptions to b's topics, to every device's commands, to everything
      const snoop = await connectDevice(a.serial, a);
      const gotA = messagesOf(snoop);
      for (const filter of [`devices/${b.serial}/commands`, 'devices/+/commands', 'devices/#', '#', '$SYS/#']) {
        await snoop.subscribeAsync(filter, { qos: 1 }).catch(() => undefined);
      }
      // a's own subscription keeps working (a marker for a below)
      await snoop.subscribeAsync(`devices/${a.serial}/commands`, { qos: 1 }).catch(() => undefined);

      // a speaks as b: an alert, a status, a command; each on its own connection (aedes closes a connection that tries)
      const forged: [string, string][] = [
        [alertsTopic(b.serial), JSON.stringify(alertOf(b.serial))],
        [statusTopic(b.serial), 'offline'],
        [commandsTopic(b.serial), JSON.stringify({ type: 'unbind', id: 'forged' })],
        ['devices/+/alerts', JSON.stringify(alertOf(b.serial))],
      ];
      for (const [topic, payload] of forged) {
        const liar = await connectDevice(a.serial, a).catch(() => null);
        if (!liar) continue;
        await Promise.race([liar.publishAsync(topic, payload, { qos: 1 }).catch(() => undefined), sleep(1000)]);
        liar.end(true);
      }
      // a will on b's status topic: refused at connect, or never delivered
      const willer = await connectDevice(a.serial, { ...a, will: { topic: statusTopic(b.serial), payload: 'offline' } }).catch(() => null);
      willer?.stream.destroy();

      // markers through the allowed paths: the cloud's command to b and to a, b's own alert
      const toB: DeviceCommand = { type: 'sync-now', id: randomUUID() };
      await h.broker.publishCommand(b.serial, toB);
      const ownMarker = alertOf(b.serial, { at: new Date(Date.now() + 1).toISOString() });
      await cb.publishAsync(alertsTopic(b.serial), JSON.stringify(ownMarker), { qos: 1 });
      await waitFor('the command to b', () => gotB.find((m) => m.topic === commandsTopic(b.serial)));
      await waitFor("b's own alert", () => alerts.find((x) => x.serial === b.serial));
      await sleep(SETTLE_MS);

      // b got the cloud's command and its own retained status, nothing of a's
      expect(gotB.filter((m) => m.topic === commandsTopic(b.serial)).map((m) => JSON.parse(m.payload))).toEqual([toB]);
      expect(gotB.filter((m) => m.topic === alertsTopic(b.serial))).toHaveLength(1);
      // the cloud heard only b's own alert and b's own statuses
      expect(alerts.filter((x) => x.serial === b.serial)).toEqual([ownMarker]);
      expect(statusesOfB()).toEqual(['online']);
      // a heard nothing of b's
      expect(gotA.filter((m) => m.topic.includes(b.serial) || !m.topic.startsWith(`devices/${a.serial}/`))).toEqual([]);
      cb.end(true);
      snoop.end(true);
    });

    it('a command reaches a connected device, and one that was offline gets it when it reconnects with its persistent session', async () => {
      const d = await provisioned();
      const first = await connectDevice(d.serial, { ...d, clean: false });
      const live = messagesOf(first);
      await first.subscribeAsync(commandsTopic(d.serial), { qos: 1 });
      const now: DeviceCommand = { type: 'sync-now', id: randomUUID() };
      await h.broker.publishCommand(d.serial, now);
      await waitFor('the live command', () => live.length > 0);
      expect(live.map((m) => JSON.parse(m.payload))).toEqual([now]);
      await first.endAsync();

      const queued: DeviceCommand = { type: 'set-upload-mode', id: randomUUID(), mode: 'continuous' };
      await h.broker.publishCommand(d.serial, queued);
      // the session's messages are handed over right after CONNACK: listen before connecting
      const got: { topic: string; payload: string }[] = [];
      const back = mqtt.connect(h.broker.publicUrl, {
        protocolVersion: 4,
        clientId: d.serial,
        username: d.serial,
        password: d.password,
        clean: false,
        reconnectPeriod: 0,
      });
      clients.push(back);
      back.on('message', (topic, payload) => got.push({ topic, payload: payload.toString('utf8') }));
      await waitFor('the queued command', () => got.length > 0);
      expect(got.map((m) => JSON.parse(m.payload))).toEqual([queued]);
      back.end(true);
    });

    it('revoking a connected device hands it the farewell, disconnects it, and its credential stops working', async () => {
      const d = await provisioned();
      const c = await connectDevice(d.serial, d);
      const got = messagesOf(c);
      const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
      await c.subscribeAsync(commandsTopic(d.serial), { qos: 1 });
      await c.publishAsync(statusTopic(d.serial), 'online', { qos: 1, retain: true });
      await waitFor('online', () => h.broker.isOnline(d.serial));
      const farewell: DeviceCommand = { type: 'unbind', id: randomUUID() };
      await h.revokeDevice(d.serial, farewell);
      await closed;
      expect(got.map((m) => JSON.parse(m.payload))).toEqual([farewell]);
      expect(await refused(d.serial, d)).toBe(true);
      // revoking again is harmless
      await h.broker.revoke(d.serial);
    });

    it('provisioning again replaces the credential: the old one is refused and its session ends', async () => {
      const d = await provisioned();
      const c = await connectDevice(d.serial, d);
      const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
      const next = newPassword();
      await h.provisionDevice(d.serial, next);
      await closed;
      expect(await refused(d.serial, d)).toBe(true);
      const again = await connectDevice(d.serial, { password: next });
      expect(again.connected).toBe(true);
      again.end(true);
    });
  });
}
