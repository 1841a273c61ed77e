/**
 * The embedded broker: aedes inside the cloud process (DESIGN.md, "Embedded
 * defaults"). Devices log in with username = client id = serial and the MQTT
 * password they got at claim, checked against the store's hash (so a
 * credential dies with the device row: nothing to provision, nothing to
 * forget). The cloud subscribes in-process; commands are published
 * in-process. MQTT 3.1.1 only (aedes 1.2 has no MQTT 5).
 *
 * How aedes refuses things (DESIGN.md, "Broker facts"): a publish outside
 * the device's prefix closes its connection; a subscription outside it is
 * answered with a failure SUBACK (0x80).
 */
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import type { DeviceCommand } from '../../shared/contracts/alerts.js';
import { isSerial } from '../../shared/ids.js';
import type { Logger } from '../../shared/log.js';
import { commandsTopic } from '../../shared/topics.js';
import { hexEqual, sha256Hex } from '../auth/tokens.js';
import type { TlsMaterial } from '../http/tls.js';
import { mayPublish, maySubscribe } from './acl.js';
import { InboundDispatcher, MAX_PAYLOAD_BYTES } from './intake.js';
import { BrokerClosedError, type AlertHandler, type BrokerStats, type DeviceBroker, type StatusHandler } from './types.js';

export interface AedesBrokerOptions {
  host: string;
  /** 0: a free port */
  port: number;
  /** listen with TLS (mqtts://), with the cloud's own certificate */
  tls?: TlsMaterial;
  /**
   * The sha256 hex of the device's MQTT password, null when the serial is not
   * bound (the store's devices row: mqttPasswordHash).
   */
  credentialHash(serial: string): Promise<string | null>;
  /** what devices are told; default: the listen address */
  publicUrl?: (listen: { host: string; port: number; secure: boolean }) => string;
  /** how long revoke waits for a connected device to acknowledge its farewell */
  farewellTimeoutMs: number;
  logger: Logger;
  /** when the port is taken, listen on a free one instead (the demo) */
  fallbackToFreePort?: boolean;
  now?: () => number;
}

/** aedes's return codes in CONNACK (MQTT 3.1.1, table 3.1) */
const IDENTIFIER_REJECTED = 2;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

function refusal(message: string, returnCode: number): Error & { returnCode: number } {
  return Object.assign(new Error(message), { returnCode });
}

export class AedesBroker implements DeviceBroker {
  readonly kind = 'aedes' as const;
  private readonly inbound: InboundDispatcher;
  private closing: Promise<void> | undefined;
  private pendingRetries = 0;

  private constructor(
    private readonly aedes: Aedes,
    private readonly server: Server,
    readonly publicUrl: string,
    /** the port aedes listens on */
    readonly port: number,
    private readonly opts: AedesBrokerOptions,
    private readonly revoked: Map<string, string>,
  ) {
    this.inbound = new InboundDispatcher((err) => opts.logger.error({ err }, 'an MQTT handler failed'));
  }

