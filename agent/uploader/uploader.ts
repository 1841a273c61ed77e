import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { CompleteResponse } from '../../shared/contracts/clips.js';
import type { PresignRequest, PresignResponse } from '../../shared/contracts/uploads.js';
import type { Logger } from '../../shared/log.js';
import { CloudError, type CallOptions, type PutResult } from '../cloud-client.js';
import type { ClipRow, Journal } from '../journal/journal.js';
import {
  DEFAULT_RETRY_POLICY,
  classifyFailure,
  exhaustedGivesUp,
  isNetworkFailure,
  retryDelayMs,
  type RetryPolicy,
} from './retry-policy.js';

/** The part of CloudClient the uploader needs. */
export interface UploadApi {
  presign(req: PresignRequest, opts?: CallOptions): Promise<PresignResponse>;
  streamPut(presigned: PresignResponse, path: string, opts?: CallOptions): Promise<PutResult>;
  complete(clipId: string, opts?: CallOptions): Promise<CompleteResponse>;
}

export interface ClipUploaded {
  clipId: string;
  serial: string;
  kind: ClipRow['kind'];
  startMs: number;
  durationMs: number;
  size: number;
  sha256: string;
  path: string;
  /** from the start of the successful presign to the end of complete */
  uploadMs: number;
  /** the cloud had it already (an upload finished before a crash) */
  alreadyUploaded: boolean;
}

export interface UploadFailed {
  clipId: string;
  code: string;
  status: number;
  /** what happens next: retried after a delay, queue parked, given up, or file lost */
  next: 'retry' | 'queued' | 'parked' | 'failed' | 'lost';
}

export interface UploaderOptions {
  journal: Journal;
  api: UploadApi;
  serial: string;
  logger: Logger;
  clock?: Clock;
  concurrency?: number;
  policy?: Partial<RetryPolicy>;
  /** the wait between retries; tests inject one that records and returns */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
  /** the queue is re-read at least this often even without a wake */
  idlePollMs?: number;
}

/** A real sleep that ends early (resolving) when the signal aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Uploads queued clips: presign → PUT from disk → complete, events first, up
 * to `concurrency` at a time. A loop with a stop signal: each turn catches its
 * own errors and waits only for a wake (a new clip, a finished upload), the
 * next due retry, or the end of a park.
 *
 * Events: 'clip-uploaded' (ClipUploaded), 'upload-failed' (UploadFailed).
 */
export class Uploader extends EventEmitter {
  private readonly journal: Journal;
  private readonly api: UploadApi;
  private readonly serial: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly policy: RetryPolicy;
  private readonly concurrency: number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly idlePollMs: number;
  /** stop began: no new clips, retry waits end */
  private readonly stopping = new AbortController();
  /** grace is over: in-flight HTTP is cut */
  private readonly aborting = new AbortController();
  private readonly inflight = new Map<string, Promise<void>>();
  private wakePending = false;
  private wakeResolve: (() => void) | undefined;
  private parkedUntil = 0;
  private parkedCode: string | undefined;
  private loopDone: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;

  constructor(opts: UploaderOptions) {
    super();
    this.journal = opts.journal;
    this.api = opts.api;
    this.serial = opts.serial;
    this.log = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.policy = { ...DEFAULT_RETRY_POLICY, ...opts.policy };
    this.concurrency = Math.max(1, opts.concurrency ?? 2);
    this.sleep = opts.sleep ?? abortableSleep;
    this.random = opts.random ?? Math.random;
    this.idlePollMs = opts.idlePollMs ?? 60_000;
  }

  start(): void {
    if (this.stopping.signal.aborted) throw new Error('uploader is stopped');
    this.loopDone ??= this.loop();
  }

  /** A clip was journaled (or something changed): look at the queue now. */
  wake(): void {
    this.wakePending = true;
    this.wakeResolve?.();
  }

