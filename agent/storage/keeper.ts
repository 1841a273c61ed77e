import { EventEmitter } from 'node:events';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/log.js';
import type { ClipOnDisk, EvictionRecord, Journal } from '../journal/journal.js';
import { diskUsage as statDisk, planEviction, type DiskUsage, type EvictionPlan } from './ring-buffer.js';
import { Wakeup } from '../wakeup.js';

/**
 * The ring buffer's keeper (issue 4, "Ring buffer"): after each closed
 * segment and on a timer it measures what the segments use (the journal's
 * sizes) and what the disk has left (statfs), asks planEviction which clips
 * go, and carries the plan out: uploads of doomed clips are withdrawn first,
 * the journal records the evictions (and the footage lost) durably, then the
 * files are deleted. Recording never waits for it, and a full disk never
 * crashes the agent: withSpace() turns ENOSPC into an eviction and a retry.
 */

/** What the uploader offers the keeper (Uploader implements it). */
export interface UploadsHandle {
  isUploading(clipId: string): boolean;
  withdraw(clipIds: Iterable<string>): Promise<void>;
}

export interface StorageSettings {
  /** the quota for segments; absent: DEFAULT_QUOTA_FRACTION of the file system */
  maxBytes?: number;
  /** free space the disk must keep, for the recorder, SQLite and the system */
  minFreeBytes: number;
}

export interface StorageKeeperOptions {
  journal: Journal;
  /** the segments folder: what statfs measures, and what the start-up sweep looks at */
  dir: string;
  storage: StorageSettings;
  logger: Logger;
  clock?: Clock;
  /** the uploader, once there is one (the agent makes it after the device is claimed) */
  uploads?: () => UploadsHandle | undefined;
  /** how often the keeper checks without being asked (default 30 s) */
  intervalMs?: number;
  /** tests stand in a small or full disk */
  diskUsage?: (dir: string) => Promise<DiskUsage>;
}

/** One check, as the keeper saw it and what it did. */
export interface StorageCheck {
  at: number;
  maxBytes: number;
  minFreeBytes: number;
  /** segment bytes the journal counts, before this check's evictions */
  usedBytes: number;
  freeBytes: number;
  totalBytes: number;
  evictedClips: number;
  evictedBytes: number;
  lostClips: number;
  lostBytes: number;
  /** quota and reserve hold after the check */
  satisfied: boolean;
  shortBytes: number;
}

/** Emitted as 'evicted' after files were deleted. */
export interface EvictionReport extends EvictionRecord {
  /** evicted clips whose uploads were cut for it */
  withdrawn: number;
  emergency: boolean;
}

export const DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024;
/** without a configured quota, the segments may take this much of their file system */
export const DEFAULT_QUOTA_FRACTION = 0.8;
/** after ENOSPC, at least this much is freed, whatever statfs says */
export const EMERGENCY_FREE_BYTES = 16 * 1024 * 1024;
const DEFAULT_INTERVAL_MS = 30_000;
/** journal rows of clips whose files are gone and whose upload is settled are forgotten after this */
export const JOURNAL_HISTORY_MS = 7 * 86_400_000;
/** how often the keeper prunes that history */
const PRUNE_EVERY_MS = 3_600_000;
/** withSpace makes room and tries again at most this many times */
const SPACE_RETRIES = 2;

/** A write that failed because the disk (or the user's quota) is full: from fs, or from SQLite. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

/** The quota: as configured, else a fraction of the file system's size. */
export function resolveQuota(settings: StorageSettings, disk: DiskUsage): number {
  return settings.maxBytes ?? Math.floor(disk.totalBytes * DEFAULT_QUOTA_FRACTION);
}

export class StorageKeeper extends EventEmitter {
  private readonly journal: Journal;
  private readonly dir: string;
  private readonly settings: StorageSettings;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly uploads: () => UploadsHandle | undefined;
  private readonly intervalMs: number;
  private readonly measure: (dir: string) => Promise<DiskUsage>;
  private readonly stopping = new AbortController();
  /** checks run one at a time, in order */
  private tail: Promise<unknown> = Promise.resolve();
  private readonly wakeup = new Wakeup();
  private loopDone: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private quota: number | undefined;
  private last: StorageCheck | undefined;
  private wasShort = false;
  private prunedAt = Number.NEGATIVE_INFINITY;

  constructor(opts: StorageKeeperOptions) {
    super();
    this.journal = opts.journal;
    this.dir = opts.dir;
    this.settings = opts.storage;
    this.log = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.uploads = opts.uploads ?? (() => undefined);
    this.intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.measure = opts.diskUsage ?? statDisk;
  }

  /** The quota in force (known once started). */
  get maxBytes(): number | undefined {
    return this.quota;
  }

  get minFreeBytes(): number {
    return this.settings.minFreeBytes;
  }

