import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal, JOURNAL_SCHEMA_VERSION, type NewClip } from '../../../agent/journal/journal.js';
import { ManualClock } from '../../../shared/clock.js';
import { newClipId } from '../../../shared/ids.js';

const T0 = Date.parse('2026-03-01T12:00:00Z');
let dir: string;
let clock: ManualClock;

function clip(startMs: number, kind: 'event' | 'continuous' = 'continuous', name?: string): NewClip {
  const id = newClipId(startMs);
  return {
    id,
    channel: 'main',
    path: join(dir, 'segments', name ?? `${id}.mp4`),
    startMs,
    durationMs: 10_000,
    size: 1234,
    md5: 'AAAAAAAAAAAAAAAAAAAAAA==',
    sha256: 'a'.repeat(64),
    kind,
  };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-journal-'));
  clock = new ManualClock(T0);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('journal', () => {
  it('hands out event clips first, newest first, then continuous footage oldest first', () => {
    const j = Journal.open(dir, { clock });
    const oldC = j.addClip(clip(T0 - 50_000));
    const newC = j.addClip(clip(T0 - 10_000));
    const newE = j.addClip(clip(T0 - 5_000, 'event'));
    const oldE = j.addClip(clip(T0 - 40_000, 'event'));
    expect(j.nextToUpload(10).map((c) => c.id)).toEqual([newE.id, oldE.id, oldC.id, newC.id]);
    expect(j.nextToUpload(2).map((c) => c.id)).toEqual([newE.id, oldE.id]);
    expect(j.nextToUpload(2, [newE.id]).map((c) => c.id)).toEqual([oldE.id, oldC.id]);
    j.close();
  });

  it('moves a clip through uploading to uploaded, counting attempts', () => {
    const j = Journal.open(dir, { clock });
    const c = j.addClip(clip(T0 - 1000));
    expect(j.getClip(c.id)).toMatchObject({ state: 'queued', attempts: 0, createdAt: T0 });
    j.markUploading(c.id);
    expect(j.getClip(c.id)).toMatchObject({ state: 'uploading', attempts: 1 });
    expect(j.nextToUpload(10)).toEqual([]);
    clock.advance(5000);
    j.markUploaded(c.id);
    expect(j.getClip(c.id)).toMatchObject({ state: 'uploaded', uploadedAt: T0 + 5000, lastErrorCode: null });
    expect(() => j.markUploading(c.id)).toThrow(/uploaded/);
    j.close();
  });

  it('records why a clip failed or went back to the queue, and holds a delayed clip back until due', () => {
    const j = Journal.open(dir, { clock });
    const a = j.addClip(clip(T0 - 2000));
    const b = j.addClip(clip(T0 - 1000));
    j.markUploading(a.id);
    j.markFailed(a.id, 'CLIP_START_OUT_OF_RANGE');
    expect(j.getClip(a.id)).toMatchObject({ state: 'failed', lastErrorCode: 'CLIP_START_OUT_OF_RANGE' });
    j.markUploading(b.id);
    j.markQueued(b.id, { code: 'HTTP_503', notBeforeMs: T0 + 60_000 });
    expect(j.getClip(b.id)).toMatchObject({ state: 'queued', lastErrorCode: 'HTTP_503', notBeforeMs: T0 + 60_000 });
    expect(j.nextToUpload(10)).toEqual([]);
    expect(j.nextDueAt()).toBe(T0 + 60_000);
    clock.advance(60_000);
    expect(j.nextToUpload(10).map((c) => c.id)).toEqual([b.id]);
    j.markLost(b.id, 'FILE_MISSING');
    expect(j.countsByState()).toEqual({ queued: 0, uploading: 0, uploaded: 0, failed: 1, lost: 1 });
    j.close();
  });

  it('puts clips a crash left uploading back in the queue when it reopens', () => {
    const path = join(dir, 'agent.db');
    const j = Journal.open(dir, { clock });
    const a = j.addClip(clip(T0 - 2000));
    const b = j.addClip(clip(T0 - 1000));
    j.markUploading(a.id);
    j.markUploading(b.id);
    j.markUploaded(b.id);
    // no close(): a crash. A second connection sees what was committed.
    const raw = new Database(path, { readonly: true });
    expect((raw.prepare(`SELECT state FROM clips WHERE id = ?`).get(a.id) as { state: string }).state).toBe('uploading');
    raw.close();
    const reopened = Journal.open(dir, { clock });
    expect(reopened.recovered).toBe(1);
    expect(reopened.getClip(a.id)).toMatchObject({ state: 'queued', attempts: 1 });
    expect(reopened.getClip(b.id)?.state).toBe('uploaded');
    reopened.close();
    j.close();
  });

  it('reports the queue depth and the oldest clip still waiting', () => {
    const j = Journal.open(dir, { clock });
    expect(j.oldestUnuploaded()).toBeUndefined();
    const a = j.addClip(clip(T0 - 90_000));
    const b = j.addClip(clip(T0 - 30_000, 'event'));
    j.markUploading(a.id);
    expect(j.oldestUnuploaded()).toEqual({ id: a.id, startMs: T0 - 90_000 });
    j.markUploaded(a.id);
    expect(j.oldestUnuploaded()).toEqual({ id: b.id, startMs: T0 - 30_000 });
    expect(j.countsByState()).toMatchObject({ queued: 1, uploaded: 1 });
    j.close();
  });

  it('keeps the device credentials, in a file only its owner can read', () => {
    const j = Journal.open(dir, { clock });
    expect(j.getCredentials()).toBeUndefined();
    const creds = { serial: 'SIM00000001', deviceToken: 'tok', mqtt: { username: 'SIM00000001', password: 'pw' }, claimedAt: T0 };
    j.setCredentials(creds);
    j.close();
    const again = Journal.open(dir, { clock });
    expect(again.getCredentials()).toEqual(creds);
    again.close();
    expect(statSync(join(dir, 'agent.db')).mode & 0o077).toBe(0);
  });

  it('refuses a second row for the same segment file', () => {
    const j = Journal.open(dir, { clock });
    j.addClip(clip(T0, 'continuous', 'a.mp4'));
    expect(() => j.addClip(clip(T0 + 1, 'continuous', 'a.mp4'))).toThrow(/UNIQUE/);
    j.close();
  });

  it('opens read-only for status without touching clips in flight', () => {
    const j = Journal.open(dir, { clock });
    const a = j.addClip(clip(T0 - 1000));
    j.markUploading(a.id);
    const ro = Journal.open(dir, { readonly: true });
    expect(ro.countsByState().uploading).toBe(1);
    expect(() => ro.markUploaded(a.id)).toThrow();
    ro.close();
    expect(j.getClip(a.id)?.state).toBe('uploading');
    j.close();
  });

  it('keeps the part MD5s of a clip hashed in parts, and records them later for one hashed without', () => {
    const j = Journal.open(dir, { clock });
    const parts = { partBytes: 5 * 1024 * 1024, md5s: ['1B2M2Y8AsgTpgAmY7PhCfg==', '4JyAxC/aVfnZkuWcprMwfQ=='] };
    const withParts = j.addClip({ ...clip(T0 - 20_000), parts });
    const without = j.addClip(clip(T0 - 10_000));
    expect(withParts.parts).toEqual(parts);
    expect(without.parts).toBeNull();
    j.setClipParts(without.id, parts);
    j.close();
    const again = Journal.open(dir, { clock });
    expect(again.getClip(without.id)?.parts).toEqual(parts);
    expect(again.nextToUpload(10).map((c) => c.parts)).toEqual([parts, parts]);
    again.close();
  });

  it('opens a journal from before multipart, keeping its clips, which have no part MD5s yet', () => {
    const raw = new Database(join(dir, 'agent.db'));
    raw.exec(`
      CREATE TABLE clips (
        id TEXT PRIMARY KEY, channel TEXT NOT NULL, path TEXT NOT NULL UNIQUE, start_ms INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL, size INTEGER NOT NULL, md5 TEXT NOT NULL, sha256 TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('event', 'continuous')),
        state TEXT NOT NULL CHECK (state IN ('queued', 'uploading', 'uploaded', 'failed', 'lost')),
        attempts INTEGER NOT NULL DEFAULT 0, last_error_code TEXT, not_before_ms INTEGER,
        created_at INTEGER NOT NULL, uploaded_at INTEGER
      ) STRICT;
      CREATE INDEX clips_upload_queue ON clips (state, kind, start_ms);
      CREATE TABLE device_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
    `);
    raw.prepare(`INSERT INTO clips (id, channel, path, start_ms, duration_ms, size, md5, sha256, kind, state, created_at)
      VALUES ('01J00000000000000000000000', 'main', '/x.mp4', 1, 1, 9000000, 'AAAAAAAAAAAAAAAAAAAAAA==', ?, 'event', 'queued', 1)`).run('a'.repeat(64));
    raw.pragma('user_version = 1');
    raw.close();
    const j = Journal.open(dir, { clock });
    expect(j.getClip('01J00000000000000000000000')).toMatchObject({ size: 9000000, state: 'queued', parts: null });
    j.close();
  });

  it('uses WAL with full sync and records its schema version', () => {
    const j = Journal.open(dir, { clock });
    j.close();
    const raw = new Database(join(dir, 'agent.db'));
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBe(JOURNAL_SCHEMA_VERSION);
    raw.close();
  });
});

describe('journal history', () => {
  it('forgets settled clips whose files left the device before the cutoff, and keeps everything else', () => {
    const j = Journal.open(dir, { clock });
    const DAY = 86_400_000;
    const up = (startMs: number) => {
      const c = j.addClip(clip(startMs));
      j.markUploading(c.id);
      j.markUploaded(c.id);
      return c;
    };
    const oldUploadedEvicted = up(T0 - 30 * DAY);
    const oldUploadedKept = up(T0 - 29 * DAY); // uploaded, file still on the device
    const oldLostEvicted = j.addClip(clip(T0 - 28 * DAY)); // evicted before upload: lost
    const queued = j.addClip(clip(T0 - 27 * DAY)); // still to upload
    const failed = j.addClip(clip(T0 - 26 * DAY));
    j.markFailed(failed.id, 'CONTENT_MD5_MISMATCH');
    const vanished = j.addClip(clip(T0 - 25 * DAY));
    j.markClipLost(vanished.id, 'FILE_MISSING'); // lost without eviction: created_at counts
    j.markEvicted([oldUploadedEvicted.id, oldLostEvicted.id]);
    clock.advance(20 * DAY);
    const recentEvicted = up(T0 - DAY);
    j.markEvicted([recentEvicted.id]);
    const newestEvicted = up(T0);
    j.markEvicted([newestEvicted.id]);
    const statsBefore = j.stats();

    // a cutoff after every eviction: only the states decide; the newest uploaded clip is always kept
    expect(j.pruneHistory(clock.now() + DAY)).toBe(4);
    const left = new Set(j.listClips().map((c) => c.id));
    for (const c of [oldUploadedKept, queued, failed, newestEvicted]) expect(left.has(c.id)).toBe(true);
    for (const c of [oldUploadedEvicted, oldLostEvicted, vanished, recentEvicted]) expect(left.has(c.id)).toBe(false);
    expect(j.queueSummary().lastUpload?.clipId).toBe(newestEvicted.id);
    // the lost-footage counters stay
    expect(j.stats()).toEqual(statsBefore);
    expect(j.pruneHistory(clock.now() + DAY)).toBe(0);
    j.close();
  });

  it('goes in batches of at most `limit` rows', () => {
    const j = Journal.open(dir, { clock });
    const ids = Array.from({ length: 5 }, (_, i) => j.addClip(clip(T0 - 100_000 + i * 1000)).id);
    for (const id of ids) j.markClipLost(id, 'FILE_MISSING');
    expect(j.pruneHistory(T0 + 1, 2)).toBe(2);
    expect(j.pruneHistory(T0 + 1, 2)).toBe(2);
    expect(j.pruneHistory(T0 + 1, 2)).toBe(1);
    expect(j.listClips()).toEqual([]);
    j.close();
  });
});
