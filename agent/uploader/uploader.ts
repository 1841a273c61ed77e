import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { CompleteResponse } from '../../shared/contracts/clips.js';
import type { CompleteRequest, MultipartPresignResponse, PresignRequest, PresignResponse } from '../../shared/contracts/uploads.js';
import type { Logger } from '../../shared/log.js';
import { DEFAULT_PART_BYTES, normalizeEtag } from '../../shared/multipart.js';
import { CLIENT_CODES, CloudError, type CallOptions, type PutResult, type PutTarget } from '../cloud-client.js';
import type { ClipParts, ClipRow, Journal } from '../journal/journal.js';
import { PutSlots, checkPartLayout, hashClip, uploadParts, wantsParts, type PartPutApi } from './multipart.js';
import {
  DEFAULT_RETRY_POLICY,
  classifyFailure,
  exhaustedGivesUp,
  isNetworkFailure,
  retryDelayMs,
  type RetryPolicy,
} from './retry-policy.js';

/** The part of CloudClient the uploader needs. */
export interface UploadApi extends PartPutApi {
  presign(req: PresignRequest, opts?: CallOptions): Promise<PresignResponse>;
  streamPut(presigned: PutTarget, path: string, opts?: CallOptions): Promise<PutResult>;
  complete(clipId: string, opts?: CallOptions, body?: CompleteRequest): Promise<CompleteResponse>;
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
  /** part size for clips journaled without part MD5s (hashed again when the cloud may want parts) */
  multipartPartBytes?: number;
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
  private readonly partBytes: number;
  /** PUT streams in flight, whole clips and parts alike, are bounded by `concurrency` */
  private readonly putSlots: PutSlots;
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
    this.partBytes = opts.multipartPartBytes ?? DEFAULT_PART_BYTES;
    this.putSlots = new PutSlots(this.concurrency);
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
    // parts stored by this clip's attempts so far: a try that stored parts made
    // progress, and the budgets below count tries without progress
    const progress = { parts: 0 };
    for (;;) {
      if (this.stopping.signal.aborted) {
        this.journal.markQueued(clip.id);
        return;
      }
      const startedAt = this.clock.now();
      const partsBefore = progress.parts;
      let failure: CloudError;
      try {
        await this.attempt(clip, progress);
        this.onUploaded(clip, startedAt, false);
        return;
      } catch (err) {
        failure = err instanceof CloudError ? err : new CloudError(0, 'NETWORK_ERROR', err instanceof Error ? err.message : String(err));
      }
      if (progress.parts > partsBefore) {
        // a long multipart upload outlives its URLs, or meets a flaky link, and still gets there
        retries = 0;
        represigns = 0;
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

  /**
   * One try: presign, then either one PUT of the whole file or a PUT per part
   * not yet stored, then complete. The cloud decides which (the device sends
   * part MD5s for any clip that could go in parts).
   */
  private async attempt(clip: ClipRow, progress: { parts: number }): Promise<void> {
    const signal = this.aborting.signal;
    const parts = await this.partsOf(clip);
    const req: PresignRequest = {
      clipId: clip.id,
      start: new Date(clip.startMs).toISOString(),
      durationMs: clip.durationMs,
      size: clip.size,
      md5: clip.md5,
      sha256: clip.sha256,
      kind: clip.kind,
    };
    if (parts) req.multipart = { partBytes: parts.partBytes, parts: parts.md5s.map((md5) => ({ md5 })) };
    const presigned = await this.api.presign(req, { signal });
    if (presigned.mode === 'multipart') {
      if (!parts) throw new CloudError(200, CLIENT_CODES.BAD_RESPONSE, 'the cloud answered with parts for a clip declared without them');
      await this.uploadInParts(clip, parts, presigned, progress);
      return;
    }
    const release = await this.putSlots.acquire(signal);
    let put: PutResult;
    try {
      put = await this.api.streamPut(presigned, clip.path, { signal });
    } finally {
      release();
    }
    if (!put.ok) throw new CloudError(put.status, put.code ?? `HTTP_${put.status}`, `PUT → ${put.status}`, put.retryAfterSec);
    await this.api.complete(clip.id, { signal });
  }

  private async uploadInParts(clip: ClipRow, parts: ClipParts, presigned: MultipartPresignResponse, progress: { parts: number }): Promise<void> {
    const signal = this.aborting.signal;
    checkPartLayout(presigned, clip.size, parts);
    const etags = new Map<number, string | undefined>();
    for (const p of presigned.parts) if (p.etag !== undefined) etags.set(p.partNumber, p.etag);
    const todo = presigned.parts.filter((p) => !etags.has(p.partNumber));
    if (todo.length > 0) {
      this.log.debug({ clipId: clip.id, parts: presigned.parts.length, toSend: todo.length }, 'uploading in parts');
      await uploadParts({
        api: this.api,
        path: clip.path,
        fileSize: clip.size,
        parts: todo,
        slots: this.putSlots,
        concurrency: this.concurrency,
        signal,
        onStored: (partNumber, etag) => {
          etags.set(partNumber, etag);
          progress.parts += 1;
        },
      });
    }
    // the ETags the store answered, for the cloud to check against the declared
    // MD5s; a store that sent none leaves the check to the declaration alone
    const listed = presigned.parts.map((p) => ({ partNumber: p.partNumber, etag: etags.get(p.partNumber) }));
    const body: CompleteRequest = listed.every((p) => p.etag !== undefined)
      ? { parts: listed.map((p) => ({ partNumber: p.partNumber, etag: normalizeEtag(p.etag as string) })) }
      : {};
    await this.api.complete(clip.id, { signal }, body);
  }

  /**
   * The clip's part MD5s when the cloud may want parts. A clip journaled
   * without them (by an agent from before multipart) is hashed again once, and
   * the result journaled; a file that no longer hashes as journaled has changed.
   */
  private async partsOf(clip: ClipRow): Promise<ClipParts | null> {
    if (!wantsParts(clip.size)) return null;
    if (clip.parts) return clip.parts;
    let digest;
    try {
      digest = await hashClip(clip.path, this.partBytes);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new CloudError(0, CLIENT_CODES.FILE_MISSING, 'the clip file is gone');
      throw new CloudError(0, CLIENT_CODES.FILE_UNREADABLE, `the clip file cannot be read: ${code ?? ''}`);
    }
    if (digest.size !== clip.size || digest.md5 !== clip.md5 || !digest.parts) {
      throw new CloudError(0, CLIENT_CODES.FILE_CHANGED, 'the clip file no longer matches its journaled size and MD5');
    }
    this.journal.setClipParts(clip.id, digest.parts);
    clip.parts = digest.parts;
    return digest.parts;
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