  /** The last check, for status. */
  get lastCheck(): StorageCheck | undefined {
    return this.last;
  }

  /**
   * Deletes the files of clips already marked evicted (a power cut between
   * the journal write and the delete leaves them), runs a first check, and
   * starts the timer. Never rejects: a keeper that cannot measure the disk
   * logs it and tries again on its next turn.
   */
  async start(): Promise<void> {
    if (this.stopping.signal.aborted) throw new Error('storage keeper is stopped');
    try {
      await mkdir(this.dir, { recursive: true });
      await this.sweepEvicted();
      await this.check();
    } catch (err) {
      this.log.error({ err }, 'storage check failed at start-up; trying again later');
    }
    this.loopDone ??= this.loop();
  }

  /** A segment was closed and journaled: check soon (the next turn of the loop, without waiting for the timer). */
  segmentClosed(): void {
    this.wake();
  }

  /**
   * Measures and, if the quota or the reserve is broken, evicts. Checks run
   * one at a time in the order asked. `emergency`: a write just failed with
   * ENOSPC, so statfs is not believed and at least EMERGENCY_FREE_BYTES (or
   * the reserve, if larger) is freed.
   */
  check(opts: { emergency?: boolean } = {}): Promise<StorageCheck> {
    const run = this.tail.then(() => this.runCheck(opts.emergency ?? false));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs `fn` (a journal write, hashing a segment); when it fails because the
   * disk is full, makes room (an emergency check, then the journal's WAL is
   * checkpointed and truncated) and runs it again, up to twice. Any other
   * error, or a disk still full, is the caller's.
   */
  async withSpace<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await fn();
      } catch (err) {
        if (!isDiskFull(err)) throw err;
        if (attempt >= SPACE_RETRIES) {
          this.log.error(
            { what, code: (err as { code?: string }).code, attempts: attempt + 1 },
            'the disk is still full after deleting every clip the cloud has; footage the cloud lacks is kept, so something other than the segments fills the disk',
          );
          throw err;
        }
        this.log.warn({ what, code: (err as { code?: string }).code, attempt: attempt + 1 }, 'the disk is full; making room and trying again');
        await this.check({ emergency: true });
        this.truncateWal();
      }
    }
  }

  /** Idempotent: a second call joins the first. Waits for a check in progress. */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping.abort();
      this.wake();
      await this.loopDone;
      await this.tail;
    })();
    return this.stopPromise;
  }

  private wake(): void {
    this.wakeup.wake();
  }

  /** A loop with a stop signal: each turn catches its own errors and waits only for what is left of the interval. */
  private async loop(): Promise<void> {
    const stop = this.stopping.signal;
    let nextAt = this.clock.now() + this.intervalMs;
    while (!stop.aborted) {
      await this.wakeup.wait(Math.max(0, nextAt - this.clock.now()), stop);
      if (stop.aborted) break;
      try {
        await this.check();
      } catch (err) {
        this.log.error({ err }, 'storage check failed');
      }
      this.pruneJournal();
      nextAt = this.clock.now() + this.intervalMs;
    }
  }



  private async runCheck(emergency: boolean): Promise<StorageCheck> {
    const disk = await this.measure(this.dir);
    this.quota ??= resolveQuota(this.settings, disk);
    const maxBytes = this.quota;
    const minFreeBytes = emergency ? Math.max(this.settings.minFreeBytes, EMERGENCY_FREE_BYTES) : this.settings.minFreeBytes;
    const freeBytes = emergency ? 0 : disk.freeBytes;
    const usedBytes = this.journal.onDiskBytes();
    const needed = Math.max(0, usedBytes - maxBytes, minFreeBytes - freeBytes);
    const candidates = needed > 0 ? this.journal.evictionCandidates(needed) : [];
    const plan = planEviction({ maxBytes, minFreeBytes, freeBytes, usedBytes, clips: candidates });
    let rec: EvictionReport | undefined;
    if (plan.evict.length > 0) rec = await this.apply(plan, candidates, emergency);
    const result: StorageCheck = {
      at: this.clock.now(),
      maxBytes,
      minFreeBytes: this.settings.minFreeBytes,
      usedBytes,
      freeBytes: disk.freeBytes,
      totalBytes: disk.totalBytes,
      evictedClips: rec?.evictedClips ?? 0,
      evictedBytes: rec?.evictedBytes ?? 0,
      lostClips: rec?.lostClips ?? 0,
      lostBytes: rec?.lostBytes ?? 0,
      satisfied: plan.satisfied,
      shortBytes: plan.shortBytes,
    };
    this.last = result;
    // an emergency plans with made-up numbers: its shortfall says nothing
    if (emergency) return result;
    // said once when it starts and once when it ends, not after every segment
    if (!plan.satisfied && !this.wasShort) {
      this.log.error(
        { shortBytes: plan.shortBytes, freeBytes: disk.freeBytes, minFreeBytes, usedBytes, maxBytes },
        'the disk is short of free space that deleting footage cannot recover: something other than the segments fills it',
      );
    } else if (plan.satisfied && this.wasShort) {
      this.log.info({ freeBytes: disk.freeBytes }, 'the disk has its free-space reserve again');
    }
    this.wasShort = !plan.satisfied;
    return result;
  }

  private async apply(plan: EvictionPlan, candidates: readonly ClipOnDisk[], emergency: boolean): Promise<EvictionReport> {
    const byId = new Map(candidates.map((c) => [c.id, c]));
    const ids = plan.evict.map((e) => e.id);
    const uploads = this.uploads();
    const inflight = uploads ? ids.filter((id) => uploads.isUploading(id)) : [];
    // Synchronously from here to markEvicted: the uploads are cut before the
    // journal says the clips are gone, and the uploader cannot pick one of
    // these clips up in between (it runs only when this code yields).
    const withdrawn = inflight.length > 0 && uploads ? uploads.withdraw(inflight) : Promise.resolve();
    let rec: EvictionRecord;
    try {
      rec = this.journal.markEvicted(ids);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      // SQLite cannot even grow its WAL. Files the cloud already has can go
      // without a record (the next check finds their rows pointing at
      // nothing and marks them); then the record is tried once more.
      const free = plan.evict.filter((e) => !e.lost).map((e) => byId.get(e.id)?.path);
      this.log.warn({ files: free.length }, 'the journal cannot be written (disk full); deleting uploaded clips first');
      for (const path of free) if (path) await removeFile(path);
      this.truncateWal();
      rec = this.journal.markEvicted(ids);
    }
    await withdrawn;
    let stuck = 0;
    for (const id of ids) {
      const path = byId.get(id)?.path;
      if (path && !(await removeFile(path))) stuck += 1;
    }
    // the rows say evicted: the start-up sweep tries these files again
    if (stuck > 0) this.log.error({ files: stuck }, 'evicted segment files could not be deleted');
    const report: EvictionReport = { ...rec, withdrawn: inflight.length, emergency };
    if (rec.lostClips > 0) {
      const total = this.journal.stats();
      this.log.warn(
        {
          lostClips: rec.lostClips,
          lostBytes: rec.lostBytes,
          lostEventClips: rec.lostEventClips,
          withdrawnUploads: inflight.length,
          totalLostClips: total.lost_clips?.n ?? rec.lostClips,
          totalLostBytes: total.lost_bytes?.n ?? rec.lostBytes,
        },
        'footage lost: the ring buffer is full and the cloud does not have these clips yet',
      );
    } else {
      this.log.debug({ clips: rec.evictedClips, bytes: rec.evictedBytes }, 'ring buffer: deleted clips the cloud already has');
    }
    this.emit('evicted', report);
    return report;
  }

  /**
   * Once an hour: forgets the journal rows of clips that left the device
   * more than JOURNAL_HISTORY_MS ago (Journal.pruneHistory), a batch at a
   * time. A failure (a full disk) changes nothing and waits for the next hour.
   */
  pruneJournal(): number {
    const now = this.clock.now();
    if (now - this.prunedAt < PRUNE_EVERY_MS) return 0;
    this.prunedAt = now;
    let total = 0;
    try {
      for (;;) {
        const n = this.journal.pruneHistory(now - JOURNAL_HISTORY_MS);
        total += n;
        if (n === 0 || this.stopping.signal.aborted) break;
      }
    } catch (err) {
      this.log.warn({ code: (err as { code?: string }).code }, 'could not prune the journal history; trying again later');
    }
    if (total > 0) this.log.info({ rows: total }, 'journal: forgot clips that left the device over a week ago');
    return total;
  }

  /** Gives the WAL's disk space back, if it can; a failure here changes nothing. */
  private truncateWal(): void {
    try {
      this.journal.checkpoint();
    } catch (err) {
      this.log.debug({ code: (err as { code?: string }).code }, 'WAL checkpoint failed');
    }
  }

  /** Files whose rows say evicted: a power cut came between the journal write and the delete. */
  private async sweepEvicted(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    let removed = 0;
    for (const name of names) {
      if (!name.endsWith('.mp4')) continue;
      const path = join(this.dir, name);
      const evictedAt = this.journal.evictedAtByPath(path);
      if (typeof evictedAt === 'number' && (await removeFile(path))) removed += 1;
    }
    if (removed > 0) this.log.info({ files: removed }, 'deleted segment files that an interrupted eviction left behind');
  }
}

/** Deletes a file; one already gone is fine. False when it could not be deleted. */
async function removeFile(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}
