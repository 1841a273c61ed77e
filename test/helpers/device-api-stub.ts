import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { PresignRequest } from '../../shared/contracts/uploads.js';

/**
 * A small real HTTP server speaking the device side of the API (claim,
 * presign, PUT to a presigned URL, complete), for agent tests that must not
 * wait for the real cloud. Each step answers by default like the cloud does;
 * tests queue canned answers in front, or refuse a step until told otherwise.
 */
export type Step = 'claim' | 'presign' | 'put' | 'complete';

export type Canned =
  | { status: number; code?: string; headers?: Record<string, string> }
  /** read the request, then never answer */
  | 'hang'
  /** cut the connection without an answer */
  | 'reset';

export interface RecordedRequest {
  step: Step;
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body?: unknown;
  clipId?: string;
}

export class DeviceApiStub {
  readonly requests: RecordedRequest[] = [];
  /** bytes stored by PUT, by clip id */
  readonly objects = new Map<string, Buffer>();
  readonly completed = new Set<string>();
  bindCode = 'ABCDEFGHJK';
  readonly deviceToken = randomBytes(16).toString('hex');
  /** answer every request of a step with this until cleared */
  readonly refuse: Partial<Record<Step, Canned>> = {};
  private readonly canned: Record<Step, Canned[]> = { claim: [], presign: [], put: [], complete: [] };
  private readonly signed = new Map<string, { size: number; md5: string }>();
  private readonly sockets = new Set<Socket>();
  private server: Server;
  port = 0;

  private constructor() {
    this.server = this.makeServer();
  }

  static async start(port = 0): Promise<DeviceApiStub> {
    const s = new DeviceApiStub();
    await s.listen(port);
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  count(step: Step): number {
    return this.requests.filter((r) => r.step === step).length;
  }

  /** Queue answers for the next requests of a step. */
  queue(step: Step, ...answers: Canned[]): void {
    this.canned[step].push(...answers);
  }

  /** Stops listening and cuts every connection (the network goes away). */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Listens again on the same port (the network comes back). */
  async reopen(): Promise<void> {
    this.server = this.makeServer();
    await this.listen(this.port);
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private makeServer(): Server {
    const server = createServer((req, res) => {
      void this.handle(req, res).catch(() => {
        if (!res.headersSent) this.send(res, 500, 'INTERNAL');
      });
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    return server;
  }

  private send(res: ServerResponse, status: number, code?: string, body?: unknown, headers: Record<string, string> = {}): void {
    const payload = code ? { error: { code, message: code } } : body;
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(payload === undefined ? '' : JSON.stringify(payload));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    let step: Step;
    let clipId: string | undefined;
    if (req.method === 'POST' && url.pathname === '/v1/device/claim') step = 'claim';
    else if (req.method === 'POST' && url.pathname === '/v1/device/uploads') step = 'presign';
    else if (req.method === 'PUT' && url.pathname.startsWith('/objects/')) {
      step = 'put';
      clipId = url.pathname.slice('/objects/'.length);
    } else if (req.method === 'POST' && /^\/v1\/device\/uploads\/[^/]+\/complete$/.test(url.pathname)) {
      step = 'complete';
      clipId = url.pathname.split('/')[4];
    } else {
      this.send(res, 404, 'ROUTE_NOT_FOUND');
      return;
    }
    let body: unknown;
    if (step !== 'put' && raw.length > 0) body = JSON.parse(raw.toString('utf8'));
    if (step === 'presign') clipId = (body as { clipId?: string } | undefined)?.clipId;
    this.requests.push({ step, method: req.method ?? '', path: url.pathname, headers: req.headers, body, clipId });

    const canned = this.canned[step].shift() ?? this.refuse[step];
    if (canned === 'hang') return;
    if (canned === 'reset') {
      req.socket.destroy();
      return;
    }
    if (canned) {
      this.send(res, canned.status, canned.code, canned.code ? undefined : {}, canned.headers);
      return;
    }

    if (step !== 'claim' && step !== 'put') {
      const auth = req.headers.authorization ?? '';
      if (!/^Device [A-Z0-9]{8,32}:/.test(auth) || !auth.endsWith(`:${this.deviceToken}`)) {
        this.send(res, 401, 'DEVICE_UNAUTHENTICATED');
        return;
      }
    }
    switch (step) {
      case 'claim': {
        const b = body as { serial: string; bindCode: string };
        if (b.bindCode !== this.bindCode) {
          this.send(res, 400, 'BIND_CODE_INVALID');
          return;
        }
        this.send(res, 200, undefined, { serial: b.serial, deviceToken: this.deviceToken, mqtt: { username: b.serial, password: 'mqtt-secret' } });
        return;
      }
      case 'presign': {
        const p = PresignRequest.safeParse(body);
        if (!p.success) {
          this.send(res, 400, 'VALIDATION_FAILED');
          return;
        }
        if (this.completed.has(p.data.clipId)) {
          this.send(res, 409, 'CLIP_ALREADY_UPLOADED');
          return;
        }
        this.signed.set(p.data.clipId, { size: p.data.size, md5: p.data.md5 });
        this.send(res, 200, undefined, {
          clipId: p.data.clipId,
          method: 'PUT',
          url: `${this.url}/objects/${p.data.clipId}?signature=${randomBytes(8).toString('hex')}`,
          headers: { 'Content-Length': String(p.data.size), 'Content-MD5': p.data.md5, 'Content-Type': 'video/mp4' },
          expiresAt: new Date(Date.now() + 900_000).toISOString(),
        });
        return;
      }
      case 'put': {
        const signed = this.signed.get(clipId ?? '');
        if (!signed) {
          this.send(res, 403, 'URL_SIGNATURE_INVALID');
          return;
        }
        if (raw.length !== signed.size) {
          this.send(res, 400, 'CONTENT_LENGTH_MISMATCH');
          return;
        }
        if (createHash('md5').update(raw).digest('base64') !== signed.md5) {
          this.send(res, 400, 'CONTENT_MD5_MISMATCH');
          return;
        }
        this.objects.set(clipId as string, raw);
        res.writeHead(200);
        res.end();
        return;
      }
      case 'complete': {
        const obj = this.objects.get(clipId ?? '');
        if (!obj) {
          this.send(res, 409, 'UPLOAD_OBJECT_MISSING');
          return;
        }
        this.completed.add(clipId as string);
        const now = new Date().toISOString();
        this.send(res, 200, undefined, {
          clip: {
            id: clipId,
            serial: 'SIM00000001',
            kind: 'continuous',
            start: now,
            durationMs: 1000,
            size: obj.length,
            sha256: createHash('sha256').update(obj).digest('hex'),
            uploadedAt: now,
            expiresAt: now,
          },
        });
        return;
      }
    }
  }
}
