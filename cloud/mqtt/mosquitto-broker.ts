/**
 * The production broker: an external Mosquitto 2 with the dynamic security
 * plugin (DESIGN.md, "Embedded defaults and production engines"). The cloud
 * connects as the plugin's admin client, gives itself a role to read device
 * alerts and statuses and to send commands, and provisions and revokes each
 * device's client and role over $CONTROL/dynamic-security/v1.
 *
 * Control commands carry a correlationData each (the plugin echoes it in its
 * response) and time out. Commands from concurrent callers are batched, up to
 * 100 per message: the plugin rewrites its whole file once per command, and
 * batching is what keeps a busy minute of claims from queueing behind each
 * other's rewrites (DESIGN.md: 1,000 devices took 103 s one command per
 * message, 12.7 s at 100).
 *
 * Every node subscribes to devices/+/alerts and devices/+/status itself (no
 * shared subscription): each node tells its own SSE clients, and the
 * notifications table decides which node sends a webhook.
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { DeviceCommand, DeviceStatusPayload } from '../../shared/contracts/alerts.js';
import type { Logger } from '../../shared/log.js';
import { commandsTopic } from '../../shared/topics.js';
import {
  CLOUD_ROLE,
  cloudRoleCommands,
  CONTROL_RESPONSE_TOPIC,
  CONTROL_TOPIC,
  createDeviceCommands,
  deleteDeviceCommands,
  isAlreadyDone,
  type DynsecCommand,
  type DynsecResponse,
} from './dynsec.js';
import { InboundDispatcher } from './intake.js';
import { BrokerClosedError, type AlertHandler, type BrokerStats, type DeviceBroker, type StatusHandler } from './types.js';

export interface MosquittoBrokerOptions {
  /** mqtt:// or mqtts:// (CAMVAULT_MQTT_URL) */
  url: string;
  adminUser: string;
  adminPassword: string;
  /** CA certificate(s) trusted for mqtts://, besides Node's roots */
  ca?: Buffer;
  /** what devices are told; default: url */
  publicUrl?: string;
  /** a $CONTROL command, a command publish, or the first connection may take this long */
  commandTimeoutMs: number;
  logger: Logger;
  now?: () => number;
  /** backoff of a provision or revoke that failed: doubles from min to max */
  retryMinDelayMs?: number;
  retryMaxDelayMs?: number;
}

/** the plugin takes any number per message; 100 is where DESIGN.md measured the gain */
export const COMMANDS_PER_MESSAGE = 100;
/**
 * A control message stays under this many bytes (100 device commands are
 * ~30 KB): Mosquitto drops a client whose packet is over its max_packet_size,
 * and mqtt.js would send the same packet again on every reconnect. Give the
 * broker `max_packet_size` of at least 256 KiB (scripts, README).
 */
export const CONTROL_MESSAGE_MAX_BYTES = 192 * 1024;

