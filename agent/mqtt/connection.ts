import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { DeviceStatusPayload } from '../../shared/contracts/alerts.js';
import type { Logger } from '../../shared/log.js';
import { commandsTopic, statusTopic } from '../../shared/topics.js';
import { certificateErrorCode } from '../cloud-client.js';
import { abortableSleep } from '../wakeup.js';
import { brokerLabel } from './broker-url.js';
import { DEFAULT_RECONNECT_POLICY, reconnectDelayMs, type ReconnectPolicy } from './reconnect.js';

/**
 * The device's MQTT connection (issue 7): one mqtt.js client per network
 * connection, clientId = serial, clean: false (a persistent session, so QoS 1
 * commands sent while the camera was offline arrive when it is back), the
 * status topic retained "online" on connect with a retained "offline" as the
 * last will, commands subscribed at QoS 1 on every connect.
 *
 * Reconnection is ours, not mqtt.js's (reconnectPeriod 0): its fixed-period
 * timer cannot back off, and after a refused CONNACK it either stops for good
 * or retries at the same pace. Here each connection ends in an outcome (how
 * long it was up, why it ended) and reconnect.ts decides the wait.
 *
 * What the agent publishes is its own to make durable (the alert outbox):
 * publish() resolves on PUBACK and rejects when the connection ends first,
 * and nothing is left for mqtt.js to re-send (each connection gets a fresh
 * client and fresh in-memory stores), so an alert is never sent twice by two
 * layers.
 *
 * Nothing here logs the password or a payload.
 */

export type MqttLinkState = 'off' | 'connecting' | 'connected' | 'disconnected' | 'refused';

/** What `agent status` shows about the broker connection (journaled by the agent on change). */
export interface MqttStatus {
  state: MqttLinkState;
  /** when the state (and code) last changed */
  since: number;
  /** why it is not connected: a network code (ECONNREFUSED, TIMEOUT, TLS_CERT_INVALID…), NOT_AUTHORIZED, … */
  code: string | null;
  /** host and port, never credentials */
  broker: string | null;
  /** the next attempt, while disconnected or refused */
  retryAt: number | null;
}

/** A publish that did not get its PUBACK. */
export class MqttPublishError extends Error {
  readonly code: 'NOT_CONNECTED' | 'CONNECTION_LOST' | 'PUBACK_TIMEOUT' | 'PUBLISH_FAILED';
  constructor(code: MqttPublishError['code'], message?: string) {
    super(message ?? code);
    this.name = 'MqttPublishError';
    this.code = code;
  }
}

export interface DeviceMqttOptions {
  /** mqtt:// or mqtts://, checked already (broker-url.ts) */
  url: string;
  serial: string;
  username: string;
  password: string;
  /** PEM CA file trusted for mqtts:// in addition to Node's bundled roots (as for the cloud's HTTPS) */
  caFile?: string;
  logger: Logger;
  clock?: Clock;
  /** MQTT keepalive; a hung connection is noticed after 1.5 × this (default 60 s) */
  keepaliveSec?: number;
  /** a TCP + TLS + CONNACK handshake that takes longer is given up (default 15 s) */
  connectTimeoutMs?: number;
  /** no PUBACK within this time: the connection is considered broken and made again (default 30 s) */
  pubackTimeoutMs?: number;
  policy?: Partial<ReconnectPolicy>;
  random?: () => number;
  /**
   * The credential is new (a claim, a rebind): the first connection is a
   * clean session, ended as soon as the broker accepts it, so whatever a
   * session of this serial held from before (commands queued for a former
   * owner) is gone; the persistent session starts right after. Emits
   * 'session-wiped' when done.
   */
  freshSession?: boolean;
  /**
   * A message on the commands topic. Its PUBACK is sent once the promise
   * settles, so a command's effect is durable before the broker forgets it.
   */
  onCommand: (payload: Buffer) => Promise<void>;
}

