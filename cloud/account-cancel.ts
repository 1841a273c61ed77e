/**
 * Account cancellation (DESIGN P9, issue 6) as a durable state machine. The
 * state lives in the database, never in memory, so a crash at any point is
 * resumed by the next runner (at start-up, by the job "account-cancellations",
 * or on another node) and every step is safe to run again:
 *
 * 1. begin (DELETE /v1/account, one transaction): cancelledAt is set; from
 *    then on the account's sessions, its devices and a login are answered
 *    410 ACCOUNT_CANCELLED. Sessions, bind codes, shares (both ways), the
 *    webhook, notifications, consents and experience events go; devices'
 *    token and MQTT password are blanked. Each revoked token leaves a
 *    tombstone, a digest that names neither the token hash nor the account,
 *    so an old credential still gets 410 after every row is gone.
 * 2. devices: an unbind command to each (deviceCommands, when the broker is
 *    wired; not waited for beyond a timeout: a device need not be online),
 *    then its row (its pending uploads and shares go with it).
 * 3. objects: open multipart uploads under accounts/<id>/ are aborted, then
 *    every object under the prefix is deleted, a page (<= 1000 keys) a call.
 * 4. rows: clip rows (their objects are gone), then, in one transaction,
 *    every other row that mentions the account (security log, mailed codes,
 *    rate-limit rows of its address and serials, ...) and its personal data
 *    (the email becomes a random placeholder, the password hash empty).
 * 5. wait until every upload URL handed out before step 1 has expired
 *    (cancelledAt + uploadUrlTtlSec): a device that held one may still PUT.
 * 6. objects and rows once more (whatever such a PUT, or a request that was
 *    in flight during step 1, left), then the account row itself. The
 *    account row cannot go while a clip row names it (no cascade on clips),
 *    so a clip that slipped in sends us round again.
 *
 * One runner works on an account at a time: a lease on the account row,
 * renewed every step and page, lapses if its holder dies.
 */
import { randomBytes } from 'node:crypto';
import { accountPrefix } from '../shared/keys.js';
import { emailHash } from './auth/email-codes.js';
import { sha256Hex } from './auth/tokens.js';
import type { AppContext } from './context.js';
import { rateKey } from './http/rate-limit.js';
import type { BeginCancellationOutcome, CredentialTombstones } from './store/types.js';

export type CancelContext = Pick<AppContext, 'store' | 'objects' | 'config' | 'clock' | 'deviceCommands'>;

/** what the runners log through (a fastify or a pino logger) */
export interface CancelLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** A cancelled device's old token is answered 410 this long; afterwards 401 like any unknown token. */
export const CANCELLED_DEVICE_TOKEN_DAYS = 90;
const DAY_MS = 24 * 3600_000;
/** a runner holds an account this long between renewals */
export const CANCEL_LEASE_MS = 60_000;
const OBJECT_PAGE = 1000;
const CLIP_ROW_PAGE = 1000;
/** on top of an upload URL's lifetime: the object store's clock may run a little behind ours */
const URL_EXPIRY_MARGIN_MS = 2000;
/** an unbind command that takes longer is left to the broker (the token is revoked anyway) */
const UNBIND_TIMEOUT_MS = 15_000;

/**
 * The tombstone of a revoked session or device token: a digest of its hash.
 * The tombstone table then holds nothing that is in any other row, and
 * nothing that leads back to the account.
 */
export function credentialDigest(tokenHash: string): string {
  return sha256Hex(`camvault cancelled credential\n${tokenHash}`);
}

function tombstones(nowMs: number): CredentialTombstones {
  return { digest: credentialDigest, deviceUntil: nowMs + CANCELLED_DEVICE_TOKEN_DAYS * DAY_MS };
}

/** Step 1: marks the account cancelled (at nowMs) and revokes its access, in one transaction. */
export function beginCancellation(
  ctx: Pick<CancelContext, 'store' | 'clock'>,
  accountId: string,
  nowMs = ctx.clock.now(),
): Promise<BeginCancellationOutcome> {
  return ctx.store.beginCancellation(accountId, nowMs, tombstones(nowMs));
}

/**
 * 'done': the account is gone. 'waiting': only the wait for upload URLs to
 * expire is left and it is longer than maxWaitMs (a later pass finishes).
 * 'busy': another runner holds the account. 'stopped': the signal fired.
 */
