import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { CompleteResponse } from '../../shared/contracts/clips.js';
import type { CompleteRequest, MultipartPresignResponse, PresignRequest, PresignResponse } from '../../shared/contracts/uploads.js';
import type { UploadMode } from '../../shared/contracts/alerts.js';
import type { Logger } from '../../shared/log.js';
import { DEFAULT_PART_BYTES, normalizeEtag } from '../../shared/multipart.js';
import { CLIENT_CODES, CloudError, type CallOptions, type PutResult, type PutTarget } from '../cloud-client.js';
import type { ClipParts, ClipRow, Journal } from '../journal/journal.js';
import { PutSlots, checkPartLayout, hashClip, uploadParts, wantsParts, type PartPutApi } from './multipart.js';
import { Wakeup, abortableSleep } from '../wakeup.js';
import {
  DEFAULT_RETRY_POLICY,
  INTEGRITY_CODES,
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
  /** the store refused the bytes and the file no longer hashes as journaled: it changed on disk */
  corrupt?: boolean;
}

/** The last upload error, as `agent status` shows it (agent_stats 'last_error'). */
export interface LastUploadError {
  code: string;
  status: number;
  clipId: string | null;
  at: number;
  message: string;
}

/**
 * The last error is written to the journal when its code changes and
 * otherwise at most this often (and on stop): an outage fails an attempt
 * every few seconds, and the SD card should not take a write for each.
 */
export const LAST_ERROR_FLUSH_MS = 60_000;

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
  /** the upload mode, read each turn (issue 7): in 'events', continuous footage stays on the device */
  uploadMode?: () => UploadMode;
}

/**
 * One upload task's aborts: `http` cuts its requests (stop's grace ran out,
 * or the ring buffer withdrew the clip), `wait` ends its retry wait (stop
 * began, or withdrawn). Plain listeners on the uploader's long-lived signals,
 * removed by release(), rather than AbortSignal.any: the agent runs for
 * months, and some Node versions keep every signal AbortSignal.any ever made
 * from a long-lived one (nodejs/node#55351).
 */
interface ClipAborts {
  http: AbortController;
  wait: AbortController;
  release(): void;
}