/** CONNACK return codes that a retry cannot fix (3.1.1: 1, 2, 4, 5; MQTT 5: 0x84–0x87, 0x8C). */
const REFUSED_CODES: Record<number, string> = {
  1: 'PROTOCOL_REFUSED',
  2: 'IDENTIFIER_REJECTED',
  4: 'BAD_USERNAME_OR_PASSWORD',
  5: 'NOT_AUTHORIZED',
  0x84: 'PROTOCOL_REFUSED',
  0x85: 'IDENTIFIER_REJECTED',
  0x86: 'BAD_USERNAME_OR_PASSWORD',
  0x87: 'NOT_AUTHORIZED',
  0x8c: 'NOT_AUTHORIZED',
};

interface Outcome {
  code: string;
  refused: boolean;
  /** how long the connection was up, if it got a CONNACK */
  upMs: number | undefined;
  /** a fresh-session connection did its job */
  wiped?: boolean;
}

interface Pending {
  resolve(): void;
  reject(err: MqttPublishError): void;
}

/**
 * Events: 'connected' (), 'disconnected' ({ code, refused }), 'status'
 * (MqttStatus, on every change), 'session-wiped' ().
 */
export class DeviceMqtt extends EventEmitter {
  private readonly opts: DeviceMqttOptions;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly policy: ReconnectPolicy;
  private readonly random: () => number;
  private readonly ca: string[] | undefined;
  private url: string;
  private readonly stopping = new AbortController();
  /** the client of the attempt or connection in progress */
  private current: MqttClient | undefined;
  /** publishes waiting for their PUBACK, by client */
  private readonly pending = new Map<MqttClient, Set<Pending>>();
  private loopDone: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private statusNow: MqttStatus;
  private attemptCount = 0;
  private connectCount = 0;
  private wipeSession: boolean;

  constructor(opts: DeviceMqttOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.policy = { ...DEFAULT_RECONNECT_POLICY, ...opts.policy };
    this.random = opts.random ?? Math.random;
    this.url = opts.url;
    this.wipeSession = opts.freshSession ?? false;
    // `ca` replaces the default trust: give the bundled roots back (design notes, "Transport")
    this.ca = opts.caFile !== undefined ? [...rootCertificates, readFileSync(opts.caFile, 'utf8')] : undefined;
    this.statusNow = { state: 'off', since: this.clock.now(), code: null, broker: brokerLabel(opts.url), retryAt: null };
  }

  start(): void {
    if (this.stopping.signal.aborted) throw new Error('the MQTT connection is stopped');
    this.loopDone ??= this.run();
  }

  /** Idempotent: ends the connection (the broker then publishes the last will, "offline") and the retries. */
  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  get status(): MqttStatus {
    return { ...this.statusNow };
  }

  get connected(): boolean {
    return this.statusNow.state === 'connected';
  }

  /** Connection attempts so far (tests bound them). */
  get attempts(): number {
    return this.attemptCount;
  }

  /** Connections the broker accepted so far. */
  get connects(): number {
    return this.connectCount;
  }

  /** The broker moved (GET /v1/device/config): used from the next attempt on. */
  setUrl(url: string): void {
    this.url = url;
  }

  /** Closes the connection now (a broker that stopped answering); the loop connects again after its wait. */
  reconnect(): void {
    this.current?.end(true);
  }

