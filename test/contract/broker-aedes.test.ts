/**
 * The broker contract against aedes inside the cloud process, authenticating
 * devices against a real SQLite store (the device rows a claim writes).
 */
import mqtt from 'mqtt';
import { ulid } from 'ulid';
import { describe, expect, it } from 'vitest';
import { AedesBroker } from '../../cloud/mqtt/aedes-broker.js';
import { newBindCode, sha256Hex } from '../../cloud/auth/tokens.js';
import { SqliteStore } from '../../cloud/store/sqlite.js';
import { createLogger } from '../../shared/log.js';
import { brokerContract } from './broker.contract.js';

brokerContract('aedes (embedded)', async () => {
  const store = new SqliteStore({ path: ':memory:' });
  const accountId = ulid();
  await store.createAccount({ id: accountId, email: `${accountId.toLowerCase()}@example.com`, passwordHash: 'h', plan: null, createdAt: Date.now() });
  const broker = await AedesBroker.start({
    host: '127.0.0.1',
    port: 0,
    credentialHash: async (serial) => (await store.getDevice(serial))?.mqttPasswordHash ?? null,
    farewellTimeoutMs: 2000,
    logger: createLogger({ level: process.env.CAMVAULT_TEST_LOG_LEVEL ?? 'silent' }),
  });
  return {
    broker,
    async provisionDevice(serial, password) {
      const codeHash = sha256Hex(newBindCode());
      await store.createBindCode({ codeHash, accountId, createdAt: Date.now(), expiresAt: Date.now() + 60_000 });
      const out = await store.claimDevice({
        codeHash,
        serial,
        model: 'M',
        tokenHash: sha256Hex(password + 'token'),
        mqttPasswordHash: sha256Hex(password),
        nowMs: Date.now(),
        cameraLimit: () => null,
      });
      if (out.status !== 'bound' && out.status !== 'rebound') throw new Error(`claim: ${out.status}`);
      await broker.provision(serial, password);
    },
    async revokeDevice(serial, farewell) {
      await store.unbindDevice(serial, accountId);
      await broker.revoke(serial, farewell);
    },
    async close() {
      await broker.close();
      await broker.close();
      await store.close();
    },
  };
});

describe('aedes: a credential revoked before the store forgets it', () => {
  it('stays refused in between (account cancellation revokes first, deletes the row after)', async () => {
    const store = new SqliteStore({ path: ':memory:' });
    const accountId = ulid();
    await store.createAccount({ id: accountId, email: `${accountId.toLowerCase()}@example.com`, passwordHash: 'h', plan: null, createdAt: Date.now() });
    const broker = await AedesBroker.start({
      host: '127.0.0.1',
      port: 0,
      credentialHash: async (serial) => (await store.getDevice(serial))?.mqttPasswordHash ?? null,
      farewellTimeoutMs: 500,
      logger: createLogger({ level: 'silent' }),
    });
    try {
      const serial = 'REVOKE00000001';
      const password = 'a-device-password-0123456789';
      const codeHash = sha256Hex(newBindCode());
      await store.createBindCode({ codeHash, accountId, createdAt: Date.now(), expiresAt: Date.now() + 60_000 });
      await store.claimDevice({ codeHash, serial, model: 'M', tokenHash: sha256Hex('t'), mqttPasswordHash: sha256Hex(password), nowMs: Date.now(), cameraLimit: () => null });
      const connect = () =>
        mqtt.connectAsync(broker.publicUrl, { protocolVersion: 4, clientId: serial, username: serial, password, reconnectPeriod: 0 }, false).then(
          (c) => (c.end(true), 'connected'),
          () => 'refused',
        );
      expect(await connect()).toBe('connected');
      await broker.revoke(serial);
      // the row is still there, the credential is not
      expect(await store.getDevice(serial)).not.toBeNull();
      expect(await connect()).toBe('refused');
      // a new claim (provision) brings it back with its new credential
      await broker.provision(serial, password);
      expect(await connect()).toBe('connected');
    } finally {
      await broker.close();
      await store.close();
    }
  });
});