function clipAborts(aborting: AbortSignal, stopping: AbortSignal): ClipAborts {
  const http = new AbortController();
  const wait = new AbortController();
  const cut = (): void => http.abort();
  const end = (): void => wait.abort();
  if (aborting.aborted) cut();
  else aborting.addEventListener('abort', cut, { once: true });
  if (stopping.aborted) end();
  else stopping.addEventListener('abort', end, { once: true });
  return {
    http,
    wait,
    release: () => {
      aborting.removeEventListener('abort', cut);
      stopping.removeEventListener('abort', end);
    },
  };
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
  private readonly uploadMode: () => UploadMode;
  /** PUT streams in flight, whole clips and parts alike, are bounded by `concurrency` */
  private readonly putSlots: PutSlots;
  /** stop began: no new clips, retry waits end */
  private readonly stopping = new AbortController();
  /** grace is over: in-flight HTTP is cut */
  private readonly aborting = new AbortController();
  private readonly inflight = new Map<string, Promise<void>>();
  /** each in-flight clip's own aborts, for withdraw() */
  private readonly clipAborts = new Map<string, ClipAborts>();
  /** clips withdrawn by the ring buffer: their tasks end without touching the journal */
  private readonly withdrawn = new Set<string>();
  private pendingError: LastUploadError | undefined;
  private lastErrorWritten: { code: string; at: number } | undefined;
  private readonly wakeup = new Wakeup();
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
    this.uploadMode = opts.uploadMode ?? (() => 'continuous');
    this.putSlots = new PutSlots(this.concurrency);
  }

  start(): void {
    if (this.stopping.signal.aborted) throw new Error('uploader is stopped');
    this.loopDone ??= this.loop();
  }

  /** A clip was journaled (or something changed): look at the queue now. */
  wake(): void {
    this.wakeup.wake();
  }

  /**
   * sync-now (an MQTT command from the owner): upload what is queued now. A
   * park ends and clips waiting out a retry delay are due at once; a cloud
   * that still refuses parks the queue again after one round.
   */
  syncNow(): void {
    this.parkedUntil = 0;
    this.safely(() => this.journal.clearRetryDelays());
    this.wake();
  }

  /** Why and until when the queue is parked, if it is. */
  get parked(): { code: string; untilMs: number } | undefined {
    return this.parkedCode && this.parkedUntil > this.clock.now() ? { code: this.parkedCode, untilMs: this.parkedUntil } : undefined;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /** Whether this clip is being uploaded right now. */
  isUploading(clipId: string): boolean {
    return this.inflight.has(clipId);
  }

  /**
   * Takes clips out of the uploader's hands, for the ring buffer that is about
   * to delete their files: their uploads in flight are aborted before this
   * returns (synchronously), their tasks end without touching the journal
   * (the caller records what becomes of the clips), and the promise resolves
   * once those tasks have ended and closed their files. Clips not in flight
   * are left alone: the caller takes them out of the queue in the journal.
   */
  withdraw(clipIds: Iterable<string>): Promise<void> {
    const tasks: Promise<void>[] = [];
    for (const id of clipIds) {
      const task = this.inflight.get(id);
      const aborts = this.clipAborts.get(id);
      if (!task || !aborts) continue;
      this.withdrawn.add(id);
      aborts.http.abort();
      aborts.wait.abort();
      tasks.push(task);
    }
    return Promise.allSettled(tasks).then(() => undefined);
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
    this.flushLastError();
  }

  private async loop(): Promise<void> {
    const stop = this.stopping.signal;
    while (!stop.aborted) {
      let waitMs = this.idlePollMs;
      try {
        const now = this.clock.now();
        if (this.pendingError && now - (this.lastErrorWritten?.at ?? 0) >= LAST_ERROR_FLUSH_MS) this.flushLastError();
        if (this.parkedUntil > now) {
          waitMs = this.parkedUntil - now;
        } else {
          const free = this.concurrency - this.inflight.size;
          const eventsOnly = this.uploadMode() === 'events';
          if (free > 0) {
            for (const clip of this.journal.nextToUpload(free, [...this.inflight.keys()], { eventsOnly })) this.launch(clip);
          }
          const dueAt = this.journal.nextDueAt({ eventsOnly });
          if (dueAt !== undefined) waitMs = Math.min(waitMs, Math.max(0, dueAt - now));
        }
      } catch (err) {
        this.log.error({ err }, 'upload queue turn failed');
        waitMs = Math.min(waitMs, 5000);
      }
      await this.wakeup.wait(waitMs, stop);
    }
  }



  private launch(clip: ClipRow): void {
    this.journal.markUploading(clip.id);
    const aborts = clipAborts(this.aborting.signal, this.stopping.signal);
    this.clipAborts.set(clip.id, aborts);
    const task = this.uploadClip(clip, aborts)
      .catch((err: unknown) => {
        if (this.withdrawn.has(clip.id)) return;
        this.log.error({ clipId: clip.id, err }, 'upload task failed unexpectedly');
        this.safely(() => this.journal.markQueued(clip.id, { code: 'INTERNAL', notBeforeMs: this.clock.now() + this.policy.parkMs }));
      })
      .finally(() => {
        aborts.release();
        this.inflight.delete(clip.id);
        this.clipAborts.delete(clip.id);
        this.withdrawn.delete(clip.id);
        this.wake();
      });
    this.inflight.set(clip.id, task);
  }

  private async uploadClip(clip: ClipRow, aborts: ClipAborts): Promise<void> {
    const log = this.log.child({ clipId: clip.id });
    const signal = aborts.http.signal;
    const waitSignal = aborts.wait.signal;
    let retries = 0;
    let represigns = 0;
    // integrity refusals: the file is hashed again once, then sent again at most maxIntegrityRetries times
    let verified = false;
    let integrityRetries = 0;
    // parts stored by this clip's attempts so far: a try that stored parts made
    // progress, and the budgets below count tries without progress
    const progress = { parts: 0 };
    for (;;) {
      // withdrawn: the ring buffer deletes the file and records the clip's fate
      if (this.withdrawn.has(clip.id)) return;
      if (this.stopping.signal.aborted) {
        this.journal.markQueued(clip.id);
        return;
      }
      const startedAt = this.clock.now();
      const partsBefore = progress.parts;
      let failure: CloudError;
      try {
        await this.attempt(clip, progress, signal);
        // A withdraw that came as the last answer arrived: the cloud has the
        // clip, but the ring buffer has already counted it as lost. Rare
        // (microseconds wide), and it errs on the side of reporting a loss.
        if (this.withdrawn.has(clip.id)) return;
        this.onUploaded(clip, startedAt, false);
        return;
      } catch (err) {
        failure = err instanceof CloudError ? err : new CloudError(0, 'NETWORK_ERROR', err instanceof Error ? err.message : String(err));
      }
      if (this.withdrawn.has(clip.id)) return;
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
          if (code === CLIENT_CODES.FILE_CHANGED || code === CLIENT_CODES.FILE_UNREADABLE) {
            log.error({ code }, 'the clip file changed or cannot be read since it was hashed; the clip is corrupt, stays on the device, marked failed');
            this.failed(clip, failure, 'failed', { corrupt: code === CLIENT_CODES.FILE_CHANGED });
          } else {
            log.warn({ code, status }, 'the cloud refused this clip; it stays on the device, marked failed');
            this.failed(clip, failure, 'failed');
          }
          return;
        case 'lost':
          this.journal.markClipLost(clip.id, code);
          log.warn({ code, size: clip.size }, 'the clip file is gone: footage lost');
          this.failed(clip, failure, 'lost');
          return;
        case 'verify': {
          if (!verified) {
            verified = true;
            const check = await this.fileCheck(clip);
            if (this.withdrawn.has(clip.id)) return;
            if (check === 'missing') {
              this.journal.markClipLost(clip.id, CLIENT_CODES.FILE_MISSING);
              log.warn({ code, size: clip.size }, 'the store refused the clip and its file is gone: footage lost');
              this.failed(clip, failure, 'lost');
              return;
            }
            if (check === 'changed') {
              this.journal.markFailed(clip.id, code);
              log.error(
                { code, status },
                'the store refused the clip: its file changed on disk after it was hashed, so the clip is corrupt; it stays on the device, marked failed, and is not sent again',
              );
              this.failed(clip, failure, 'failed', { corrupt: true });
              return;
            }
          }
          integrityRetries += 1;
          if (integrityRetries > this.policy.maxIntegrityRetries) {
            this.journal.markFailed(clip.id, code);
            log.error(
              { code, status, attempts: integrityRetries },
              'the store keeps refusing the clip as altered although its file still hashes as journaled; given up, the clip stays on the device, marked failed',
            );
            this.failed(clip, failure, 'failed');
            return;
          }
          log.warn({ code, status }, 'the store refused the clip as altered in transit; the file is intact, sending it again');
          break;
        }
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
      await this.sleep(delay, waitSignal);
    }
  }

  /**
   * One try: presign, then either one PUT of the whole file or a PUT per part
   * not yet stored, then complete. The cloud decides which (the device sends
   * part MD5s for any clip that could go in parts).
   */
  private async attempt(clip: ClipRow, progress: { parts: number }, signal: AbortSignal): Promise<void> {
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
      await this.uploadInParts(clip, parts, presigned, progress, signal);
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

  private async uploadInParts(
    clip: ClipRow,
    parts: ClipParts,
    presigned: MultipartPresignResponse,
    progress: { parts: number },
    signal: AbortSignal,
  ): Promise<void> {
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

  /**
   * Hashes the clip's file again, after the store refused its bytes: has it
   * changed on disk since it was journaled?
   */
  private async fileCheck(clip: ClipRow): Promise<'same' | 'changed' | 'missing'> {
    try {
      const d = await hashClip(clip.path, clip.parts?.partBytes ?? this.partBytes);
      const same =
        d.size === clip.size &&
        d.md5 === clip.md5 &&
        d.sha256 === clip.sha256 &&
        (!clip.parts || JSON.stringify(d.parts?.md5s) === JSON.stringify(clip.parts.md5s));
      return same ? 'same' : 'changed';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
      // unreadable where it was read before: as good as changed
      return 'changed';
    }
  }

  private failed(clip: ClipRow, err: CloudError, next: UploadFailed['next'], extra: { corrupt?: boolean } = {}): void {
    const event: UploadFailed = { clipId: clip.id, code: err.code, status: err.status, next, ...extra };
    this.noteError(event, err.message);
    this.emit('upload-failed', event);
  }

  /**
   * Keeps the last error for `agent status`. Written at once when the code
   * changes or the clip is given up; otherwise at most every
   * LAST_ERROR_FLUSH_MS (an outage repeats one code for hours).
   */
  private noteError(e: UploadFailed, message: string): void {
    const corrupt = e.corrupt ? ': the file changed on disk after it was hashed (corrupt)' : '';
    const detail = INTEGRITY_CODES.has(e.code) && !e.corrupt && e.next === 'failed' ? ': refused again and again although the file is intact' : '';
    this.pendingError = {
      code: e.code,
      status: e.status,
      clipId: e.clipId,
      at: this.clock.now(),
      // without URLs: a presigned URL's query is a credential
      message: `${message.replace(/\bhttps?:\/\/\S+/g, '[url]')}${corrupt}${detail}`.slice(0, 300),
    };
    const now = this.clock.now();
    const urgent = e.next === 'failed' || e.next === 'lost' || e.next === 'parked';
    if (urgent || this.lastErrorWritten?.code !== e.code || now - this.lastErrorWritten.at >= LAST_ERROR_FLUSH_MS) this.flushLastError();
  }

  private flushLastError(): void {
    const e = this.pendingError;
    if (!e) return;
    this.pendingError = undefined;
    this.lastErrorWritten = { code: e.code, at: this.clock.now() };
    this.safely(() => this.journal.setStatInfo('last_error', e));
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err }, 'journal update failed');
    }
  }
}