  /** QoS 1: resolves on the broker's PUBACK; rejects when not connected or when the connection ends first. */
  publish(topic: string, payload: string | Buffer, opts: { retain?: boolean } = {}): Promise<void> {
    const client = this.current;
    if (!client || !this.connected || !client.connected) return Promise.reject(new MqttPublishError('NOT_CONNECTED'));
    return new Promise<void>((resolve, reject) => {
      const set = this.pending.get(client) ?? new Set<Pending>();
      this.pending.set(client, set);
      let settled = false;
      const timer = setTimeout(() => {
        p.reject(new MqttPublishError('PUBACK_TIMEOUT', `no PUBACK within ${this.pubackTimeoutMs} ms`));
        // a broker that keeps the connection but stops acknowledging is broken: connect again
        client.end(true);
      }, this.pubackTimeoutMs);
      const p: Pending = {
        resolve: () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          set.delete(p);
          resolve();
        },
        reject: (err) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          set.delete(p);
          reject(err);
        },
      };
      set.add(p);
      client.publish(topic, payload, { qos: 1, retain: opts.retain ?? false }, (err) => {
        if (err) p.reject(new MqttPublishError('PUBLISH_FAILED', err.message));
        else p.resolve();
      });
    });
  }

  private get pubackTimeoutMs(): number {
    return this.opts.pubackTimeoutMs ?? 30_000;
  }

  private async doStop(): Promise<void> {
    this.stopping.abort();
    const client = this.current;
    if (client && this.connected) {
      // best effort, a second at most; the will says the same if this does not get through
      const offline: DeviceStatusPayload = 'offline';
      await Promise.race([this.publish(statusTopic(this.opts.serial), offline, { retain: true }).catch(() => undefined), abortableSleep(1000, new AbortController().signal)]);
    }
    this.current?.end(true);
    await this.loopDone;
    this.setStatus('off', null, null);
  }

  private async run(): Promise<void> {
    const stop = this.stopping.signal;
    let failures = 0;
    let lastCode: string | undefined;
    while (!stop.aborted) {
      this.attemptCount += 1;
      // a retry keeps the state (and its since) of the failure it follows
      if (this.statusNow.state === 'off') this.setStatus('connecting', null, null);
      const outcome = await this.connectOnce(this.wipeSession);
      if (stop.aborted) break;
      if (outcome.wiped) {
        this.wipeSession = false;
        this.log.info('a fresh MQTT session for the new credential');
        this.emit('session-wiped');
        continue;
      }
      if (outcome.upMs !== undefined && outcome.upMs >= this.policy.healthyMs) failures = 0;
      failures += 1;
      const delay = reconnectDelayMs(this.policy, failures, outcome.refused ? 'refused' : 'network', this.random);
      this.setStatus(outcome.refused ? 'refused' : 'disconnected', outcome.code, this.clock.now() + delay);
      // one line when something changes, then one every tenth failure: an outage of days writes a few lines
      const say = outcome.code !== lastCode || failures % 10 === 0;
      lastCode = outcome.code;
      if (outcome.refused) {
        if (say) this.log.warn({ code: outcome.code, broker: this.statusNow.broker, retryInMs: delay }, 'the MQTT broker refused the device credential; trying again slowly');
      } else if (outcome.upMs !== undefined) {
        this.log.info({ code: outcome.code, upMs: outcome.upMs, retryInMs: delay }, 'MQTT connection lost; reconnecting');
      } else if (say) {
        this.log.warn({ code: outcome.code, broker: this.statusNow.broker, failures, retryInMs: delay }, 'cannot reach the MQTT broker; alerts wait in the outbox');
      }
      this.emit('disconnected', { code: outcome.code, refused: outcome.refused });
      await abortableSleep(delay, stop);
    }
  }

  /**
   * One network connection, from connect to close. Never rejects. `wipe`: a
   * clean session, closed with a DISCONNECT as soon as the broker accepts it.
   */
  private connectOnce(wipe: boolean): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const options: IClientOptions = {
        clientId: this.opts.serial,
        username: this.opts.username,
        password: this.opts.password,
        protocolVersion: 4,
        clean: wipe,
        keepalive: this.opts.keepaliveSec ?? 60,
        connectTimeout: this.opts.connectTimeoutMs ?? 15_000,
        reconnectPeriod: 0,
        resubscribe: false,
        will: { topic: statusTopic(this.opts.serial), payload: Buffer.from('offline' satisfies DeviceStatusPayload), qos: 1, retain: true },
        rejectUnauthorized: true,
        ...(this.ca ? { ca: this.ca } : {}),
      };
      let client: MqttClient;
      try {
        client = mqtt.connect(this.url, options);
      } catch (err) {
        resolve({ code: 'MQTT_URL_INVALID', refused: false, upMs: undefined });
        this.log.error({ err: { message: (err as Error).message } }, 'cannot connect to the MQTT broker');
        return;
      }
      this.current = client;
      let code: string | undefined;
      let refused = false;
      let wiped = false;
      let upAt: number | undefined;
      // one command at a time; the PUBACK goes out when it is handled
      client.handleMessage = (packet: IPublishPacket, done) => {
        this.onMessage(packet).then(
          () => done(),
          () => done(),
        );
      };
      client.on('connect', () => {
        upAt = this.clock.now();
        this.connectCount += 1;
        if (wipe) {
          // MQTT 3.1.1 §3.1.2.4: a clean session discards the previous one; a DISCONNECT ends it without the will
          wiped = true;
          client.end(false);
          return;
        }
        this.onConnected(client);
      });
      client.on('error', (err: Error & { code?: unknown }) => {
        const rc = typeof err.code === 'number' ? err.code : undefined;
        if (rc !== undefined && REFUSED_CODES[rc]) {
          refused = true;
          code = REFUSED_CODES[rc];
        } else if (rc !== undefined) {
          code = `CONNACK_${rc}`;
        } else if (certificateErrorCode(err) !== undefined) {
          code = 'TLS_CERT_INVALID';
        } else if (/connack timeout/i.test(err.message)) {
          code = 'TIMEOUT';
        } else {
          code ??= typeof err.code === 'string' ? err.code : 'NETWORK_ERROR';
        }
      });
      client.on('close', () => {
        if (this.current === client) this.current = undefined;
        const upMs = upAt === undefined ? undefined : this.clock.now() - upAt;
        for (const p of [...(this.pending.get(client) ?? [])]) p.reject(new MqttPublishError('CONNECTION_LOST'));
        this.pending.delete(client);
        // nothing of this client is reused: its stores go with it
        client.end(true);
        resolve({ code: code ?? (upAt === undefined ? 'CONNECTION_CLOSED' : 'CONNECTION_LOST'), refused, upMs, wiped });
      });
    });
  }

  private onConnected(client: MqttClient): void {
    this.setStatus('connected', null, null);
    this.log.info({ broker: this.statusNow.broker }, 'connected to the MQTT broker');
    // every connect, not only a fresh session: a broker restarted without persistence forgot it
    client.subscribe(commandsTopic(this.opts.serial), { qos: 1 }, (err, granted) => {
      if (err || granted?.some((g) => g.qos > 2)) this.log.error({ err: err ? { message: err.message } : undefined }, 'the broker refused the commands subscription');
    });
    const online: DeviceStatusPayload = 'online';
    this.publish(statusTopic(this.opts.serial), online, { retain: true }).catch((err: unknown) => {
      this.log.debug({ code: (err as MqttPublishError).code }, 'the online status was not acknowledged');
    });
    this.emit('connected');
  }

  private async onMessage(packet: IPublishPacket): Promise<void> {
    if (packet.topic !== commandsTopic(this.opts.serial)) {
      this.log.debug('a message on a topic the device did not subscribe to; ignored');
      return;
    }
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    try {
      await this.opts.onCommand(payload);
    } catch (err) {
      this.log.error({ err }, 'a command failed');
    }
  }

  private setStatus(state: MqttLinkState, code: string | null, retryAt: number | null): void {
    const prev = this.statusNow;
    if (prev.state === state && prev.code === code && prev.retryAt === retryAt) return;
    const changed = prev.state !== state || prev.code !== code;
    this.statusNow = { state, since: changed ? this.clock.now() : prev.since, code, broker: brokerLabel(this.url), retryAt };
    this.emit('status', this.status);
  }
}
