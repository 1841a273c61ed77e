/**
 * A fleet device's MQTT: the credentials from its claim, its own client
 * (client id = username = serial, as the brokers require), a retained
 * "online" status with the "offline" last will, and QoS 1 alerts on
 * devices/<serial>/alerts (shared/contracts/alerts.ts), timed to the PUBACK.
 *
 * Lighter than the agent's connection (agent/mqtt/connection.ts): no command
 * handling, no outbox; mqtt.js reconnects on its own after a second, and an
 * alert due while disconnected is counted as NOT_CONNECTED, not queued.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Alert, DeviceStatusPayload } from '../shared/contracts/alerts.js';
import { alertsTopic, statusTopic } from '../shared/topics.js';
import { NETWORK, TIMEOUT } from './fleet-stats.js';

export type MqttOutcome = { ok: true; ms: number } | { ok: false; code: string; ms: number };

/** CONNACK return codes of MQTT 3.1.1 (table 3.1), as the broker's refusal reads */
const CONNACK: Record<number, string> = {
  1: 'MQTT_BAD_PROTOCOL',
  2: 'MQTT_CLIENT_ID_REJECTED',
  3: 'MQTT_SERVER_UNAVAILABLE',
  4: 'MQTT_BAD_CREDENTIALS',
  5: 'MQTT_NOT_AUTHORIZED',
};

export class FleetMqttDevice {
  private constructor(
    private readonly client: MqttClient,
    readonly serial: string,
    private readonly timeoutMs: number,
  ) {}

  /** Connects and says "online"; the outcome times the CONNACK. Never rejects. */
  static connect(
    url: string,
    creds: { serial: string; username: string; password: string },
    timeoutMs: number,
  ): Promise<{ device: FleetMqttDevice | null; outcome: MqttOutcome }> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      let client: MqttClient;
      try {
        client = mqtt.connect(url, {
          clientId: creds.serial,
          username: creds.username,
          password: creds.password,
          protocolVersion: 4,
          clean: true,
          keepalive: 60,
          connectTimeout: timeoutMs,
          reconnectPeriod: 1000,
          will: { topic: statusTopic(creds.serial), payload: Buffer.from('offline' satisfies DeviceStatusPayload), qos: 1, retain: true },
        });
      } catch {
        resolve({ device: null, outcome: { ok: false, code: 'MQTT_URL_INVALID', ms: performance.now() - t0 } });
        return;
      }
      const fail = (code: string): void => {
        client.removeAllListeners('connect');
        client.end(true);
        resolve({ device: null, outcome: { ok: false, code, ms: performance.now() - t0 } });
      };
      client.once('connect', () => {
        client.removeListener('error', onError);
        // errors after the first connect: mqtt.js reconnects; publishes in between count as NOT_CONNECTED
        client.on('error', () => undefined);
        client.publish(statusTopic(creds.serial), 'online' satisfies DeviceStatusPayload, { qos: 1, retain: true }, () => undefined);
        resolve({ device: new FleetMqttDevice(client, creds.serial, timeoutMs), outcome: { ok: true, ms: performance.now() - t0 } });
      });
      const onError = (err: Error & { code?: unknown }): void => {
        const rc = typeof err.code === 'number' ? err.code : undefined;
        if (rc !== undefined) fail(CONNACK[rc] ?? `MQTT_CONNACK_${rc}`);
        else if (/connack timeout/i.test(err.message)) fail(TIMEOUT);
        else fail(NETWORK);
      };
      client.on('error', onError);
    });
  }

  /** One QoS 1 alert; the outcome times the PUBACK. Never rejects. */
  publishAlert(clipId?: string): Promise<MqttOutcome> {
    const t0 = performance.now();
    const alert: Alert = { serial: this.serial, type: 'motion', at: new Date().toISOString(), ...(clipId ? { clipId } : {}) };
    if (!this.client.connected) return Promise.resolve({ ok: false, code: 'NOT_CONNECTED', ms: 0 });
    return new Promise((resolve) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        resolve({ ok: false, code: TIMEOUT, ms: performance.now() - t0 });
      }, this.timeoutMs);
      this.client.publish(alertsTopic(this.serial), JSON.stringify(alert), { qos: 1 }, (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(err ? { ok: false, code: NETWORK, ms: performance.now() - t0 } : { ok: true, ms: performance.now() - t0 });
      });
    });
  }

  /** A clean disconnect says "offline" first: the last will fires only when a connection breaks. */
  async close(): Promise<void> {
    if (this.client.connected) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.timeoutMs);
        this.client.publish(statusTopic(this.serial), 'offline' satisfies DeviceStatusPayload, { qos: 1, retain: true }, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await this.client.endAsync(true);
  }
}