  static async start(opts: AedesBrokerOptions): Promise<AedesBroker> {
    const log = opts.logger;
    const aedes = await Aedes.createBroker({
      // a device that stops reading is cut after 30 s rather than stalling every delivery (aedes docs, drainTimeout)
      drainTimeout: 30_000,
      // keepalive above 20 minutes would leave a dead device "online" for half an hour
      keepaliveLimit: 1200,
      connectTimeout: 10_000,
    });

    /**
     * Credentials revoked while the store still had them, by the hash they had
     * then: a caller may revoke first and delete the device row after, and a
     * device that reconnects in between must not get back in. An entry goes
     * when the serial is provisioned again or the store no longer has it.
     */
    const revoked = new Map<string, string>();
    aedes.authenticate = (client, username, password, done) => {
      void (async () => {
        // username = client id = serial: a device cannot take over another's session by its client id
        if (typeof username !== 'string' || !isSerial(username)) return done(refusal('bad username', BAD_USERNAME_OR_PASSWORD), false);
        if (client.id !== username) return done(refusal('the client id must be the serial', IDENTIFIER_REJECTED), false);
        const will = (client as unknown as { _will?: { topic?: string } })._will;
        if (will && !mayPublish(username, String(will.topic))) return done(refusal('a will outside the device topics', NOT_AUTHORIZED), false);
        const stored = await opts.credentialHash(username);
        if (stored === null) revoked.delete(username);
        if (stored === null || password === undefined || !hexEqual(stored, sha256Hex(password.toString('utf8')))) {
          return done(refusal('bad username or password', BAD_USERNAME_OR_PASSWORD), false);
        }
        // revoked before the store forgot it (account cancellation unbinds in that order)
        if (revoked.get(username) === stored) return done(refusal('the credential was revoked', BAD_USERNAME_OR_PASSWORD), false);
        done(null, true);
      })().catch((err: unknown) => {
        log.error({ err }, 'MQTT authentication failed to run');
        done(refusal('server unavailable', 3), false);
      });
    };

    aedes.authorizePublish = (client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void) => {
      // client null: the will of a client that is gone, checked when it connected
      if (client === null) return done(null);
      if (!mayPublish(client.id, packet.topic)) return done(new Error('topic outside the device prefix'));
      if ((packet.payload?.length ?? 0) > MAX_PAYLOAD_BYTES) return done(new Error('payload too large'));
      done(null);
    };

    aedes.authorizeSubscribe = (client: Client, sub: Subscription, done: (err: Error | null, sub?: Subscription | null) => void) => {
      // null: a failure SUBACK for this filter, the connection stays
      done(null, maySubscribe(client.id, sub.topic) ? sub : null);
    };

    aedes.on('clientError', (client, err) => log.debug({ serial: client.id, err: err.message }, 'MQTT client error'));
    aedes.on('connectionError', (_client, err) => log.debug({ err: err.message }, 'MQTT connection refused'));

    const handle = aedes.handle as unknown as (socket: import('node:net').Socket) => void;
    const server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, handle) : createTcpServer(handle);
    try {
      await listen(server, opts.host, opts.port);
    } catch (err) {
      if (!opts.fallbackToFreePort || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
        await new Promise<void>((r) => aedes.close(() => r()));
        // the code stays, so a caller can tell a taken port from other failures (as with the HTTP listen)
        throw Object.assign(new Error(`the MQTT broker cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}`, { cause: err }), {
          code: (err as NodeJS.ErrnoException).code,
        });
      }
      log.warn({ port: opts.port }, 'MQTT port taken; the broker listens on a free port instead');
      await listen(server, opts.host, 0);
    }
    const address = server.address() as AddressInfo;
    const listenHost = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
    const secure = opts.tls !== undefined;
    const publicUrl = opts.publicUrl?.({ host: listenHost, port: address.port, secure }) ?? `${secure ? 'mqtts' : 'mqtt'}://${listenHost}:${address.port}`;
    const broker = new AedesBroker(aedes, server, publicUrl, address.port, opts, revoked);
    await broker.subscribeCloud();
    log.info({ broker: 'aedes', port: address.port, tls: secure }, 'MQTT broker listening');
    return broker;
  }

  /** the cloud's own subscriptions, in-process (no ACL applies to them) */
  private async subscribeCloud(): Promise<void> {
    const now = this.opts.now ?? Date.now;
    const deliver = (packet: AedesPublishPacket, cb: () => void): void => {
      try {
        this.inbound.dispatch(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? ''), now());
      } finally {
        cb();
      }
    };
    for (const topic of ['devices/+/alerts', 'devices/+/status']) {
      await new Promise<void>((resolve) => this.aedes.subscribe(topic, deliver, resolve));
    }
  }

  private live(): void {
    if (this.closing) throw new BrokerClosedError();
  }

  private client(serial: string): Client | undefined {
    const c = (this.aedes as unknown as { clients: Record<string, Client | undefined> }).clients[serial];
    return c && !c.closed ? c : undefined;
  }

  /** Disconnects the device's session, if any; its will fires (it did not say goodbye). */
  private kick(serial: string): Promise<void> {
    const c = this.client(serial);
    return c ? new Promise<void>((resolve) => c.close(() => resolve())) : Promise.resolve();
  }

  /** The store holds the credential; a session that logged in with the previous one ends. */
  async provision(serial: string, _password: string): Promise<void> {
    this.live();
    this.revoked.delete(serial);
    await this.kick(serial);
  }

  async revoke(serial: string, farewell?: DeviceCommand): Promise<void> {
    this.live();
    const stored = await this.opts.credentialHash(serial);
    if (stored !== null) {
      // bounded: a map this large means rows that were never deleted; the oldest entry goes
      if (this.revoked.size >= 100_000) this.revoked.delete(this.revoked.keys().next().value as string);
      this.revoked.set(serial, stored);
    }
    const c = this.client(serial);
    if (c && farewell) {
      try {
        await this.deliverAndWait(c, serial, farewell);
      } catch (err) {
        this.opts.logger.warn({ serial, err: (err as Error).message }, 'the farewell command was not acknowledged before the disconnect');
      }
    }
    await this.kick(serial);
  }

  /** publishes to a connected client and waits for its PUBACK (aedes's 'ack'), at most farewellTimeoutMs */
  private deliverAndWait(client: Client, serial: string, command: DeviceCommand): Promise<void> {
    const topic = commandsTopic(serial);
    const payload = Buffer.from(JSON.stringify(command));
    return new Promise<void>((resolve, reject) => {
      // aedes names the acknowledged packet only for a persistent session; for a clean one
      // 'ack' comes without it, and any PUBACK of this client after our publish is taken as ours
      const onAck = (packet: { topic?: string; payload?: Buffer | string } | undefined, who: Client): void => {
        if (who !== client) return;
        if (packet) {
          const body = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? '');
          if (packet.topic !== topic || !body.equals(payload)) return;
        }
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error('no PUBACK in time'));
      }, this.opts.farewellTimeoutMs);
      const onGone = (who: Client): void => {
        if (who !== client) return;
        done();
        reject(new Error('the device disconnected'));
      };
      const done = (): void => {
        clearTimeout(timer);
        this.aedes.removeListener('ack', onAck as never);
        this.aedes.removeListener('clientDisconnect', onGone as never);
      };
      this.aedes.on('ack', onAck as never);
      this.aedes.on('clientDisconnect', onGone as never);
      this.aedes.publish({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false } as PublishPacket, (err) => {
        if (err) {
          done();
          reject(err);
        }
      });
    });
  }

  async publishCommand(serial: string, command: DeviceCommand): Promise<void> {
    this.live();
    const topic = commandsTopic(serial);
    await new Promise<void>((resolve, reject) =>
      this.aedes.publish(
        { cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(command)), qos: 1, retain: false, dup: false } as PublishPacket,
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  }

  isOnline(serial: string): boolean {
    return this.client(serial)?.connected === true;
  }

  onAlert(handler: AlertHandler): void {
    this.inbound.onAlert(handler);
  }

  onStatus(handler: StatusHandler): void {
    this.inbound.onStatus(handler);
  }

  stats(): BrokerStats {
    return { ...this.inbound.counters.counts, pendingRetries: this.pendingRetries };
  }

  /** the number of device connections (bench, tests) */
  get connectedClients(): number {
    return this.aedes.connectedClients;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      // stop taking connections, then close every client (their wills fire) and the broker
      const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
      await serverClosed;
    })();
    return this.closing;
  }
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.removeListener('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.removeListener('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}