export type CancellationOutcome = 'done' | 'waiting' | 'busy' | 'stopped';

export interface RunCancellationOptions {
  log: CancelLog;
  /** stop after the step or page in hand (the server is closing) */
  signal?: AbortSignal;
  /** the lease owner (default: random) */
  owner?: string;
  /** the longest wait for upload URLs to expire this run sits through; longer: 'waiting'. Default: no limit */
  maxWaitMs?: number;
}

class Stopped extends Error {}
class LeaseLost extends Error {}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs (or resumes) the cancellation of an account that beginCancellation
 * marked, through to its end unless stopped, and returns how far it got.
 * Throws when a step fails (an object store that refuses deletes): the lease
 * is released, and the next runner starts again from where this one stopped.
 */
export async function runCancellation(ctx: CancelContext, accountId: string, opts: RunCancellationOptions): Promise<CancellationOutcome> {
  const { store, objects, clock } = ctx;
  const owner = opts.owner ?? `cancel-${randomBytes(8).toString('hex')}`;
  const renew = async (): Promise<void> => {
    if (opts.signal?.aborted) throw new Stopped();
    const now = clock.now();
    if (!(await store.leaseCancellation(accountId, owner, now, now + CANCEL_LEASE_MS))) throw new LeaseLost();
  };
  const start = clock.now();
  if (!(await store.leaseCancellation(accountId, owner, start, start + CANCEL_LEASE_MS))) return 'busy';

  const serials = new Set<string>();

  const unbindDevices = async (): Promise<void> => {
    const devices = await store.listDevices(accountId);
    if (devices.length === 0) return;
    for (const d of devices) serials.add(d.serial);
    const commands = ctx.deviceCommands;
    if (commands) {
      // all at once, none waited for beyond the timeout: an offline device must not hold the cancellation
      const results = await Promise.allSettled(devices.map((d) => withTimeout(commands.unbind(d.serial), UNBIND_TIMEOUT_MS)));
      const failed = results.filter((r) => r.status === 'rejected').length;
      if (failed > 0) opts.log.warn({ accountId, failed }, 'unbind commands not confirmed; the devices\u2019 credentials are revoked already');
    }
    for (const d of devices) await store.unbindDevice(d.serial, accountId);
    await renew();
  };

  const purgeObjects = async (): Promise<number> => {
    const prefix = accountPrefix(accountId);
    for (const upload of await objects.listMultipartUploads(prefix)) await objects.abortMultipartUpload(upload.key, upload.uploadId);
    let deleted = 0;
    let previous = new Set<string>();
    for (;;) {
      const page = await objects.list(prefix, null, OBJECT_PAGE);
      if (page.objects.length === 0) return deleted;
      const keys = page.objects.map((o) => o.key);
      // a store that says "deleted" and still lists the keys would keep us here forever
      if (keys.every((k) => previous.has(k))) throw new Error('the object store still lists objects it reported deleted');
      const result = await objects.deleteMany(keys);
      if (result.failed.length > 0) throw new Error(`${result.failed.length} objects under the account's prefix could not be deleted`);
      deleted += result.deleted.length;
      previous = new Set(keys);
      await renew();
    }
  };

  const purgeRows = async (email: string): Promise<void> => {
    for (;;) {
      const n = await store.deleteCancelledClipRows(accountId, CLIP_ROW_PAGE);
      if (n < CLIP_ROW_PAGE) break;
      await renew();
    }
    const now = clock.now();
    await store.purgeAccountRows(accountId, {
      nowMs: now,
      tombstones: tombstones(now),
      emailHash: emailHash(email),
      rateLimitKeys: [rateKey('login-account', email), rateKey('mail-email', email), ...[...serials].map((s) => rateKey('claim-serial', s))],
      erasedEmail: `cancelled:${randomBytes(16).toString('hex')}`,
    });
    await renew();
  };

  let release = true;
  try {
    const account = await store.getAccountById(accountId);
    if (!account) {
      release = false;
      return 'done';
    }
    if (account.cancelledAt == null) throw new Error('runCancellation: the account is not being cancelled');
    const email = account.email;

    await unbindDevices();
    const objectsDeleted = await purgeObjects();
    await purgeRows(email);
    opts.log.info({ accountId, objectsDeleted }, 'account erased; waiting for its upload URLs to expire');

    const quietAt = account.cancelledAt + ctx.config.uploadUrlTtlSec * 1000 + URL_EXPIRY_MARGIN_MS;
    for (;;) {
      const wait = quietAt - clock.now();
      if (wait <= 0) break;
      if (wait > (opts.maxWaitMs ?? Infinity)) return 'waiting';
      await sleep(Math.min(wait, CANCEL_LEASE_MS / 3), opts.signal);
      await renew();
    }

    // what a late PUT or a request in flight during step 1 left; a clip row that lands meanwhile sends us round again
    for (let round = 0; round < 3; round++) {
      await unbindDevices();
      await purgeObjects();
      await purgeRows(email);
      if (await store.finishCancellation(accountId)) {
        release = false;
        opts.log.info({ accountId }, 'account cancelled: nothing of it is left');
        return 'done';
      }
    }
    throw new Error('clip rows keep arriving for a cancelled account');
  } catch (err) {
    if (err instanceof Stopped) return 'stopped';
    if (err instanceof LeaseLost) {
      release = false;
      return 'busy';
    }
    throw err;
  } finally {
    if (release) {
      const now = clock.now();
      await store.leaseCancellation(accountId, owner, now, now).catch(() => undefined);
    }
  }
}

