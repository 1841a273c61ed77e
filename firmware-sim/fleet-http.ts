/**
 * The fleet's HTTP: one keep-alive pool per scheme for every device of the
 * process, each request timed and its failure named by a code.
 *
 * maxSockets is the number of devices by default: a real camera has its own
 * connection, so a request never waits for another device's socket, and the
 * time measured is the cloud's (plus the loopback), not a queue in this
 * process. The pool only grows as far as requests overlap (about rate ×
 * latency; a few dozen at 100 uploads/s), and keeps at most maxFreeSockets
 * idle ones, reusing the most recent first (lifo) so the rest can time out.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { NETWORK, TIMEOUT } from './fleet-stats.js';

export type HttpOutcome =
  | { ok: true; status: number; body: unknown; headers: IncomingMessage['headers']; ms: number }
  | { ok: false; code: string; status?: number; ms: number };

export interface FleetHttpOptions {
  maxSockets: number;
  maxFreeSockets?: number;
  timeoutMs: number;
}

/** The failure code of an answer: the catalogue code of a JSON error, the S3 <Code> of an XML one, else HTTP_<status>. */
export function errorCodeOf(status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown } };
    if (typeof body?.error?.code === 'string' && /^[A-Z0-9_]{1,64}$/.test(body.error.code)) return body.error.code;
  } catch {
    // not JSON
  }
  const s3 = /<Code>([A-Za-z0-9_.-]{1,64})<\/Code>/.exec(text);
  if (s3) return s3[1] as string;
  return `HTTP_${status}`;
}

export class FleetHttp {
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;

  constructor(private readonly opts: FleetHttpOptions) {
    const agentOpts = { keepAlive: true, maxSockets: opts.maxSockets, maxFreeSockets: opts.maxFreeSockets ?? 256, scheduling: 'lifo' as const };
    this.http = new HttpAgent(agentOpts);
    this.https = new HttpsAgent(agentOpts);
  }

  /** One request; never rejects. The time runs from the call to the last byte of the answer. */
  request(method: string, url: string, headers: OutgoingHttpHeaders, body?: Buffer | string): Promise<HttpOutcome> {
    const t0 = performance.now();
    const ms = (): number => performance.now() - t0;
    return new Promise((resolve) => {
      let settled = false;
      const settle = (o: HttpOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(o);
      };
      let target: URL;
      try {
        target = new URL(url);
      } catch {
        settle({ ok: false, code: 'URL_INVALID', ms: ms() });
        return;
      }
      const secure = target.protocol === 'https:';
      const req = (secure ? httpsRequest : httpRequest)(target, { method, headers, agent: secure ? this.https : this.http }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', () => settle({ ok: false, code: NETWORK, ms: ms() }));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          if (status >= 200 && status < 300) {
            let parsed: unknown = text;
            if (text && /json/.test(res.headers['content-type'] ?? '')) {
              try {
                parsed = JSON.parse(text);
              } catch {
                settle({ ok: false, code: 'RESPONSE_INVALID', status, ms: ms() });
                return;
              }
            }
            settle({ ok: true, status, body: parsed, headers: res.headers, ms: ms() });
          } else {
            settle({ ok: false, code: errorCodeOf(status, text), status, ms: ms() });
          }
        });
      });
      const timer = setTimeout(() => {
        settle({ ok: false, code: TIMEOUT, ms: ms() });
        req.destroy();
      }, this.opts.timeoutMs);
      req.on('error', () => settle({ ok: false, code: NETWORK, ms: ms() }));
      req.end(body);
    });
  }

  /** JSON in, JSON out */
  json(method: string, url: string, body: unknown, authorization?: string): Promise<HttpOutcome> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers: OutgoingHttpHeaders = {};
    if (text !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(text);
    }
    if (authorization) headers.authorization = authorization;
    return this.request(method, url, headers, text);
  }

  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
