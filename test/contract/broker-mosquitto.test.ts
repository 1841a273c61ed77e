/**
 * The broker contract against a real Mosquitto 2 with the dynamic security
 * plugin, started by this suite on a free port with its own config and
 * dynsec file (test/helpers/mosquitto.ts). Without Mosquitto installed the
 * suite says so in one line and skips.
 */
import { describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { MosquittoBroker } from '../../cloud/mqtt/mosquitto-broker.js';
import { createLogger } from '../../shared/log.js';
import { mosquittoSkipReason, startMosquitto } from '../helpers/mosquitto.js';
import { brokerContract } from './broker.contract.js';

const skip = mosquittoSkipReason();
if (skip) console.log(`Mosquitto suites skipped: ${skip}`);
const logger = createLogger({ level: process.env.CAMVAULT_TEST_LOG_LEVEL ?? 'silent' });

if (!skip) {
  brokerContract('Mosquitto 2 with dynsec', async () => {
    const mosquitto = await startMosquitto();
    try {
      const broker = await MosquittoBroker.connect({
        url: mosquitto.url,
        adminUser: mosquitto.adminUser,
        adminPassword: mosquitto.adminPassword,
        commandTimeoutMs: 5000,
        logger,
      });
      return {
        broker,
        provisionDevice: (serial, password) => broker.provision(serial, password),
        revokeDevice: (serial, farewell) => broker.revoke(serial, farewell),
        async close() {
          await broker.close();
          await broker.close();
          await mosquitto.stop();
        },
      };
    } catch (err) {
      await mosquitto.stop();
      throw err;
    }
  });
}

describe.skipIf(skip !== null)(`Mosquitto adapter${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('a wrong admin password or no broker at all stops start-up with one line that never holds the password', async () => {
    const mosquitto = await startMosquitto();
    try {
      const wrong = 'the-wrong-admin-password';
      const err = await MosquittoBroker.connect({ url: mosquitto.url, adminUser: mosquitto.adminUser, adminPassword: wrong, commandTimeoutMs: 3000, logger }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(new RegExp(`^mqtt broker at 127\\.0\\.0\\.1:${mosquitto.port}: .*(authori[sz]ed|password)`, 'i'));
      expect((err as Error).message).not.toContain(wrong);
      expect((err as Error).message).not.toContain('\n');
    } finally {
      await mosquitto.stop();
    }
    const gone = await MosquittoBroker.connect({ url: mosquitto.url, adminUser: 'x', adminPassword: 'secret-password', commandTimeoutMs: 3000, logger }).catch((e: Error) => e);
    expect((gone as Error).message).toMatch(/^mqtt broker at 127\.0\.0\.1:\d+: .*(ECONNREFUSED|closed|connect)/i);
    expect((gone as Error).message).not.toContain('secret-password');
  });

  it('provisions 300 devices at once in batched $CONTROL messages, and each of them can log in', async () => {
    const mosquitto = await startMosquitto();
    const broker = await MosquittoBroker.connect({ url: mosquitto.url, adminUser: mosquitto.adminUser, adminPassword: mosquitto.adminPassword, commandTimeoutMs: 20_000, logger });
    try {
      const devices = Array.from({ length: 300 }, (_, i) => ({ serial: `BATCH${String(i).padStart(6, '0')}`, password: `pw-${i}-${'x'.repeat(20)}` }));
      const messagesBefore = broker.controlMessages;
      await Promise.all(devices.map((d) => broker.provision(d.serial, d.password)));
      // 600 commands (a role and a client each): in messages of at most 100, not one each
      const messages = broker.controlMessages - messagesBefore;
      expect(messages).toBeGreaterThanOrEqual(6);
      expect(messages).toBeLessThanOrEqual(12);
      for (const d of [devices[0]!, devices[150]!, devices[299]!]) {
        const c = await mqtt.connectAsync(mosquitto.url, { clientId: d.serial, username: d.serial, password: d.password, reconnectPeriod: 0 }, false);
        expect(c.connected).toBe(true);
        c.end(true);
      }
    } finally {
      await broker.close();
      await mosquitto.stop();
    }
  });
});

describe.skipIf(skip !== null)(`Mosquitto dynsec file written offline${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('devices seeded into the file before the broker starts log in, and only under their own topics', async () => {
    const devices = [0, 1, 2].map((i) => ({ serial: `SEEDED${String(i).padStart(6, '0')}`, password: `seeded-password-${i}-${'y'.repeat(16)}` }));
    const mosquitto = await startMosquitto({ devices });
    try {
      for (const d of devices) {
        const c = await mqtt.connectAsync(mosquitto.url, { clientId: d.serial, username: d.serial, password: d.password, reconnectPeriod: 0 }, false);
        expect(c.connected).toBe(true);
        // MQTT 3.1.1: a forbidden subscription is refused in the SUBACK (0x80, which mqtt.js turns into an error)
        expect((await c.subscribeAsync(`devices/${d.serial}/commands`)).map((g) => g.qos)).toEqual([0]);
        await expect(c.subscribeAsync('devices/+/commands')).rejects.toThrow(/Subscribe error/);
        c.end(true);
      }
      const wrong = await mqtt
        .connectAsync(mosquitto.url, { clientId: devices[0]!.serial, username: devices[0]!.serial, password: devices[1]!.password, reconnectPeriod: 0 }, false)
        .then((c) => (c.end(true), 'connected'), () => 'refused');
      expect(wrong).toBe('refused');
    } finally {
      await mosquitto.stop();
    }
  });
});