interface PendingCommand {
  command: DynsecCommand;
  resolve(r: DynsecResponse): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** `host:port` of the broker URL, never its credentials */
function target(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol === 'mqtts:' ? '8883' : '1883')}`;
  } catch {
    return '(invalid URL)';
  }
}

/** the URL without credentials */
function withoutCredentials(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString().replace(/\/$/, '');
}

/** One line for a connection error, never holding the password. */
function describe(err: unknown, password: string): string {
  const e = err as { message?: string; code?: string };
  let msg = (e.message || e.code || String(err)).replace(/\s*\n\s*/g, ' ');
  if (password) msg = msg.split(password).join('[redacted]');
  return msg;
}

export class MosquittoBroker implements DeviceBroker {
  readonly kind = 'mosquitto' as const;
  readonly publicUrl: string;
  private readonly inbound: InboundDispatcher;
  private readonly statuses = new Map<string, DeviceStatusPayload>();
  private readonly pending = new Map<string, PendingCommand>();
  private queue: PendingCommand[] = [];
  private flushScheduled = false;
  private seq = 0;
  /** $CONTROL messages sent since start (tests check the batching) */
  controlMessages = 0;
  private readonly node = randomBytes(4).toString('hex');
  /** the last provision or revoke of each serial: the next one runs after it, so they apply in order */
  private readonly chains = new Map<string, Promise<void>>();
  private retrying = 0;
  private closing: Promise<void> | undefined;
  /** retries waiting for their next attempt: close() wakes them so they end */
  private readonly sleepers = new Set<() => void>();

  private constructor(
    private readonly client: MqttClient,
    private readonly opts: MosquittoBrokerOptions,
  ) {
    this.publicUrl = opts.publicUrl ?? withoutCredentials(opts.url);
    this.inbound = new InboundDispatcher((err) => opts.logger.error({ err }, 'an MQTT handler failed'));
    this.inbound.onStatus((serial, status) => this.statuses.set(serial, status));
  }

  /**
   * Connects as the admin client, sets up the cloud's role, subscribes. An
   * unreachable broker or a refused login rejects with one line naming the
   * broker (never the password).
   */
  static async connect(opts: MosquittoBrokerOptions): Promise<MosquittoBroker> {
    const where = target(opts.url);
    const clientOpts: IClientOptions = {
      username: opts.adminUser,
      password: opts.adminPassword,
      clientId: `camvault-cloud-${randomBytes(6).toString('hex')}`,
      // MQTT 5: a refused publish comes back as a reason code, not silence
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: opts.commandTimeoutMs,
      keepalive: 30,
      ...(opts.ca ? { ca: opts.ca } : {}),
    };
    const client = mqtt.connect(opts.url, clientOpts);
    try {
      await new Promise<void>((resolve, reject) => {
        let lastError: unknown;
        const timer = setTimeout(() => finish(lastError ?? new Error(`no answer within ${opts.commandTimeoutMs} ms`)), opts.commandTimeoutMs);
        const onError = (err: unknown): void => {
          lastError = err;
          // a refused login is final; a socket error is reported on close
          if ((err as { code?: unknown }).code !== undefined && typeof (err as { code?: unknown }).code === 'number') finish(err);
        };
        const onClose = (): void => finish(lastError ?? new Error('the connection closed before the broker answered'));
        const onConnect = (): void => finish(undefined);
        const finish = (err: unknown): void => {
          clearTimeout(timer);
          client.off('error', onError);
          client.off('close', onClose);
          client.off('connect', onConnect);
          if (err === undefined) resolve();
          else reject(err instanceof Error ? err : new Error(String(err)));
        };
        client.on('error', onError);
        client.on('close', onClose);
        client.on('connect', onConnect);
      });
    } catch (err) {
      client.end(true);
      throw new Error(`mqtt broker at ${where}: ${describe(err, opts.adminPassword)}`, { cause: err });
    }
    const broker = new MosquittoBroker(client, opts);
    try {
      await broker.setUp();
    } catch (err) {
      await broker.close();
      throw new Error(`mqtt broker at ${where}: ${describe(err, opts.adminPassword)}`, { cause: err });
    }
    opts.logger.info({ broker: 'mosquitto', target: where }, 'MQTT broker connected');
    return broker;
  }

  private async setUp(): Promise<void> {
    const log = this.opts.logger;
    this.client.on('message', (topic, payload) => {
      if (topic === CONTROL_RESPONSE_TOPIC) this.onControlResponse(payload);
      else this.inbound.dispatch(topic, payload, (this.opts.now ?? Date.now)());
    });
    this.client.on('error', (err) => log.warn({ err: describe(err, this.opts.adminPassword) }, 'MQTT broker connection error'));
    this.client.on('offline', () => log.warn('MQTT broker connection lost; reconnecting'));
    this.client.on('connect', () => {
      // a clean session lost its subscriptions; mqtt.js subscribes again (resubscribe), and queued commands go out now
      this.scheduleFlush();
    });

    await this.subscribe([CONTROL_RESPONSE_TOPIC]);
    // the cloud's role, given to its admin client unless it has it (the plugin answers a second
    // addClientRole with "Internal error", so ask first)
    const [createRole, addRole] = cloudRoleCommands(this.opts.adminUser) as [DynsecCommand, DynsecCommand];
    const [created, self] = await this.control([createRole, { command: 'getClient', username: this.opts.adminUser }]);
    expectDone([created as DynsecResponse, self as DynsecResponse]);
    const roles = ((self?.data as { client?: { roles?: { rolename?: string }[] } } | undefined)?.client?.roles ?? []).map((r) => r.rolename);
    if (!roles.includes(CLOUD_ROLE)) expectDone(await this.control([addRole]));
    await this.subscribe(['devices/+/alerts', 'devices/+/status']);
  }

  private async subscribe(topics: string[]): Promise<void> {
    const granted = await this.client.subscribeAsync(topics.map((t) => ({ topic: t, qos: 1 as const })).reduce((o, s) => ({ ...o, [s.topic]: { qos: s.qos } }), {}));
    const refused = granted.filter((g) => g.qos > 2).map((g) => g.topic);
    if (refused.length > 0) throw new Error(`the admin client may not subscribe to ${refused.join(', ')}`);
  }

  /** Sends dynsec commands (batched with other callers'), and resolves with their responses in order. */
  control(commands: DynsecCommand[]): Promise<DynsecResponse[]> {
    if (this.closing) return Promise.reject(new BrokerClosedError());
    return Promise.all(
      commands.map(
        (command) =>
          new Promise<DynsecResponse>((resolve, reject) => {
            const id = `${this.node}-${++this.seq}`;
            const timer = setTimeout(() => {
              this.pending.delete(id);
              reject(new Error(`dynsec ${command.command} got no answer within ${this.opts.commandTimeoutMs} ms`));
            }, this.opts.commandTimeoutMs);
            const p: PendingCommand = { command: { ...command, correlationData: id }, resolve, reject, timer };
            this.pending.set(id, p);
            this.queue.push(p);
            this.scheduleFlush();
          }),
      ),
    );
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate: the commands of every caller in this turn of the event loop go in one message
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (!this.client.connected) return; // sent on the next 'connect'
    while (this.queue.length > 0) {
      const batch: PendingCommand[] = [];
      const parts: string[] = [];
      let bytes = 20;
      while (this.queue.length > 0 && batch.length < COMMANDS_PER_MESSAGE) {
        const p = this.queue[0] as PendingCommand;
        if (!this.pending.has(p.command.correlationData as string)) {
          this.queue.shift(); // timed out while waiting
          continue;
        }
        const json = JSON.stringify(p.command);
        if (batch.length > 0 && bytes + json.length + 1 > CONTROL_MESSAGE_MAX_BYTES) break;
        this.queue.shift();
        batch.push(p);
        parts.push(json);
        bytes += json.length + 1;
      }
      if (batch.length === 0) continue;
      this.controlMessages++;
      this.client.publish(CONTROL_TOPIC, `{"commands":[${parts.join(',')}]}`, { qos: 1 }, (err) => {
        if (!err) return;
        for (const p of batch) {
          clearTimeout(p.timer);
          this.pending.delete(p.command.correlationData as string);
          p.reject(err);
        }
      });
    }
  }

  private onControlResponse(payload: Buffer): void {
    let body: { responses?: DynsecResponse[] };
    try {
      body = JSON.parse(payload.toString('utf8')) as { responses?: DynsecResponse[] };
    } catch {
      return;
    }
    for (const r of body.responses ?? []) {
      const id = r.correlationData;
      const p = id !== undefined ? this.pending.get(id) : undefined;
      if (!p) continue; // another node's, or timed out
      this.pending.delete(id as string);
      clearTimeout(p.timer);
      p.resolve(r);
    }
  }

  /**
   * Runs `op` after the serial's earlier operations. The first attempt's
   * outcome is the caller's; a failed one is retried in the background with
   * backoff until it succeeds or the broker closes, before the serial's next
   * operation runs (a revoke never overtakes the provision it undoes).
   */
  private serialized(serial: string, what: string, op: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(serial) ?? Promise.resolve();
    let settle!: { resolve(): void; reject(err: unknown): void };
    const first = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    const run = previous.then(async () => {
      let counted = false;
      for (let attempt = 1; ; attempt++) {
        if (this.closing) {
          if (attempt === 1) settle.reject(new BrokerClosedError());
          break;
        }
        try {
          await op();
          if (attempt === 1) settle.resolve();
          else this.opts.logger.info({ serial, attempt }, `MQTT ${what} succeeded after a retry`);
          break;
        } catch (err) {
          if (attempt === 1) settle.reject(err);
          if (!counted) {
            counted = true;
            this.retrying++;
          }
          this.opts.logger.warn({ serial, attempt, err: (err as Error).message }, `MQTT ${what} failed; retrying`);
          const min = this.opts.retryMinDelayMs ?? 1000;
          await this.sleep(Math.min(this.opts.retryMaxDelayMs ?? 60_000, min * 2 ** (attempt - 1)));
        }
      }
      if (counted) this.retrying--;
    });
    this.chains.set(serial, run);
    void run.finally(() => {
      if (this.chains.get(serial) === run) this.chains.delete(serial);
    });
    return first;
  }

  private sleep(ms: number): Promise<void> {
    if (this.closing) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  provision(serial: string, password: string): Promise<void> {
    return this.serialized(serial, 'provision', async () => {
      const [role, client] = await this.control(createDeviceCommands(serial, password));
      expectDone([role as DynsecResponse]);
      if (client?.error && isAlreadyDone(client.command, client.error)) {
        // a rebind: the old client goes (its session is disconnected) and comes back with the new password
        expectDone(await this.control([{ command: 'deleteClient', username: serial }, ...createDeviceCommands(serial, password).slice(1)]));
      } else {
        expectDone([client as DynsecResponse]);
      }
    });
  }

  revoke(serial: string, farewell?: DeviceCommand): Promise<void> {
    return this.serialized(serial, 'revoke', async () => {
      if (farewell && this.isOnline(serial)) {
        try {
          await this.publishCommand(serial, farewell);
        } catch (err) {
          this.opts.logger.warn({ serial, err: (err as Error).message }, 'the farewell command was not taken by the broker');
        }
      }
      // deleteClient disconnects it at once
      expectDone(await this.control(deleteDeviceCommands(serial)));
      this.statuses.delete(serial);
    });
  }

  async publishCommand(serial: string, command: DeviceCommand): Promise<void> {
    if (this.closing) throw new BrokerClosedError();
    const topic = commandsTopic(serial);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.client.publishAsync(topic, JSON.stringify(command), { qos: 1 }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the broker did not take the command within ${this.opts.commandTimeoutMs} ms`)), this.opts.commandTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  isOnline(serial: string): boolean {
    return this.statuses.get(serial) === 'online';
  }

  onAlert(handler: AlertHandler): void {
    this.inbound.onAlert(handler);
  }

  onStatus(handler: StatusHandler): void {
    this.inbound.onStatus(handler);
  }

  stats(): BrokerStats {
    return { ...this.inbound.counters.counts, pendingRetries: this.retrying };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const wake of this.sleepers) wake();
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new BrokerClosedError());
      }
      this.pending.clear();
      this.queue = [];
      await this.client.endAsync(false).catch(() => this.client.end(true));
    })();
    return this.closing;
  }
}

/** throws when a command failed for a reason other than "it is already so" */
function expectDone(responses: DynsecResponse[]): void {
  for (const r of responses) {
    if (r.error && !isAlreadyDone(r.command, r.error)) throw new Error(`dynsec ${r.command}: ${r.error}`);
  }
}

