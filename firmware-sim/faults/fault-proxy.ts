/**
 * The network faults: an HTTP proxy between an agent and the cloud, on
 * 127.0.0.1, that the simulator (or a test) switches between
 *
 *   - forward:   passes every request through;
 *   - refuse:    accepts each connection and resets it at once, as a host
 *                whose route is gone answers (the agent sees ECONNRESET);
 *   - blackhole: accepts connections and never answers, as a dead link does
 *                (the agent's own timeouts must end its requests);
 *   - http5xx:   answers every request 500/502/503/504 with a body in the
 *                catalogue's shape, as a load balancer in front of a cloud
 *                that is down or deploying does;
 *   - slow:      forwards with latency added, half before a request goes up
 *                and half before its answer comes back. A request that went
 *                up is acted on by the cloud even if the agent gives up
 *                waiting for the answer, as over a real network.
 *
 * Switching to refuse, blackhole or http5xx cuts every connection open at
 * that moment (an outage kills established flows, keep-alive ones included),
 * and leaving blackhole cuts the connections parked in it, as a router's
 * restart would. Leaving slow lets slow requests finish.
 *
 * Clip uploads cross the proxy too: upload URLs in presign answers that point
 * at the cloud itself (the `local` object store; `uploadOrigins`) are
 * rewritten to the proxy, which forwards them unchanged. That store's
 * signatures do not cover the host; URLs of another host (S3) are left alone
 * and go there directly. Plain http only: an https cloud cannot be proxied
 * without terminating its TLS.
 *
 * Events: 'request' (ProxiedRequest, when it is answered or cut), 'mode'
 * ({ mode, options }).
 */
