/**
 * Delivers notifications to account webhooks: a signed POST, bounded
 * retries, bounded memory, and never in the way of alert intake (enqueue
 * returns at once; a full queue drops and counts).
 *
 * Signature (documented in README.md, "Notifications"): the body is the
 * Notification JSON; `X-Camvault-Timestamp` is Unix seconds; and
 * `X-Camvault-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
 * A receiver recomputes it, compares in constant time, and refuses a
 * timestamp far from its clock (a replay).
 *
 * Retry policy as data (STYLE.md, undici): network errors, timeouts, 408,
 * 425, 429 and 5xx are tried again, up to maxAttempts in all, each wait
 * four times the one before from minDelayMs, capped at maxDelayMs, and at
 * least a Retry-After (also capped). Other answers are final. Redirects are
 * not followed (a redirect to an internal address would bypass the address
 * check).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Notification } from '../../shared/contracts/alerts.js';
import type { Logger } from '../../shared/log.js';
import type { WebhookSettings } from '../config.js';
import { isSpecialAddress, webhookUrlProblem } from './webhook-url.js';

export const SIGNATURE_HEADER = 'x-camvault-signature';
export const TIMESTAMP_HEADER = 'x-camvault-timestamp';
export const ID_HEADER = 'x-camvault-notification-id';

const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

/** `v1=<hex>`: HMAC-SHA256 under the secret of "<timestamp>.<body>" */
export function webhookSignature(secret: string, timestampSec: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestampSec}.${body}`).digest('hex')}`;
}

/** What a receiver does (and the tests): true when the signature is the body's under this secret and the time is within toleranceSec. */
export function verifyWebhookSignature(
  secret: string,
  headers: { timestamp: string | undefined; signature: string | undefined },
  body: string,
  nowSec: number,
  toleranceSec = 300,
): boolean {
  const ts = Number(headers.timestamp);
  if (!Number.isInteger(ts) || Math.abs(nowSec - ts) > toleranceSec || !headers.signature) return false;
  const want = Buffer.from(webhookSignature(secret, ts, body));
  const got = Buffer.from(headers.signature);
  return want.length === got.length && timingSafeEqual(want, got);
}

export interface WebhookDelivery {
  accountId: string;
  url: string;
  secret: string;
  notification: Notification;
}

export interface WebhookStats {
  delivered: number;
  /** gave up: a final refusal, or every attempt failed */
  failed: number;
  /** the queue was full */
  dropped: number;
  retried: number;
  /** waiting, retrying or in flight */
  queued: number;
}

interface Job extends WebhookDelivery {
  attempt: number;
}

type Outcome = { ok: true } | { ok: false; retry: boolean; retryAfterSec?: number; why: string };

export interface WebhookSenderOptions {
  settings: WebhookSettings;
  logger: Logger;
  now?: () => number;
}

export class WebhookSender {
  private readonly waiting: Job[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private inFlight = 0;
  private retryWaiting = 0;
  private closed = false;
  private readonly counts = { delivered: 0, failed: 0, dropped: 0, retried: 0 };
  private readonly settings: WebhookSettings;
  private readonly now: () => number;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: WebhookSenderOptions) {
    this.settings = opts.settings;
    this.now = opts.now ?? Date.now;
  }

  /** false when it was dropped (queue full, or closed) */
  enqueue(d: WebhookDelivery): boolean {
    if (this.closed || this.size >= this.settings.maxQueued) {
      this.counts.dropped++;
      this.opts.logger.warn({ accountId: d.accountId, notificationId: d.notification.id }, 'webhook queue full: delivery dropped');
      return false;
    }
    this.waiting.push({ ...d, attempt: 0 });
    this.pump();
    return true;
  }

  private get size(): number {
    return this.waiting.length + this.inFlight + this.retryWaiting;
  }

  stats(): WebhookStats {
    return { ...this.counts, queued: this.size };
  }

