import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { DeviceCommand } from '../../shared/contracts/alerts.js';
import type { DeviceConfigResponse } from '../../shared/contracts/devices.js';
import type { Logger } from '../../shared/log.js';
import type { AgentConfig } from '../config.js';
import { MQTT_STATUS_STAT, type DeviceCredentials, type Journal } from '../journal/journal.js';
import { abortableSleep } from '../wakeup.js';
import type { AlertOutbox } from './alert-outbox.js';
import { brokerLabel, checkBrokerUrl } from './broker-url.js';
import { parseCommand } from './commands.js';
import { DeviceMqtt, type MqttStatus } from './connection.js';
import type { ReconnectPolicy } from './reconnect.js';

/**
 * The agent's MQTT side put together (issue 7): finds the broker, keeps the
 * connection (connection.ts), feeds the alert outbox, hands each valid
 * command to the agent, and journals the connection state for `agent status`
 * (agent_stats 'mqtt', written only when the state or its code changes: an
 * outage of days is one write).
 *
 * Where the broker is, first found wins: the agent's `mqttUrl`; the URL the
 * cloud gave at claim (kept with the credentials in the journal); GET
 * /v1/device/config. When the cloud's URL keeps failing, the cloud is asked
 * again (a broker can move); an override is never second-guessed.
 */

/** What the agent does on each command. The PUBACK waits for the promise. */
export interface CommandHandlers {
  unbind(cmd: Extract<DeviceCommand, { type: 'unbind' }>): Promise<void>;
  syncNow(cmd: Extract<DeviceCommand, { type: 'sync-now' }>): void;
  setUploadMode(cmd: Extract<DeviceCommand, { type: 'set-upload-mode' }>): void;
}

export interface DeviceLinkOptions {
  journal: Journal;
  serial: string;
  config: Pick<AgentConfig, 'mqttUrl' | 'development' | 'caFile'>;
  logger: Logger;
  clock?: Clock;
  outbox: AlertOutbox;
  handlers: CommandHandlers;
  /** GET /v1/device/config */
  fetchConfig: (signal: AbortSignal) => Promise<DeviceConfigResponse>;
  /** tests shorten the waits */
  mqtt?: { policy?: Partial<ReconnectPolicy>; keepaliveSec?: number; connectTimeoutMs?: number; pubackTimeoutMs?: number };
  /** how long to wait before asking the cloud for the broker again, at first (doubles to 10 min) */
  configRetryMs?: number;
}

/** Network failures in a row after which the cloud is asked where the broker is now. */
const REFRESH_AFTER_FAILURES = 5;

/** A command id is logged only when it looks like one. */
const LOGGABLE_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

/** Events: 'status' (MqttStatus), 'command' (DeviceCommand, once handled), 'connected'. */
export class DeviceLink extends EventEmitter {
  private readonly opts: DeviceLinkOptions;
  private readonly journal: Journal;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly stopping = new AbortController();
  private mqtt: DeviceMqtt | undefined;
  private statusNow: MqttStatus;
  private lastJournaled: string | undefined;
  private runDone: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(opts: DeviceLinkOptions) {
    super();
    this.opts = opts;
    this.journal = opts.journal;
    this.log = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.statusNow = { state: 'off', since: this.clock.now(), code: null, broker: null, retryAt: null };
  }

  /** Connects with these credentials, once the broker is known. */
  start(creds: DeviceCredentials): void {
    if (this.stopping.signal.aborted) return;
    this.runDone ??= this.run(creds).catch((err: unknown) => this.log.error({ err }, 'the MQTT side failed'));
  }