  /** Why and until when the queue is parked, if it is. */
  get parked(): { code: string; untilMs: number } | undefined {
    return this.parkedCode && this.parkedUntil > this.clock.now() ? { code: this.parkedCode, untilMs: this.parkedUntil } : undefined;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /**
   * Idempotent. Takes no new clips; in-flight uploads get `graceMs` to finish,
   * then are cut and their clips go back to the queue.
   */
  stop(opts: { graceMs?: number } = {}): Promise<void> {
    this.stopPromise ??= this.doStop(opts.graceMs ?? 3000);
    return this.stopPromise;
  }

  private async doStop(graceMs: number): Promise<void> {
    this.stopping.abort();
    this.wake();
    await this.loopDone;
    if (this.inflight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.inflight.values()]),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      if (timer) clearTimeout(timer);
      if (this.inflight.size > 0) {
        this.log.info({ clips: this.inflight.size }, 'stopping: cutting uploads still in flight; their clips stay queued');
        this.aborting.abort();
        await Promise.allSettled([...this.inflight.values()]);
      }
    }
  }

  private async loop(): Promise<void> {
    const stop = this.stopping.signal;
    while (!stop.aborted) {
      let waitMs = this.idlePollMs;
      try {
        const now = this.clock.now();
        if (this.parkedUntil > now) {
          waitMs = this.parkedUntil - now;
        } else {
          const free = this.concurrency - this.inflight.size;
          if (free > 0) {
            for (const clip of this.journal.nextToUpload(free, [...this.inflight.keys()])) this.launch(clip);
          }
          const dueAt = this.journal.nextDueAt();
          if (dueAt !== undefined) waitMs = Math.min(waitMs, Math.max(0, dueAt - now));
        }
      } catch (err) {
        this.log.error({ err }, 'upload queue turn failed');
        waitMs = Math.min(waitMs, 5000);
      }
      await this.waitForWake(waitMs, stop);
    }
  }

  private waitForWake(ms: number, stop: AbortSignal): Promise<void> {
    if (this.wakePending || stop.aborted) {
      this.wakePending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        stop.removeEventListener('abort', done);
        this.wakeResolve = undefined;
        this.wakePending = false;
        resolve();
      };
      // never a zero-delay spin: at least a few ms between turns
      const timer = setTimeout(done, Math.max(5, ms));
      this.wakeResolve = done;
      stop.addEventListener('abort', done, { once: true });
    });
  }

  private launch(clip: ClipRow): void {
    this.journal.markUploading(clip.id);
    const task = this.uploadClip(clip)
      .catch((err: unknown) => {
        this.log.error({ clipId: clip.id, err }, 'upload task failed unexpectedly');
        this.safely(() => this.journal.markQueued(clip.id, { code: 'INTERNAL', notBeforeMs: this.clock.now() + this.policy.parkMs }));
      })
      .finally(() => {
        this.inflight.delete(clip.id);
        this.wake();
      });
    this.inflight.set(clip.id, task);
  }

  private async uploadClip(clip: ClipRow): Promise<void> {
    const log = this.log.child({ clipId: clip.id });
    let retries = 0;
    let represigns = 0;
    for (;;) {
      if (this.stopping.signal.aborted) {
        this.journal.markQueued(clip.id);
        return;
      }
      const startedAt = this.clock.now();
      let failure: CloudError;
      try {
        await this.attempt(clip);
        this.onUploaded(clip, startedAt, false);
        return;
      } catch (err) {
        failure = err instanceof CloudError ? err : new CloudError(0, 'NETWORK_ERROR', err instanceof Error ? err.message : String(err));
      }
      const action = classifyFailure(this.policy, failure);
      const { code, status } = failure;
      switch (action) {
        case 'done':
          this.onUploaded(clip, startedAt, true);
          return;
        case 'abort':
          this.journal.markQueued(clip.id);
          return;
        case 'represign':
          represigns += 1;
          if (represigns <= this.policy.maxRepresigns) {
            log.info({ code }, 'the upload URL expired; presigning again');
            continue;
          }
          break; // keeps expiring: treat as a retry
        case 'park':
          this.journal.markQueued(clip.id, { code });
          this.park(code, status);
          this.failed(clip, failure, 'parked');
          return;
        case 'fail':
          this.journal.markFailed(clip.id, code);
          log.warn({ code, status }, 'the cloud refused this clip; it stays on the device, marked failed');
          this.failed(clip, failure, 'failed');
          return;
        case 'lost':
          this.journal.markLost(clip.id, code);
          log.warn({ code }, 'the clip file is gone');
          this.failed(clip, failure, 'lost');
          return;
        case 'retry':
          break;
      }
      retries += 1;
      if (retries > this.policy.maxRetries) {
        if (exhaustedGivesUp(code)) {
          this.journal.markFailed(clip.id, code);
          log.warn({ code, status, retries: retries - 1 }, 'giving up on this clip after retries');
          this.failed(clip, failure, 'failed');
          return;
        }
        this.journal.markQueued(clip.id, { code, notBeforeMs: this.clock.now() + this.policy.parkMs });
        if (isNetworkFailure(failure)) this.park(code, status);
        else log.warn({ code, status, retryInMs: this.policy.parkMs }, 'upload keeps failing; the clip waits in the queue');
        this.failed(clip, failure, 'queued');
        return;
      }
      const delay = retryDelayMs(this.policy, retries, failure.retryAfterSec, this.random);
      log.debug({ code, status, retry: retries, delayMs: delay }, 'upload failed; retrying');
      this.failed(clip, failure, 'retry');
      await this.sleep(delay, this.stopping.signal);
    }
  }

  private async attempt(clip: ClipRow): Promise<void> {
    const signal = this.aborting.signal;
    const presigned = await this.api.presign(
      {
        clipId: clip.id,
        start: new Date(clip.startMs).toISOString(),
        durationMs: clip.durationMs,
        size: clip.size,
        md5: clip.md5,
        sha256: clip.sha256,
        kind: clip.kind,
      },
      { signal },
    );
    const put = await this.api.streamPut(presigned, clip.path, { signal });
    if (!put.ok) throw new CloudError(put.status, put.code ?? `HTTP_${put.status}`, `PUT → ${put.status}`, put.retryAfterSec);
    await this.api.complete(clip.id, { signal });
  }

  private onUploaded(clip: ClipRow, startedAt: number, alreadyUploaded: boolean): void {
    this.journal.markUploaded(clip.id);
    if (this.parkedCode) {
      this.log.info({ code: this.parkedCode }, 'uploads resumed');
      this.parkedCode = undefined;
    }
    const event: ClipUploaded = {
      clipId: clip.id,
      serial: this.serial,
      kind: clip.kind,
      startMs: clip.startMs,
      durationMs: clip.durationMs,
      size: clip.size,
      sha256: clip.sha256,
      path: clip.path,
      uploadMs: this.clock.now() - startedAt,
      alreadyUploaded,
    };
    this.emit('clip-uploaded', event);
  }

  /**
   * Stops the whole queue for parkMs. Logged once per distinct code, so a
   * device without a plan writes one line, not one every few minutes.
   */
  private park(code: string, status: number): void {
    this.parkedUntil = Math.max(this.parkedUntil, this.clock.now() + this.policy.parkMs);
    if (this.parkedCode !== code) {
      this.log.warn({ code, status, retryInMs: this.policy.parkMs }, 'uploads paused: the cloud refuses this device for now; footage stays on the device');
      this.parkedCode = code;
    }
  }

  private failed(clip: ClipRow, err: CloudError, next: UploadFailed['next']): void {
    const event: UploadFailed = { clipId: clip.id, code: err.code, status: err.status, next };
    this.emit('upload-failed', event);
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err }, 'journal update failed');
    }
  }
}
