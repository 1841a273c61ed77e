/**
 * The broker the configuration selects (DESIGN.md, "Configuration"):
 * CAMVAULT_MQTT_URL unset → aedes inside the cloud; set → an external
 * Mosquitto with the dynamic security plugin, as its admin client.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../shared/log.js';
import type { CloudConfig } from '../config.js';
import type { TlsMaterial } from '../http/tls.js';
import type { Store } from '../store/types.js';
import { AedesBroker } from './aedes-broker.js';
import { MosquittoBroker } from './mosquitto-broker.js';
import type { DeviceBroker, DeviceCommands } from './types.js';

export { AedesBroker } from './aedes-broker.js';
export { MosquittoBroker } from './mosquitto-broker.js';
export type { DeviceBroker, DeviceCommands } from './types.js';

/** how long an unbind waits for a connected device's PUBACK before it disconnects it */
const FAREWELL_TIMEOUT_MS = 2000;

/** aedes's port: the configured one, else 1883, or a free port when the HTTP port is 0 (tests: "port 0 means free ports") */
export function embeddedMqttPort(config: CloudConfig): number {
  return config.mqtt.port ?? (config.port === 0 ? 0 : 1883);
}

export interface OpenBrokerOptions {
  store: Store;
  logger: Logger;
  /** the cloud's certificate: aedes listens with TLS too */
  tls?: TlsMaterial;
  /** the demo: a taken port is replaced by a free one */
  fallbackToFreePort?: boolean;
  now?: () => number;
}

export async function openBroker(config: CloudConfig, opts: OpenBrokerOptions): Promise<DeviceBroker> {
  const m = config.mqtt;
  const logger = opts.logger.child({ component: 'mqtt' });
  if (m.url) {
    let ca: Buffer | undefined;
    if (m.caFile) {
      try {
        ca = readFileSync(m.caFile);
      } catch (err) {
        throw new Error(`MQTT CA file ${m.caFile} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'unknown error'}`, { cause: err });
      }
    }
    return MosquittoBroker.connect({
      url: m.url,
      adminUser: m.adminUser as string,
      adminPassword: m.adminPassword as string,
      ca,
      publicUrl: m.publicUrl,
      commandTimeoutMs: m.commandTimeoutMs,
      logger,
      now: opts.now,
    });
  }
  return AedesBroker.start({
    host: m.host ?? config.host,
    port: embeddedMqttPort(config),
    tls: opts.tls,
    credentialHash: async (serial) => (await opts.store.getDevice(serial))?.mqttPasswordHash ?? null,
    // devices reach the broker at the host of the cloud's public URL, when there is one
    publicUrl: ({ host, port, secure }) => {
      if (m.publicUrl) return m.publicUrl;
      const publicHost = config.publicUrl ? new URL(config.publicUrl).hostname : host;
      const bracketed = publicHost.includes(':') && !publicHost.startsWith('[') ? `[${publicHost}]` : publicHost;
      return `${secure ? 'mqtts' : 'mqtt'}://${bracketed}:${port}`;
    },
    farewellTimeoutMs: Math.min(FAREWELL_TIMEOUT_MS, m.commandTimeoutMs),
    logger,
    fallbackToFreePort: opts.fallbackToFreePort,
    now: opts.now,
  });
}

/** AppContext.deviceCommands over a broker. */
export function deviceCommandsOver(broker: DeviceBroker): DeviceCommands {
  return {
    unbind: (serial) => broker.revoke(serial, { type: 'unbind', id: randomUUID() }),
    syncNow: (serial) => broker.publishCommand(serial, { type: 'sync-now', id: randomUUID() }),
  };
}