  /** Idempotent. `reason` is journaled as the state's code ('STOPPED', 'UNBOUND'). */
  stop(reason = 'STOPPED'): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping.abort();
      await this.opts.outbox.stop();
      await this.mqtt?.stop();
      await this.runDone;
      await this.refreshing;
      this.setStatus({ state: 'off', since: this.clock.now(), code: reason, broker: this.statusNow.broker, retryAt: null });
    })();
    return this.stopPromise;
  }

  get status(): MqttStatus {
    return { ...this.statusNow };
  }

  /** The live connection, for tests and diagnostics. */
  get connection(): DeviceMqtt | undefined {
    return this.mqtt;
  }

  private async run(creds: DeviceCredentials): Promise<void> {
    const url = await this.brokerUrl(creds);
    if (url === undefined || this.stopping.signal.aborted) return;
    // a credential this device has not started a session with yet: the session starts clean (connection.ts)
    const sessionKey = createHash('sha256').update(creds.mqtt.password).digest('hex');
    const mqtt = new DeviceMqtt({
      freshSession: this.journal.mqttSessionKey() !== sessionKey,
      url,
      serial: this.opts.serial,
      username: creds.mqtt.username,
      password: creds.mqtt.password,
      caFile: this.opts.config.caFile,
      logger: this.log,
      clock: this.clock,
      ...this.opts.mqtt,
      onCommand: (payload) => this.onCommand(payload),
    });
    this.mqtt = mqtt;
    let failures = 0;
    mqtt.on('status', (s: MqttStatus) => this.setStatus(s));
    mqtt.on('session-wiped', () => {
      if (this.journal.isOpen) this.journal.setMqttSessionKey(sessionKey);
    });
    mqtt.on('connected', () => {
      failures = 0;
      this.opts.outbox.connected();
      this.emit('connected');
    });
    mqtt.on('disconnected', (e: { refused: boolean }) => {
      failures += 1;
      if (this.opts.config.mqttUrl === undefined && (e.refused || failures % REFRESH_AFTER_FAILURES === 0)) this.refreshUrl(creds);
    });
    mqtt.start();
    this.opts.outbox.start(mqtt);
  }

  /**
   * The override, the URL kept from the claim, or the cloud's answer (asked
   * again, with backoff, until it gives a usable one). Undefined once stopped.
   */
  private async brokerUrl(creds: DeviceCredentials): Promise<string | undefined> {
    const dev = this.opts.config.development;
    if (this.opts.config.mqttUrl !== undefined) {
      const c = checkBrokerUrl(this.opts.config.mqttUrl, dev);
      // the config loader checked it already; this is the same rule
      if (c.ok) return c.url;
    }
    if (creds.mqtt.url !== undefined) {
      const c = checkBrokerUrl(creds.mqtt.url, dev);
      if (c.ok) return c.url;
      this.log.error({ code: c.code }, c.message);
    }
    let delay = this.opts.configRetryMs ?? 30_000;
    for (;;) {
      const got = await this.askCloud(creds);
      if (got.url !== undefined) return got.url;
      this.setStatus({ state: 'off', since: this.clock.now(), code: got.code, broker: null, retryAt: this.clock.now() + delay });
      await abortableSleep(delay, this.stopping.signal);
      if (this.stopping.signal.aborted) return undefined;
      delay = Math.min(600_000, delay * 2);
    }
  }

  /** GET /v1/device/config; a usable URL is kept with the credentials. */
  private async askCloud(creds: DeviceCredentials): Promise<{ url?: string; code: string }> {
    let answer: DeviceConfigResponse;
    try {
      answer = await this.opts.fetchConfig(this.stopping.signal);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const c = typeof code === 'string' ? code : 'NETWORK_ERROR';
      this.log.warn({ code: c }, 'cannot learn where the MQTT broker is; alerts wait in the outbox');
      return { code: c === 'ROUTE_NOT_FOUND' ? 'NO_BROKER' : c };
    }
    const c = checkBrokerUrl(answer.mqtt.url, this.opts.config.development);
    if (!c.ok) {
      this.log.error({ code: c.code }, c.message);
      return { code: c.code };
    }
    if (creds.mqtt.url !== c.url && this.journal.isOpen && this.journal.getCredentials() !== undefined) {
      creds.mqtt.url = c.url;
      this.journal.setCredentials(creds);
    }
    return { url: c.url, code: 'OK' };
  }

  /** In the background: the cloud may have moved the broker. */
  private refreshUrl(creds: DeviceCredentials): void {
    if (this.refreshing || this.stopping.signal.aborted) return;
    this.refreshing = (async () => {
      const before = creds.mqtt.url;
      const got = await this.askCloud(creds);
      if (got.url !== undefined && got.url !== before && !this.stopping.signal.aborted) {
        this.log.info({ broker: brokerLabel(got.url) }, 'the cloud names another MQTT broker; using it from the next attempt');
        this.mqtt?.setUrl(got.url);
      }
    })().finally(() => {
      this.refreshing = undefined;
    });
  }

  private async onCommand(payload: Buffer): Promise<void> {
    const parsed = parseCommand(payload);
    if (!parsed.ok) {
      this.log.warn({ reason: parsed.reason, ...(parsed.type ? { type: parsed.type } : {}) }, 'a command was ignored');
      return;
    }
    const cmd = parsed.command;
    const commandId = LOGGABLE_ID.test(cmd.id) ? cmd.id : undefined;
    this.log.info({ type: cmd.type, commandId, ...(cmd.type === 'set-upload-mode' ? { mode: cmd.mode } : {}) }, 'command from the cloud');
    switch (cmd.type) {
      case 'unbind':
        await this.opts.handlers.unbind(cmd);
        break;
      case 'sync-now':
        this.opts.handlers.syncNow(cmd);
        break;
      case 'set-upload-mode':
        this.opts.handlers.setUploadMode(cmd);
        break;
    }
    this.emit('command', cmd);
  }

  private setStatus(s: MqttStatus): void {
    this.statusNow = s;
    this.emit('status', { ...s });
    const key = `${s.state}/${s.code ?? ''}/${s.broker ?? ''}`;
    if (key === this.lastJournaled || !this.journal.isOpen) return;
    this.lastJournaled = key;
    try {
      this.journal.setStatInfo(MQTT_STATUS_STAT, s);
    } catch (err) {
      this.log.debug({ err: { message: (err as Error).message } }, 'the MQTT state could not be journaled');
    }
  }
}