export interface ResumeCounts {
  done: number;
  waiting: number;
  busy: number;
  failed: number;
  tombstonesPruned: number;
}

/**
 * One pass over the cancellations nobody is working on (a runner that died
 * leaves a lease that lapses): each is run as far as it goes without waiting
 * longer than maxWaitMs (default 0: the job comes back). Then expired
 * tombstones are pruned. The job "account-cancellations" runs this every
 * minute (server.ts).
 */
export async function resumeCancellations(
  ctx: CancelContext,
  opts: { log: CancelLog; signal?: AbortSignal; maxWaitMs?: number; limit?: number },
): Promise<ResumeCounts> {
  const counts: ResumeCounts = { done: 0, waiting: 0, busy: 0, failed: 0, tombstonesPruned: 0 };
  const ids = await ctx.store.listCancellations(ctx.clock.now(), opts.limit ?? 100);
  for (const id of ids) {
    if (opts.signal?.aborted) break;
    try {
      const outcome = await runCancellation(ctx, id, { log: opts.log, signal: opts.signal, maxWaitMs: opts.maxWaitMs ?? 0 });
      if (outcome !== 'stopped') counts[outcome]++;
    } catch (err) {
      counts.failed++;
      opts.log.error({ accountId: id, err: (err as Error).message }, 'account cancellation failed; the next pass resumes it');
    }
  }
  if (!opts.signal?.aborted) counts.tombstonesPruned = await ctx.store.pruneCancelledCredentials(ctx.clock.now(), 10_000);
  return counts;
}

/**
 * The cancellations one node runs in the background: the one a DELETE
 * /v1/account starts, and at start-up every unfinished one (each waits for
 * its upload URLs itself). close() stops them after the step in hand and
 * waits; what is left resumes at the next start or job pass.
 */
export class CancellationRunners {
  private readonly stop = new AbortController();
  private readonly running = new Map<string, Promise<void>>();
  private resuming: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ctx: CancelContext,
    private readonly log: CancelLog,
  ) {}

  /** runs the account's cancellation unless this node runs it already */
  start(accountId: string): void {
    if (this.stop.signal.aborted || this.running.has(accountId)) return;
    const run = runCancellation(this.ctx, accountId, { log: this.log, signal: this.stop.signal })
      .then(
        () => undefined,
        (err: unknown) => this.log.error({ accountId, err: (err as Error).message }, 'account cancellation failed; the next pass resumes it'),
      )
      .finally(() => this.running.delete(accountId));
    this.running.set(accountId, run);
  }

  /** every unfinished cancellation no runner holds */
  resumeAll(): Promise<number> {
    const listed = this.ctx.store.listCancellations(this.ctx.clock.now(), 100).then((ids) => {
      for (const id of ids) this.start(id);
      return ids.length;
    });
    this.resuming = listed.catch(() => undefined);
    return listed;
  }

  /** resolves when the account's run on this node (if any) has ended */
  async settled(accountId: string): Promise<void> {
    await this.running.get(accountId);
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.resuming;
    await Promise.all(this.running.values());
  }
}
