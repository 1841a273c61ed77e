import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal, type ClipRow } from '../../../agent/journal/journal.js';
import { isDiskFull, JOURNAL_HISTORY_MS, resolveQuota, StorageKeeper, type UploadsHandle } from '../../../agent/storage/keeper.js';
import { evictionOrder, type DiskUsage } from '../../../agent/storage/ring-buffer.js';
import { ManualClock } from '../../../shared/clock.js';
import { newClipId } from '../../../shared/ids.js';
import { createLogger } from '../../../shared/log.js';

const T0 = Date.parse('2026-03-01T12:00:00Z');
const KB = 1000;
let dir: string;
let segDir: string;
let clock: ManualClock;
let journal: Journal;
let logLines: { level: number; msg: string; [k: string]: unknown }[];
let disk: DiskUsage;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-keeper-'));
  segDir = join(dir, 'segments', 'main');
  mkdirSync(segDir, { recursive: true });
  clock = new ManualClock(T0);
  journal = Journal.open(dir, { clock });
  logLines = [];
  disk = { freeBytes: 10_000_000_000, totalBytes: 20_000_000_000 };
});

afterEach(() => {
  journal.close();
  rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
/** A clip with a real file of `size` bytes, in the given state. */
function clip(kind: 'event' | 'continuous', state: 'queued' | 'uploading' | 'uploaded' | 'failed' | 'lost', size = 10 * KB, ageMs = 0): ClipRow {
  seq += 1;
  const startMs = T0 - 1_000_000 + seq * 1000 - ageMs;
  const id = newClipId(startMs);
  const path = join(segDir, `${id}.mp4`);
  writeFileSync(path, Buffer.alloc(size, 1));
  journal.addClip({ id, channel: 'main', path, startMs, durationMs: 1000, size, md5: 'x', sha256: 'y', kind });
  if (state !== 'queued') journal.markUploading(id);
  if (state === 'uploaded') journal.markUploaded(id);
  if (state === 'failed') journal.markFailed(id, 'CONTENT_MD5_MISMATCH');
  if (state === 'lost') journal.markLost(id, 'FILE_MISSING');
  return journal.getClip(id) as ClipRow;
}

function keeper(opts: { maxBytes?: number; minFreeBytes?: number; uploads?: UploadsHandle } = {}): StorageKeeper {
  const logger = createLogger({ level: 'debug' }, { write: (s: string) => logLines.push(JSON.parse(s)) });
  return new StorageKeeper({
    journal,
    dir: segDir,
    storage: { maxBytes: opts.maxBytes, minFreeBytes: opts.minFreeBytes ?? 0 },
    logger,
    clock,
    uploads: () => opts.uploads,
    intervalMs: 3_600_000,
    diskUsage: async () => disk,
  });
}

const state = (c: ClipRow) => journal.getClip(c.id)?.state;

describe('ring buffer keeper', () => {
  it('deletes nothing while the segments fit their quota', async () => {
    const a = clip('continuous', 'uploaded');
    const k = keeper({ maxBytes: 100 * KB });
    const r = await k.check();
    expect(r).toMatchObject({ usedBytes: 10 * KB, evictedClips: 0, satisfied: true, maxBytes: 100 * KB });
    expect(existsSync(a.path)).toBe(true);
  });

  it('deletes uploaded clips first, oldest first, keeps them uploaded, and loses nothing', async () => {
    const up1 = clip('event', 'uploaded');
    const q1 = clip('continuous', 'queued');
    const up2 = clip('continuous', 'uploaded');
    const q2 = clip('event', 'queued');
    const k = keeper({ maxBytes: 25 * KB });
    const r = await k.check();
    expect(r).toMatchObject({ evictedClips: 2, lostClips: 0, satisfied: true });
    expect([up1, up2].map((c) => existsSync(c.path))).toEqual([false, false]);
    expect([q1, q2].map((c) => existsSync(c.path))).toEqual([true, true]);
    expect([up1, up2].map(state)).toEqual(['uploaded', 'uploaded']);
    expect(journal.onDiskBytes()).toBe(20 * KB);
    expect(journal.stats()).toMatchObject({ evicted_clips: { n: 2 }, evicted_bytes: { n: 20 * KB } });
    expect(journal.stats().lost_clips).toBeUndefined();
  });

  it('when it must, deletes unuploaded continuous footage before events, marks it lost, counts it and says so', async () => {
    const ev = clip('event', 'queued');
    const c1 = clip('continuous', 'queued');
    const c2 = clip('continuous', 'failed');
    const c3 = clip('continuous', 'queued');
    const k = keeper({ maxBytes: 15 * KB });
    const r = await k.check();
    expect(r).toMatchObject({ evictedClips: 3, lostClips: 3, lostBytes: 30 * KB });
    expect([c1, c2, c3].map(state)).toEqual(['lost', 'lost', 'lost']);
    expect(journal.getClip(c1.id)?.lastErrorCode).toBe('EVICTED');
    expect(existsSync(ev.path)).toBe(true);
    expect(state(ev)).toBe('queued');
    expect(journal.stats()).toMatchObject({ lost_clips: { n: 3 }, lost_bytes: { n: 30 * KB } });
    const warn = logLines.find((l) => l.level === 40 && /footage lost/.test(l.msg));
    expect(warn).toMatchObject({ lostClips: 3, lostBytes: 30 * KB, totalLostClips: 3 });
    // nothing left to delete: the lost clips' rows stay, without files
    expect(journal.onDiskBytes()).toBe(10 * KB);
  });

  it('keeps the free-space reserve too, and derives the quota from the disk when none is set', async () => {
    const a = clip('continuous', 'uploaded');
    clip('continuous', 'uploaded');
    disk = { freeBytes: 95 * KB, totalBytes: 1_000_000 * KB };
    const k = keeper({ minFreeBytes: 100 * KB });
    const r = await k.check();
    expect(r.maxBytes).toBe(resolveQuota({ minFreeBytes: 0 }, disk));
    expect(r.maxBytes).toBe(800_000 * KB);
    expect(r).toMatchObject({ evictedClips: 1, satisfied: true });
    expect(existsSync(a.path)).toBe(false);
  });

  it('cuts the upload of a clip it must delete before recording the loss, and only then deletes the file', async () => {
    const up = clip('continuous', 'uploading');
    const order: string[] = [];
    const uploads: UploadsHandle = {
      isUploading: (id) => id === up.id,
      withdraw: (ids) => {
        // called before the journal says anything
        order.push(`withdraw ${[...ids].join(',')} while ${state(up)}`);
        return new Promise<void>((resolve) =>
          setTimeout(() => {
            order.push(`upload ended, file there: ${existsSync(up.path)}, state ${state(up)}`);
            resolve();
          }, 20),
        );
      },
    };
    const k = keeper({ maxBytes: 5 * KB, uploads });
    const r = await k.check();
    expect(order).toEqual([`withdraw ${up.id} while uploading`, 'upload ended, file there: true, state lost']);
    expect(r).toMatchObject({ lostClips: 1 });
    expect(existsSync(up.path)).toBe(false);
  });

  it('frees an emergency margin when a write fails with ENOSPC, and runs the write again', async () => {
    const a = clip('continuous', 'uploaded', 10 * 1024 * 1024);
    const b = clip('continuous', 'uploaded', 10 * 1024 * 1024);
    const k = keeper({ maxBytes: 1024 ** 3 });
    let calls = 0;
    const result = await k.withSpace('journaling a clip', () => {
      calls += 1;
      if (calls === 1) throw Object.assign(new Error('disk full'), { code: 'SQLITE_FULL' });
      return 'written';
    });
    expect(result).toBe('written');
    expect(calls).toBe(2);
    // 16 MiB at least: both 10 MiB clips go, uploaded ones, so nothing is lost
    expect([existsSync(a.path), existsSync(b.path)]).toEqual([false, false]);
    expect(journal.stats().lost_clips).toBeUndefined();
    expect(logLines.some((l) => l.level === 40 && /disk is full/.test(l.msg))).toBe(true);
  });

  it('gives up after two rounds of making room, and leaves other errors alone', async () => {
    const k = keeper({ maxBytes: 1024 ** 3 });
    let calls = 0;
    const full = () => {
      calls += 1;
      throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
    };
    await expect(k.withSpace('hashing a segment', full)).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(calls).toBe(3);
    calls = 0;
    await expect(
      k.withSpace('x', () => {
        calls += 1;
        throw Object.assign(new Error('gone'), { code: 'ENOENT' });
      }),
    ).rejects.toMatchObject({ code: 'ENOENT' });
    expect(calls).toBe(1);
    expect(isDiskFull({ code: 'EDQUOT' })).toBe(true);
  });

  it('at start, deletes files whose clips the journal already says are evicted (a power cut in between)', async () => {
    const a = clip('continuous', 'uploaded');
    const b = clip('continuous', 'queued');
    journal.markEvicted([a.id]);
    expect(existsSync(a.path)).toBe(true);
    const k = keeper({ maxBytes: 1024 ** 3 });
    await k.start();
    await k.stop();
    expect(existsSync(a.path)).toBe(false);
    expect(existsSync(b.path)).toBe(true);
  });

  it('checks soon after a segment closes, and stops cleanly', async () => {
    clip('continuous', 'uploaded');
    const k = keeper({ maxBytes: 5 * KB });
    const evicted: unknown[] = [];
    k.on('evicted', (e) => evicted.push(e));
    await k.start();
    expect(evicted).toHaveLength(1);
    clip('continuous', 'uploaded');
    k.segmentClosed();
    for (let i = 0; i < 50 && evicted.length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(evicted).toHaveLength(2);
    await k.stop();
    await k.stop();
  });
});

describe('journal, ring buffer side', () => {
  it('lists clips on disk in the exact order of evictionOrder, reading only as many as the bytes needed', () => {
    const states = ['queued', 'uploading', 'uploaded', 'failed', 'lost'] as const;
    let r = 3;
    const rand = (n: number): number => {
      r = (r * 48_271) % 2_147_483_647;
      return r % n;
    };
    for (let i = 0; i < 60; i += 1) clip(rand(2) ? 'event' : 'continuous', states[rand(5)] as (typeof states)[number], (1 + rand(5)) * KB, rand(4) * 1000);
    const all = journal.evictionCandidates(Infinity);
    expect(all).toHaveLength(60);
    expect(all.map((c) => c.id)).toEqual(evictionOrder(all).map((c) => c.id));
    const some = journal.evictionCandidates(12 * KB);
    expect(some.reduce((n, c) => n + c.sizeBytes, 0)).toBeGreaterThanOrEqual(12 * KB);
    expect(some.map((c) => c.id)).toEqual(all.slice(0, some.length).map((c) => c.id));
  });

  it('counts a clip as lost once, and an uploaded one never', () => {
    const q = clip('continuous', 'queued');
    const u = clip('continuous', 'uploaded');
    const rec = journal.markEvicted([q.id, u.id, q.id]);
    expect(rec).toMatchObject({ evictedClips: 2, lostClips: 1, lostIds: [q.id] });
    expect(journal.markEvicted([q.id]).evictedClips).toBe(0);
    const gone = clip('event', 'queued');
    journal.markClipLost(gone.id, 'FILE_MISSING');
    expect(journal.stats()).toMatchObject({ lost_clips: { n: 2 }, lost_bytes: { n: 20 * KB }, evicted_clips: { n: 2 } });
  });

  it('sums up the queue for status: waiting by kind, bytes at risk, the oldest clip and the last upload', () => {
    const old = clip('continuous', 'queued', 5 * KB, 50_000);
    clip('event', 'uploading', 7 * KB);
    clip('continuous', 'failed', 3 * KB);
    clock.advance(1000);
    const u = clip('continuous', 'uploaded');
    expect(journal.queueSummary()).toEqual({
      waiting: { event: 1, continuous: 1 },
      uploading: 1,
      failed: 1,
      waitingBytes: 12 * KB,
      failedBytes: 3 * KB,
      oldestWaiting: { clipId: old.id, startMs: old.startMs },
      lastUpload: { clipId: u.id, at: T0 + 1000 },
    });
  });
});

describe('journal history kept by the keeper', () => {
  it('prunes rows of clips evicted over a week ago, at most once an hour, and logs how many', async () => {
    const a = clip('continuous', 'uploaded');
    const b = clip('continuous', 'uploaded');
    const newest = clip('continuous', 'uploaded');
    await keeper({ maxBytes: 1 }).check(); // everything uploaded goes
    expect([a, b, newest].map((c) => journal.evictedAtByPath(c.path))).toEqual([T0, T0, T0]);
    const k = keeper();
    clock.advance(JOURNAL_HISTORY_MS - 1);
    // evicted a millisecond short of a week ago: kept
    expect(k.pruneJournal()).toBe(0);
    clock.advance(3_600_000);
    expect(k.pruneJournal()).toBe(2);
    expect([a, b].map((c) => journal.getClip(c.id))).toEqual([undefined, undefined]);
    // the newest upload stays, for `agent status`
    expect(journal.listClips().map((c) => c.id)).toEqual([newest.id]);
    expect(logLines.some((l) => l.msg.includes('journal: forgot') && l.rows === 2)).toBe(true);

    // one more old, evicted clip (made with the clock set back, uploaded before `newest`)
    const now = clock.now();
    clock.set(T0 - 1000);
    const old = clip('continuous', 'uploaded');
    await keeper({ maxBytes: 1 }).check();
    clock.set(now + 10 * 60_000);
    // ten minutes after the last prune: not yet
    expect(k.pruneJournal()).toBe(0);
    expect(journal.getClip(old.id)).toBeDefined();
    clock.advance(3_600_000);
    expect(k.pruneJournal()).toBe(1);
    expect(journal.getClip(old.id)).toBeUndefined();
  });
});
