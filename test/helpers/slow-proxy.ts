/**
 * A slow link between a device and the cloud: an HTTP reverse proxy on
 * 127.0.0.1 port 0 that adds latency to every request and caps the bandwidth
 * of request bodies (the device's uplink), shared by every request in flight.
 *
 * Power-cut tests need it: on loopback a 50 KB clip uploads in a millisecond,
 * so a kill at a random moment would almost never land mid-upload. Through
 * this proxy a clip's presign, PUT and complete each take a while, and the
 * proxy knows which of them are in flight at any instant, so a test can aim a
 * kill at one and report what it actually hit.
 *
 * Like a real network, a request whose body reached the proxy in full is
 * delivered to the cloud even if the device dies while waiting for the answer
 * (the cloud acts on it; the device never hears back). A body cut short is
 * cut short upstream too.
 *
 * The cloud must sign URLs for the proxy (publicUrl), so presigned PUTs go
 * through it as well; on S3, the cloud's S3 endpoint is the proxy, and
 * `route` sends the bucket's paths to the store.
 */
import { EventEmitter } from 'node:events';
import { createServer, request, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';

export type RequestKind = 'claim' | 'presign' | 'put' | 'complete' | 'other';

export interface InFlightRequest {
  id: number;
  kind: RequestKind;
  method: string;
  /** without the query: a presigned URL's query is a credential */
  path: string;
  startedAt: number;
  /** request body bytes passed upstream so far */
  bytesUp: number;
}

export interface SlowProxyOptions {
  /** the cloud's own address; settable later (the cloud needs the proxy's URL first) */
  target?: string;
  /** added to each request: half before it goes upstream, half before the answer comes back */
  latencyMs: number;
  /** request bodies, all requests together */
  bytesPerSecond: number;
}

export interface SlowProxy extends EventEmitter {
  readonly url: string;
  target: string | undefined;
  /**
   * where a request goes instead of target, by its path (undefined: target).
   * On S3 the device's PUTs go to the store, not the cloud: with the cloud's
   * S3 endpoint set to this proxy, S3 paths route to the real store and the
   * signatures, which cover the host, still match.
   */
  route: ((path: string) => string | undefined) | undefined;
  /** requests whose answer the device has not had yet */
  inflight(): InFlightRequest[];
  /** requests seen, by kind */
  readonly counts: Record<RequestKind, number>;
  close(): Promise<void>;
}

/** What a device request is, from its method and path. */
export function requestKind(method: string, path: string): RequestKind {
  if (method === 'POST' && path === '/v1/device/claim') return 'claim';
  if (method === 'POST' && path === '/v1/device/uploads') return 'presign';
  if (method === 'POST' && /^\/v1\/device\/uploads\/[^/]+\/complete$/.test(path)) return 'complete';
  if (method === 'PUT') return 'put';
  return 'other';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One uplink: each slice of a body waits for its turn at `bytesPerSecond`. */
class Uplink {
  private nextFreeAt = 0;
  constructor(private readonly bytesPerSecond: number) {}

  /** resolves when `bytes` have had their time on the link */
  async take(bytes: number): Promise<void> {
    const now = performance.now();
    const start = Math.max(now, this.nextFreeAt);
    this.nextFreeAt = start + (bytes / this.bytesPerSecond) * 1000;
    await sleep(this.nextFreeAt - now);
  }
}

/** 16 KiB slices: fine enough that two uploads share the link by turns */
const SLICE = 16 * 1024;

class Throttle extends Transform {
  constructor(
    private readonly link: Uplink,
    private readonly onBytes: (n: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    void (async () => {
      for (let at = 0; at < chunk.length; at += SLICE) {
        const slice = chunk.subarray(at, at + SLICE);
        await this.link.take(slice.length);
        this.push(slice);
        this.onBytes(slice.length);
      }
    })().then(() => done(), done);
  }
}

export async function startSlowProxy(opts: SlowProxyOptions): Promise<SlowProxy> {
  const link = new Uplink(opts.bytesPerSecond);
  const half = Math.max(0, opts.latencyMs / 2);
  const live = new Map<number, InFlightRequest>();
  const sockets = new Set<Socket>();
  const upstreamRequests = new Set<ReturnType<typeof request>>();
  let nextId = 1;
  const emitter = new EventEmitter();
  const counts: Record<RequestKind, number> = { claim: 0, presign: 0, put: 0, complete: 0, other: 0 };

  const server: Server = createServer((req: IncomingMessage, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    const kind = requestKind(req.method ?? 'GET', path);
    const entry: InFlightRequest = { id: nextId++, kind, method: req.method ?? 'GET', path, startedAt: Date.now(), bytesUp: 0 };
    counts[kind] += 1;
    live.set(entry.id, entry);
    emitter.emit('start', entry);
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      live.delete(entry.id);
      emitter.emit('end', entry);
    };
    // the device went away: its answer will never be read
    res.on('close', finish);

    void (async () => {
      await sleep(half);
      const target = proxy.route?.(path) ?? proxy.target;
      if (!target) {
        res.writeHead(502).end('no target');
        return;
      }
      const headers: OutgoingHttpHeaders = { ...req.headers };
      const up = request(new URL(req.url ?? '/', target), { method: req.method, headers });
      upstreamRequests.add(up);
      up.on('close', () => upstreamRequests.delete(up));
      up.on('error', () => {
        if (!res.headersSent && !res.destroyed) res.writeHead(502).end();
        else res.destroy();
      });
      up.on('response', (upRes) => {
        void (async () => {
          await sleep(half);
          if (res.destroyed) {
            upRes.resume();
            return;
          }
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        })();
      });
      // a body cut short by the device is cut short upstream too; one that
      // arrived in full goes on, as it would over a real network
      req.on('aborted', () => up.destroy());
      req.on('close', () => {
        if (!req.complete) up.destroy();
      });
      req.pipe(new Throttle(link, (n) => (entry.bytesUp += n))).pipe(up);
    })();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  const proxy = Object.assign(emitter, {
    url: `http://127.0.0.1:${port}`,
    target: opts.target,
    route: undefined,
    counts,
    inflight: () => [...live.values()].map((e) => ({ ...e })),
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const u of upstreamRequests) u.destroy();
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      })),
  }) as SlowProxy;
  return proxy;
}