import { EventEmitter } from 'node:events';
import { Agent as HttpAgent, createServer as createHttpServer, request as httpRequest, type ClientRequest, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';

export type NetworkMode = 'forward' | 'refuse' | 'blackhole' | 'http5xx' | 'slow';
export const NETWORK_MODES: readonly NetworkMode[] = ['forward', 'refuse', 'blackhole', 'http5xx', 'slow'];

export type FaultStatus = 500 | 502 | 503 | 504;
export const FAULT_STATUSES: readonly FaultStatus[] = [500, 502, 503, 504];

export interface ModeOptions {
  /** http5xx: the status answered (default 503) */
  status?: FaultStatus;
  /** http5xx: a Retry-After header, in seconds (none by default) */
  retryAfterSec?: number;
  /** slow: latency added to each request, half each way (default 2000) */
  latencyMs?: number;
}

export type RequestKind = 'claim' | 'presign' | 'put' | 'complete' | 'config' | 'other';

export interface ProxiedRequest {
  id: number;
  kind: RequestKind;
  method: string;
  /** without the query: a presigned URL's query is a credential */
  path: string;
  /** the mode when the request arrived */
  mode: NetworkMode;
  /** what the agent was answered, or null when the request was cut before an answer */
  status: number | null;
  startedAt: number;
  ms: number;
}

export interface FaultProxyOptions {
  /** the cloud's base URL, http:// only; settable later (a test cloud needs the proxy's URL first) */
  target?: string;
  /** 0 (the default): a free port */
  port?: number;
  /**
   * Upload URLs on these origins are rewritten to go through the proxy.
   * Default: the target's origin. [] turns the rewriting off.
   */
  uploadOrigins?: string[];
}

/** What a device request is, from its method and path. */
export function requestKind(method: string, path: string): RequestKind {
  if (method === 'PUT') return 'put';
  if (method === 'POST' && path === '/v1/device/claim') return 'claim';
  if (method === 'POST' && path === '/v1/device/uploads') return 'presign';
  if (method === 'POST' && /^\/v1\/device\/uploads\/[^/]+\/complete$/.test(path)) return 'complete';
  if (method === 'GET' && path === '/v1/device/config') return 'config';
  return 'other';
}

/** The body of an injected 5xx, in the shape of the API's errors (shared/errors.ts). */
export function faultBody(status: FaultStatus): string {
  // 503 is what a cloud node that is going away answers (SHUTTING_DOWN); the rest are a gateway's
  const code = status === 503 ? 'SHUTTING_DOWN' : 'INTERNAL';
  return JSON.stringify({ error: { code, message: `the cloud is unavailable (HTTP ${status}; a fault injected by firmware-sim)` } });
}

/**
 * Replaces the origin of every string in a JSON value that starts with one of
 * `from` (followed by a path) with `to`. Pure.
 */
export function rewriteOrigins(value: unknown, from: readonly string[], to: string): unknown {
  if (typeof value === 'string') {
    for (const origin of from) if (value.startsWith(`${origin}/`)) return to + value.slice(origin.length);
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => rewriteOrigins(v, from, to));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rewriteOrigins(v, from, to)]));
  }
  return value;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class FaultProxy extends EventEmitter {
  /** the cloud's base URL */
  target: string | undefined;
  /** connections accepted, and what became of them */
  readonly counts = {
    connections: 0,
    refused: 0,
    blackholed: 0,
    answered5xx: 0,
    requests: { claim: 0, presign: 0, put: 0, complete: 0, config: 0, other: 0 } as Record<RequestKind, number>,
  };
  private modeNow: NetworkMode = 'forward';
  private modeOptions: ModeOptions = {};
  private readonly front: NetServer;
  private readonly http: HttpServer;
  private readonly upstreamAgent = new HttpAgent({ keepAlive: true });
  private readonly sockets = new Set<Socket>();
  private readonly parked = new Set<Socket>();
  private readonly upstream = new Set<ClientRequest>();
  private readonly live = new Map<number, ProxiedRequest>();
  private readonly uploadOriginsOption: string[] | undefined;
  private nextId = 1;
  private port = 0;
  private closing: Promise<void> | undefined;

  private constructor(opts: FaultProxyOptions) {
    super();
    this.target = opts.target?.replace(/\/+$/, '');
    this.uploadOriginsOption = opts.uploadOrigins;
    this.http = createHttpServer((req, res) => this.onRequest(req, res));
    this.http.keepAliveTimeout = 5000;
    this.front = createNetServer((socket) => this.accept(socket));
  }

  static async start(opts: FaultProxyOptions = {}): Promise<FaultProxy> {
    if (opts.target !== undefined && new URL(opts.target).protocol !== 'http:') {
      throw new Error('the fault proxy forwards plain http:// only (an https cloud cannot be proxied without its TLS key)');
    }
    const p = new FaultProxy(opts);
    await new Promise<void>((resolve, reject) => {
      p.front.once('error', reject);
      p.front.listen(opts.port ?? 0, '127.0.0.1', () => {
        p.front.off('error', reject);
        resolve();
      });
    });
    p.port = (p.front.address() as AddressInfo).port;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get mode(): NetworkMode {
    return this.modeNow;
  }

  get options(): ModeOptions {
    return { ...this.modeOptions };
  }

  /** Requests that have not been answered yet. */
  inflight(): ProxiedRequest[] {
    return [...this.live.values()].map((r) => ({ ...r }));
  }

  /** Switches the network; see the module comment for what each switch cuts. */
  setMode(mode: NetworkMode, options: ModeOptions = {}): void {
    if (!NETWORK_MODES.includes(mode)) throw new Error(`unknown network mode ${JSON.stringify(mode)}`);
    if (options.status !== undefined && !FAULT_STATUSES.includes(options.status)) throw new Error(`a fault status is one of ${FAULT_STATUSES.join(', ')}`);
    const before = this.modeNow;
    this.modeNow = mode;
    this.modeOptions = { ...options };
    if (mode !== before && (mode === 'refuse' || mode === 'blackhole' || mode === 'http5xx')) this.cutAll();
    else if (before === 'blackhole' && mode !== before) this.cutParked();
    this.emit('mode', { mode, options: this.options });
  }

  /** Idempotent: closes the port and cuts everything. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.front.close(() => resolve()));
      this.cutAll();
      this.upstreamAgent.destroy();
      this.http.close();
      await closed;
    })();
    return this.closing;
  }

  private cutAll(): void {
    for (const u of this.upstream) u.destroy();
    this.upstream.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.parked.clear();
  }

  private cutParked(): void {
    for (const s of this.parked) {
      s.destroy();
      this.sockets.delete(s);
    }
    this.parked.clear();
  }

  private accept(socket: Socket): void {
    this.counts.connections += 1;
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.parked.delete(socket);
    });
    socket.on('error', () => socket.destroy());
    if (this.modeNow === 'refuse') {
      this.counts.refused += 1;
      socket.resetAndDestroy();
      return;
    }
    if (this.modeNow === 'blackhole') {
      this.counts.blackholed += 1;
      this.parked.add(socket);
      // read and drop whatever comes, answer nothing
      socket.resume();
      return;
    }
    this.http.emit('connection', socket);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] as string;
    const kind = requestKind(method, path);
    this.counts.requests[kind] += 1;
    const entry: ProxiedRequest = { id: this.nextId++, kind, method, path, mode: this.modeNow, status: null, startedAt: Date.now(), ms: 0 };
    this.live.set(entry.id, entry);
    let finished = false;
    const finish = (status: number | null): void => {
      if (finished) return;
      finished = true;
      this.live.delete(entry.id);
      this.emit('request', { ...entry, status, ms: Date.now() - entry.startedAt } satisfies ProxiedRequest);
    };
    res.once('finish', () => finish(res.statusCode));
    res.once('close', () => finish(res.writableFinished ? res.statusCode : null));

    if (this.modeNow === 'http5xx') {
      this.answer5xx(req, res, this.modeOptions.status ?? 503, this.modeOptions.retryAfterSec);
      return;
    }
    const latencyMs = this.modeNow === 'slow' ? Math.max(0, this.modeOptions.latencyMs ?? 2000) : 0;
    void this.forward(req, res, kind, latencyMs);
  }

  private answer5xx(req: IncomingMessage, res: ServerResponse, status: FaultStatus, retryAfterSec: number | undefined): void {
    this.counts.answered5xx += 1;
    const body = faultBody(status);
    // the body the agent may still be sending is read and dropped, so it gets the answer rather than a reset
    req.resume();
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
      ...(retryAfterSec !== undefined ? { 'retry-after': String(retryAfterSec) } : {}),
    });
    res.end(body);
  }

  private gatewayError(res: ServerResponse, why: string): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ error: { code: 'INTERNAL', message: `the fault proxy cannot reach the cloud: ${why}` } });
    res.writeHead(502, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  }

  private async forward(req: IncomingMessage, res: ServerResponse, kind: RequestKind, latencyMs: number): Promise<void> {
    const half = latencyMs / 2;
    if (half > 0) await sleep(half);
    if (res.destroyed) return;
    const target = this.target;
    if (!target) {
      req.resume();
      this.gatewayError(res, 'no target set');
      return;
    }
    const up = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers, agent: this.upstreamAgent });
    this.upstream.add(up);
    up.once('close', () => this.upstream.delete(up));
    up.on('error', (err) => this.gatewayError(res, (err as NodeJS.ErrnoException).code ?? 'error'));
    up.on('response', (upRes) => void this.relayAnswer(upRes, res, kind, half));
    // a body the agent cut short is cut short upstream too; one that arrived
    // in full goes on, as it would over a real network
    req.on('close', () => {
      if (!req.complete) up.destroy();
    });
    res.on('close', () => {
      if (!res.writableFinished && !req.complete) up.destroy();
    });
    req.pipe(up);
  }

  private async relayAnswer(upRes: IncomingMessage, res: ServerResponse, kind: RequestKind, half: number): Promise<void> {
    const status = upRes.statusCode ?? 502;
    const origins = this.uploadOriginsOption ?? (this.target ? [new URL(this.target).origin] : []);
    if (kind === 'presign' && status >= 200 && status < 300 && origins.length > 0) {
      // a presign answer is small: read it whole and point its upload URLs here
      const chunks: Buffer[] = [];
      try {
        for await (const c of upRes) chunks.push(c as Buffer);
      } catch {
        res.destroy();
        return;
      }
      let body = Buffer.concat(chunks);
      try {
        body = Buffer.from(JSON.stringify(rewriteOrigins(JSON.parse(body.toString('utf8')), origins, this.url)));
      } catch {
        // not JSON: passed on as it came
      }
      if (half > 0) await sleep(half);
      if (res.destroyed) return;
      const headers = { ...upRes.headers, 'content-length': String(body.length) };
      delete headers['transfer-encoding'];
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    if (half > 0) await sleep(half);
    if (res.destroyed) {
      upRes.resume();
      return;
    }
    res.writeHead(status, upRes.headers);
    upRes.pipe(res);
  }
}