  /** resolves when nothing is waiting, retrying or in flight (tests) */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (!this.closed && this.inFlight < this.settings.concurrency && this.waiting.length > 0) {
      const job = this.waiting.shift() as Job;
      this.inFlight++;
      void this.attempt(job).finally(() => {
        this.inFlight--;
        this.pump();
        this.checkIdle();
      });
    }
  }

  private checkIdle(): void {
    if (this.size !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async attempt(job: Job): Promise<void> {
    job.attempt++;
    const log = this.opts.logger.child({ accountId: job.accountId, notificationId: job.notification.id, attempt: job.attempt });
    const outcome = await this.post(job);
    if (outcome.ok) {
      this.counts.delivered++;
      log.debug({ host: hostOf(job.url) }, 'webhook delivered');
      return;
    }
    if (!outcome.retry || job.attempt >= this.settings.maxAttempts || this.closed) {
      this.counts.failed++;
      // the host only: a webhook URL may carry a token in its path
      log.warn({ host: hostOf(job.url), why: outcome.why }, 'webhook not delivered');
      return;
    }
    this.counts.retried++;
    const backoff = Math.min(this.settings.maxDelayMs, this.settings.minDelayMs * 4 ** (job.attempt - 1));
    const asked = outcome.retryAfterSec !== undefined ? Math.min(this.settings.maxDelayMs, outcome.retryAfterSec * 1000) : 0;
    const delay = Math.max(backoff, asked);
    log.debug({ host: hostOf(job.url), why: outcome.why, delayMs: delay }, 'webhook failed; will retry');
    this.retryWaiting++;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.retryWaiting--;
      if (this.closed) {
        this.counts.failed++;
        this.checkIdle();
        return;
      }
      this.waiting.push(job);
      this.pump();
    }, delay);
    this.timers.add(timer);
  }

  /** One POST. Never throws: every failure is an outcome. */
  private post(job: Job): Promise<Outcome> {
    const problem = webhookUrlProblem(job.url, this.settings.allowInsecure);
    if (problem) return Promise.resolve({ ok: false, retry: false, why: `URL refused: ${problem}` });
    const url = new URL(job.url);
    const body = JSON.stringify(job.notification);
    const ts = Math.floor(this.now() / 1000);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const settle = (o: Outcome): void => {
        if (settled) return;
        settled = true;
        resolve(o);
      };
      const req = request(
        url,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'user-agent': 'camvault-webhook/1',
            [ID_HEADER]: job.notification.id,
            [TIMESTAMP_HEADER]: String(ts),
            [SIGNATURE_HEADER]: webhookSignature(job.secret, ts, body),
          },
          timeout: this.settings.timeoutMs,
          lookup: this.settings.allowInsecure ? undefined : publicOnlyLookup,
          // no pooled socket: each delivery resolves (and checks) the name again
          agent: false,
        },
        (res: IncomingMessage) => {
          res.resume(); // the answer's body is not read
          res.on('error', () => undefined);
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return settle({ ok: true });
          const retryAfter = Number(res.headers['retry-after']);
          settle({
            ok: false,
            retry: RETRYABLE.has(status),
            retryAfterSec: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined,
            why: `HTTP ${status}`,
          });
        },
      );
      req.on('timeout', () => {
        req.destroy(new Error(`no answer within ${this.settings.timeoutMs} ms`));
      });
      req.on('error', (err: NodeJS.ErrnoException) => settle({ ok: false, retry: err.code !== 'WEBHOOK_ADDRESS_REFUSED', why: err.code ?? err.message }));
      req.end(body);
    });
  }

  /** stops retries (what waits is counted as failed); deliveries in flight finish or time out */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.counts.failed += this.retryWaiting + this.waiting.length;
    this.timers.clear();
    this.retryWaiting = 0;
    this.waiting.length = 0;
    this.checkIdle();
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(invalid)';
  }
}

/**
 * dns.lookup, refusing any answer that is a special address: a public name
 * that resolves to 127.0.0.1 or 169.254.169.254 (on purpose, or after a DNS
 * change) gets no request. A literal address in the URL skips lookup and is
 * checked by webhookUrlProblem instead.
 */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '', 0);
    const list = addresses as LookupAddress[];
    const refused = list.find((a) => isSpecialAddress(a.address));
    if (refused || list.length === 0) {
      const e = Object.assign(new Error('the webhook host resolves to a private or special address'), { code: 'WEBHOOK_ADDRESS_REFUSED' });
      return callback(e, '', 0);
    }
    if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
    const first = list[0] as LookupAddress;
    callback(null, first.address, first.family);
  });
};
