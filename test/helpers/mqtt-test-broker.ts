/**
 * A real aedes broker for the agent's MQTT tests (issue 7), as the cloud's
 * embedded broker behaves for a device: the username is the serial and must
 * be the client id, the password is the device's MQTT credential, and a
 * device may publish and subscribe under its own devices/<serial>/ only.
 * Plain TCP or TLS on 127.0.0.1 port 0. It records what devices publish and
 * counts every login attempt, and sends commands as the cloud does (QoS 1,
 * kept for a device whose persistent session is offline).
 */
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { DeviceCommand } from '../../shared/contracts/alerts.js';
import { commandsTopic } from '../../shared/topics.js';

export interface BrokerMessage {
  topic: string;
  payload: string;
  retain: boolean;
  qos: number;
  /** the publishing client's id; null for what the broker publishes itself (a last will counts as the client's) */
  clientId: string | null;
  at: number;
}

export class TestBroker {
  /** serial → the password it may log in with */
  readonly credentials = new Map<string, string>();
  /** refuse every login with CONNACK 5 (not authorized), whatever the credential */
  refuseAll = false;
  /** login attempts (CONNECT packets that reached authenticate) */
  logins = 0;
  /** logins refused */
  refusals = 0;
  readonly messages: BrokerMessage[] = [];
  /** client ids connected now */
  readonly online = new Set<string>();
  readonly aedes: Aedes;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;
  private readonly scheme: 'mqtt' | 'mqtts';

  private constructor(aedes: Aedes, server: Server, scheme: 'mqtt' | 'mqtts') {
    this.aedes = aedes;
    this.server = server;
    this.scheme = scheme;
  }

  static async start(opts: { tls?: { certFile: string; keyFile: string } } = {}): Promise<TestBroker> {
    // the hooks need the broker object, made once aedes exists
    const ref: { broker?: TestBroker } = {};
    const aedes = await Aedes.createBroker({
      authenticate: (client: Client, username: string | undefined, password: Buffer | undefined, done) => {
        const b = ref.broker as TestBroker;
        b.logins += 1;
        const expected = username === undefined ? undefined : b.credentials.get(username);
        if (b.refuseAll || expected === undefined || password?.toString('utf8') !== expected || client.id !== username) {
          b.refusals += 1;
          const err = new Error('not authorized') as AuthenticateError;
          err.returnCode = 5;
          done(err, false);
          return;
        }
        done(null, true);
      },
      authorizePublish: (client, packet, done) => {
        if (client && !packet.topic.startsWith(`devices/${client.id}/`)) {
          done(new Error('not your topic'));
          return;
        }
        done(null);
      },
      authorizeSubscribe: (client, sub, done) => {
        if (!sub.topic.startsWith(`devices/${client.id}/`)) {
          done(new Error('not your topic'));
          return;
        }
        done(null, sub);
      },
    });
    const handle = (socket: Socket): void => {
      aedes.handle(socket);
    };
    const server = opts.tls
      ? createTlsServer({ cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) }, handle)
      : createTcpServer(handle);
    const b = new TestBroker(aedes, server, opts.tls ? 'mqtts' : 'mqtt');
    ref.broker = b;
    server.on(opts.tls ? 'secureConnection' : 'connection', (s: Socket) => {
      b.sockets.add(s);
      s.once('close', () => b.sockets.delete(s));
    });
    aedes.on('publish', (packet, client) => {
      if (!packet.topic.startsWith('devices/')) return;
      b.messages.push({
        topic: packet.topic,
        payload: Buffer.from(packet.payload).toString('utf8'),
        retain: packet.retain,
        qos: packet.qos,
        clientId: client?.id ?? null,
        at: Date.now(),
      });
    });
    aedes.on('clientReady', (c) => b.online.add(c.id));
    aedes.on('clientDisconnect', (c) => b.online.delete(c.id));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    b.port = (server.address() as AddressInfo).port;
    return b;
  }

  get url(): string {
    return `${this.scheme}://127.0.0.1:${this.port}`;
  }

  /** What devices published on a topic, in order. */
  on(topic: string): BrokerMessage[] {
    return this.messages.filter((m) => m.topic === topic);
  }

  /** The retained message of a topic, as a new subscriber would get it. */
  retained(topic: string): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      // aedes keeps retained messages in its persistence (the in-memory default here)
      const { persistence } = this.aedes as unknown as { persistence: { createRetainedStream(pattern: string): NodeJS.ReadableStream } };
      const stream = persistence.createRetainedStream(topic);
      let found: string | undefined;
      stream.on('data', (p: { payload: Buffer }) => {
        found = Buffer.from(p.payload).toString('utf8');
      });
      stream.on('end', () => resolve(found));
      stream.on('error', reject);
    });
  }

  /** A command to a device, QoS 1 (kept in its persistent session while it is offline). */
  sendCommand(serial: string, command: DeviceCommand | Record<string, unknown> | string): Promise<void> {
    const payload = Buffer.from(typeof command === 'string' ? command : JSON.stringify(command));
    return new Promise((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic: commandsTopic(serial), payload, qos: 1, retain: false, dup: false }, (err) => (err ? reject(err) : resolve()));
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
  }
}
