/**
 * A network between a device and the cloud that a test can break: a TCP
 * proxy on 127.0.0.1 port 0 that forwards, refuses (accepts and closes at
 * once, as a reset does) or blackholes (accepts and never answers, as a dead
 * route does). It counts the connections that reach it, so a test can bound
 * how hard the device knocks while the cloud is unreachable.
 *
 * One connection per request attempt during an outage: the device's pooled
 * connections are cut when the outage starts (as a real outage kills them),
 * and each new request needs a new connection.
 *
 * The cloud must sign URLs for the proxy (publicUrl), so presigned PUTs go
 * through it too.
 *
 * A tap, if given, sees every byte of each forwarded connection in both
 * directions as it passes (the recording proxy of the privacy proofs is this
 * proxy with a tap), so the socket piping exists once.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export type NetworkMode = 'forward' | 'refuse' | 'blackhole';

/** What one forwarded connection carries, chunk by chunk, as it passes. */
export interface ByteTap {
  /** client → upstream */
  sent(chunk: Buffer): void;
  /** upstream → client */
  received(chunk: Buffer): void;
}

export class TcpProxy {
  /** where forwarded connections go; settable later (the cloud needs the proxy's URL first) */
  target: { host: string; port: number } | undefined;
  /** connections accepted since start, in any mode */
  connections = 0;
  private modeNow: NetworkMode = 'forward';
  private readonly server: Server;
  private readonly open = new Set<Socket>();
  private port = 0;

  /** `tap` is called once per forwarded connection, for the tap that sees its bytes */
  private constructor(private readonly tap?: () => ByteTap) {
    this.server = createServer((client) => this.accept(client));
  }

  static async start(target?: { host: string; port: number }, tap?: () => ByteTap): Promise<TcpProxy> {
    const p = new TcpProxy(tap);
    p.target = target;
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(0, '127.0.0.1', () => resolve());
    });
    p.port = (p.server.address() as AddressInfo).port;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** where it listens, for URLs of other schemes (mqtt://…) */
  get address(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.port };
  }

  get mode(): NetworkMode {
    return this.modeNow;
  }

  /**
   * Switches the network. Every connection open at the switch is cut: an
   * outage kills established flows, and when the network comes back the
   * connections parked in the blackhole are gone too (reset), as after a
   * router's restart.
   */
  setMode(mode: NetworkMode): void {
    if (mode === this.modeNow) return;
    this.modeNow = mode;
    for (const s of this.open) s.destroy();
    this.open.clear();
  }

  async close(): Promise<void> {
    for (const s of this.open) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track(s: Socket): void {
    this.open.add(s);
    s.once('close', () => this.open.delete(s));
    s.on('error', () => s.destroy());
  }

  private accept(client: Socket): void {
    this.connections += 1;
    this.track(client);
    if (this.modeNow === 'refuse' || !this.target) {
      client.resetAndDestroy();
      return;
    }
    if (this.modeNow === 'blackhole') {
      // read and drop whatever comes, answer nothing
      client.resume();
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    this.track(upstream);
    const cut = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.once('close', cut);
    upstream.once('close', cut);
    const tap = this.tap?.();
    if (tap) {
      client.on('data', (b: Buffer) => tap.sent(b));
      upstream.on('data', (b: Buffer) => tap.received(b));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
