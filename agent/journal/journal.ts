import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { ClipKind } from '../../shared/contracts/common.js';

/**
 * The agent's journal: what was recorded, what is uploaded, and the device's
 * credentials. DESIGN: "every state change is durable before anything acts on
 * it".
 *
 * WAL with synchronous=FULL. NORMAL in WAL mode is crash-safe against a
 * process kill but may lose the last commits on power loss, and power loss is
 * the failure this device sees most. A lost "uploaded" mark only costs a
 * re-upload (CLIP_ALREADY_UPLOADED), but a lost clip row orphans a segment and
 * a lost device token bricks uploads until the owner binds the camera again.
 * The price is one WAL fsync per commit: a few per segment, every 10 s, which
 * neither the SD card nor the CPU notices.
 */

export const CLIP_STATES = ['queued', 'uploading', 'uploaded', 'failed', 'lost'] as const;
export type ClipState = (typeof CLIP_STATES)[number];

export interface ClipRow {
  id: string;
  channel: string;
  path: string;
  startMs: number;
  durationMs: number;
  size: number;
  md5: string;
  sha256: string;
  kind: ClipKind;
  state: ClipState;
  attempts: number;
  lastErrorCode: string | null;
  /** a queued clip is not tried again before this time */
  notBeforeMs: number | null;
  createdAt: number;
  uploadedAt: number | null;
  /** the MD5 of each part, for clips large enough to go multipart; null when not hashed in parts */
  parts: ClipParts | null;
}

/** A clip's file hashed in parts of partBytes (the last may be shorter); md5s in base64. */
export interface ClipParts {
  partBytes: number;
  md5s: string[];
}

export interface NewClip {
  id: string;
  channel: string;
  path: string;
  startMs: number;
  durationMs: number;
  size: number;
  md5: string;
  sha256: string;
  kind: ClipKind;
  parts?: ClipParts | null;
}

export interface DeviceCredentials {
  serial: string;
  deviceToken: string;
  mqtt: { username: string; password: string };
  claimedAt: number;
}

export type ClipCounts = Record<ClipState, number>;

/** A journaled clip whose file the device still holds, as the ring buffer sees it. */
export interface ClipOnDisk {
  id: string;
  path: string;
  sizeBytes: number;
  startMs: number;
  kind: ClipKind;
  state: ClipState;
}

/** What markEvicted recorded. */
export interface EvictionRecord {
  evictedClips: number;
  evictedBytes: number;
  /** evicted before the cloud had them: footage lost */
  lostClips: number;
  lostBytes: number;
  lostEventClips: number;
  lostIds: string[];
}

export interface StatEntry {
  n: number;
  info: unknown;
}

export interface QueueSummary {
  /** queued or uploading, by kind */
  waiting: { event: number; continuous: number };
  uploading: number;
  /** refused for good, file still on the device */
  failed: number;
  waitingBytes: number;
  failedBytes: number;
  oldestWaiting: { clipId: string; startMs: number } | null;
  lastUpload: { clipId: string; at: number } | null;
}

interface DbClip {
  id: string;
  channel: string;
  path: string;
  start_ms: number;
  duration_ms: number;
  size: number;
  md5: string;
  sha256: string;
  kind: ClipKind;
  state: ClipState;
  attempts: number;
  last_error_code: string | null;
  not_before_ms: number | null;
  created_at: number;
  uploaded_at: number | null;
  part_bytes?: number | null;
  part_md5s?: string | null;
}

function toRow(r: DbClip): ClipRow {
  return {
    id: r.id,
    channel: r.channel,
    path: r.path,
    startMs: r.start_ms,
    durationMs: r.duration_ms,
    size: r.size,
    md5: r.md5,
    sha256: r.sha256,
    kind: r.kind,
    state: r.state,
    attempts: r.attempts,
    lastErrorCode: r.last_error_code,
    notBeforeMs: r.not_before_ms,
    createdAt: r.created_at,
    uploadedAt: r.uploaded_at,
    // typeof, not !== null: `agent status` reads a journal read-only, unmigrated, when an older agent runs
    parts:
      typeof r.part_bytes === 'number' && typeof r.part_md5s === 'string'
        ? { partBytes: r.part_bytes, md5s: JSON.parse(r.part_md5s) as string[] }
        : null,
  };
}

/** Schema migrations, applied in order; user_version = how many have run. */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE clips (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    path            TEXT NOT NULL UNIQUE,
    start_ms        INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    md5             TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('event', 'continuous')),
    state           TEXT NOT NULL CHECK (state IN ('queued', 'uploading', 'uploaded', 'failed', 'lost')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error_code TEXT,
    not_before_ms   INTEGER,
    created_at      INTEGER NOT NULL,
    uploaded_at     INTEGER
  ) STRICT;
  -- the upload queue: events first, then oldest first
  CREATE INDEX clips_upload_queue ON clips (state, kind, start_ms);
  CREATE TABLE device_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT;
  `,
  // 2: part MD5s of clips large enough for a multipart upload, hashed in the
  // same pass as the whole file so a restart does not read the file again;
  // a JSON array of base64 MD5s
  `
  ALTER TABLE clips ADD COLUMN part_bytes INTEGER;
  ALTER TABLE clips ADD COLUMN part_md5s TEXT;
  `,
  // 3 (issue 4): the ring buffer and `agent status`.
  // evicted_at: when the ring buffer deleted the clip's file. The row stays:
  // an uploaded clip is still in the cloud (state stays 'uploaded'), an
  // unuploaded one becomes 'lost'. A column, not a state: where the footage is
  // in the cloud and whether the device still holds the file are two facts,
  // and SQLite cannot widen the state CHECK without rebuilding the table.
  // clips_on_disk covers SUM(size) of the files still held, read after every
  // segment. agent_stats: durable counters and last events for `agent status`,
  // updated in the same transaction as the change they count.
  `
  ALTER TABLE clips ADD COLUMN evicted_at INTEGER;
  CREATE INDEX clips_on_disk ON clips (size) WHERE evicted_at IS NULL;
  CREATE TABLE agent_stats (
    key  TEXT PRIMARY KEY,
    n    INTEGER NOT NULL DEFAULT 0,
    info TEXT
  ) STRICT;
  `,
];

export const JOURNAL_FILE = 'agent.db';

/** The schema version a journal has once this agent has opened it. */
export const JOURNAL_SCHEMA_VERSION = MIGRATIONS.length;

export interface JournalOpenOptions {
  clock?: Clock;
  /** for `agent status` while the agent runs: no migration, no recovery, no writes */
  readonly?: boolean;
}

export class Journal {
  private readonly db: Database.Database;
  private readonly clock: Clock;
  private readonly statements = new Map<string, Database.Statement>();
  private closed = false;
  readonly path: string;
  /** clips that were 'uploading' when the journal was last closed uncleanly */
  readonly recovered: number;

  private constructor(db: Database.Database, path: string, clock: Clock, recovered: number) {
    this.db = db;
    this.path = path;
    this.clock = clock;
    this.recovered = recovered;
  }

  /** Opens (or creates) `<dataDir>/agent.db`. */
  static open(dataDir: string, opts: JournalOpenOptions = {}): Journal {
    const clock = opts.clock ?? systemClock;
    const path = join(dataDir, JOURNAL_FILE);
    if (opts.readonly) {
      const db = new Database(path, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 2000');
      return new Journal(db, path, clock, 0);
    }
    // the journal holds the device token: the folder and file are the agent's alone
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const db = new Database(path);
    try {
      chmodSync(path, 0o600);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      db.pragma('foreign_keys = ON');
      migrate(db);
      // A crash (or power cut) mid-upload leaves clips marked 'uploading'
      // that nothing is uploading any more: put them back in the queue.
      const recovered = db.prepare(`UPDATE clips SET state = 'queued' WHERE state = 'uploading'`).run().changes;
      return new Journal(db, path, clock, recovered);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** Journals a closed segment as a queued clip. Durable when this returns. */
  addClip(clip: NewClip): ClipRow {
    const { parts, ...row } = clip;
    this.stmt(
        `INSERT INTO clips (id, channel, path, start_ms, duration_ms, size, md5, sha256, kind, state, attempts, created_at, part_bytes, part_md5s)
         VALUES (@id, @channel, @path, @startMs, @durationMs, @size, @md5, @sha256, @kind, 'queued', 0, @createdAt, @partBytes, @partMd5s)`,
      )
      .run({
        ...row,
        createdAt: this.clock.now(),
        partBytes: parts?.partBytes ?? null,
        partMd5s: parts ? JSON.stringify(parts.md5s) : null,
      });
    return this.getClip(clip.id) as ClipRow;
  }

  /** Records the part MD5s of a clip journaled without them (before multipart, or hashed elsewhere). */
  setClipParts(id: string, parts: ClipParts): void {
    const changes = this.stmt(`UPDATE clips SET part_bytes = ?, part_md5s = ? WHERE id = ?`).run(parts.partBytes, JSON.stringify(parts.md5s), id).changes;
    if (changes === 0) throw new Error(`no clip ${id}`);
  }

  getClip(id: string): ClipRow | undefined {
    const r = this.stmt(`SELECT * FROM clips WHERE id = ?`).get(id) as DbClip | undefined;
    return r ? toRow(r) : undefined;
  }

  getClipByPath(path: string): ClipRow | undefined {
    const r = this.stmt(`SELECT * FROM clips WHERE path = ?`).get(path) as DbClip | undefined;
    return r ? toRow(r) : undefined;
  }

  /**
   * The next queued clips to upload, in the order of uploader/upload-order.ts
   * (events newest first, then continuous footage oldest first), leaving out
   * clips waiting out a retry delay and ids already being handled. Two
   * queries, one per kind, so each walks the (state, kind, start_ms) index in
   * its own direction instead of sorting the whole backlog on every turn.
   */
  nextToUpload(limit: number, exclude: readonly string[] = []): ClipRow[] {
    if (limit <= 0) return [];
    const now = this.clock.now();
    const n = limit + exclude.length;
    const events = this.stmt(
      `SELECT * FROM clips
       WHERE state = 'queued' AND kind = 'event' AND (not_before_ms IS NULL OR not_before_ms <= ?)
       ORDER BY start_ms DESC, id DESC
       LIMIT ?`,
    ).all(now, n) as DbClip[];
    const continuous =
      events.length >= n
        ? []
        : (this.stmt(
            `SELECT * FROM clips
             WHERE state = 'queued' AND kind = 'continuous' AND (not_before_ms IS NULL OR not_before_ms <= ?)
             ORDER BY start_ms, id
             LIMIT ?`,
          ).all(now, n) as DbClip[]);
    const skip = new Set(exclude);
    return [...events, ...continuous].filter((r) => !skip.has(r.id)).slice(0, limit).map(toRow);
  }

  /** When the earliest clip waiting out a retry delay becomes due, if any. */
  nextDueAt(): number | undefined {
    const r = this.stmt(`SELECT MIN(not_before_ms) AS t FROM clips WHERE state = 'queued' AND not_before_ms IS NOT NULL`)
      .get() as { t: number | null };
    return r.t ?? undefined;
  }

  markUploading(id: string): void {
    this.transition(id, ['queued'], `state = 'uploading', attempts = attempts + 1`);
  }

  markUploaded(id: string): void {
    this.transition(id, ['queued', 'uploading', 'failed'], `state = 'uploaded', uploaded_at = @now, last_error_code = NULL, not_before_ms = NULL`);
  }

  /** Gives up on a clip: the cloud refuses it for good, or its file is unusable. */
  markFailed(id: string, code: string): void {
    this.transition(id, ['queued', 'uploading'], `state = 'failed', last_error_code = @code`, { code });
  }

  /** The file is gone (deleted, or the card lost it). */
  markLost(id: string, code: string): void {
    this.transition(id, ['queued', 'uploading', 'failed'], `state = 'lost', last_error_code = @code`, { code });
  }

  /** Back in the queue, optionally not before `notBeforeMs`, recording why. */
  markQueued(id: string, opts: { code?: string; notBeforeMs?: number } = {}): void {
    this.transition(id, ['uploading', 'queued', 'failed'], `state = 'queued', last_error_code = COALESCE(@code, last_error_code), not_before_ms = @notBefore`, {
      code: opts.code ?? null,
      notBefore: opts.notBeforeMs ?? null,
    });
  }

  countsByState(): ClipCounts {
    const counts = Object.fromEntries(CLIP_STATES.map((s) => [s, 0])) as ClipCounts;
    const rows = this.stmt(`SELECT state, COUNT(*) AS n FROM clips GROUP BY state`).all() as { state: ClipState; n: number }[];
    for (const r of rows) counts[r.state] = r.n;
    return counts;
  }

  /** The oldest clip still waiting to be uploaded (queued or uploading). */
  oldestUnuploaded(): { id: string; startMs: number } | undefined {
    const r = this.stmt(`SELECT id, start_ms FROM clips WHERE state IN ('queued', 'uploading') ORDER BY start_ms, id LIMIT 1`)
      .get() as { id: string; start_ms: number } | undefined;
    return r ? { id: r.id, startMs: r.start_ms } : undefined;
  }

  getCredentials(): DeviceCredentials | undefined {
    const r = this.stmt(`SELECT value FROM device_state WHERE key = 'credentials'`).get() as { value: string } | undefined;
    return r ? (JSON.parse(r.value) as DeviceCredentials) : undefined;
  }

  setCredentials(creds: DeviceCredentials): void {
    this.stmt(`INSERT INTO device_state (key, value) VALUES ('credentials', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
      .run(JSON.stringify(creds));
  }

  clearCredentials(): void {
    this.stmt(`DELETE FROM device_state WHERE key = 'credentials'`).run();
  }

  // ---- ring buffer and status (issue 4) -------------------------------------

  /** The schema version: `agent status` reads journals of older agents read-only, unmigrated. */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /**
   * Copies the WAL into the database and truncates it to nothing, giving its
   * disk space back: on a full disk the WAL (up to 1000 pages between
   * automatic checkpoints) is often the space a write is missing. Returns
   * false when readers kept it from finishing.
   */
  checkpoint(): boolean {
    const [r] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    return r?.busy === 0;
  }

  /** Every clip, oldest first (tests, diagnostics: not for the agent's loops, the journal grows). */
  listClips(): ClipRow[] {
    return (this.stmt(`SELECT * FROM clips ORDER BY start_ms, id`).all() as DbClip[]).map(toRow);
  }

  /** Bytes of the clip files the device still holds (journaled clips not evicted). */
  onDiskBytes(): number {
    const r = this.stmt(`SELECT COALESCE(SUM(size), 0) AS n FROM clips WHERE evicted_at IS NULL`).get() as { n: number };
    return r.n;
  }

  /**
   * Clips whose files the device still holds, in the ring buffer's eviction
   * order (storage/ring-buffer.ts, evictionOrder: the SQL mirrors its tiers,
   * and a unit test holds the two together), read lazily until their sizes add
   * up to `neededBytes`, or all of them when they do not. planEviction makes
   * the same plan from this prefix as from every clip, and the common case
   * reads one or two rows instead of the whole buffer.
   */
  evictionCandidates(neededBytes: number): ClipOnDisk[] {
    const out: ClipOnDisk[] = [];
    let sum = 0;
    const rows = this.stmt(
      `SELECT id, path, size, start_ms, kind, state FROM clips
       WHERE evicted_at IS NULL
       ORDER BY CASE
         WHEN state = 'lost' THEN 0
         WHEN state = 'uploaded' THEN 1
         WHEN state IN ('queued', 'failed') AND kind = 'continuous' THEN 2
         WHEN state IN ('queued', 'failed') THEN 3
         WHEN kind = 'continuous' THEN 4
         ELSE 5
       END, start_ms, id`,
    ).iterate() as IterableIterator<{ id: string; path: string; size: number; start_ms: number; kind: ClipKind; state: ClipState }>;
    for (const r of rows) {
      out.push({ id: r.id, path: r.path, sizeBytes: r.size, startMs: r.start_ms, kind: r.kind, state: r.state });
      sum += r.size;
      // leaving the loop ends the statement (the iterator's return())
      if (sum >= neededBytes) break;
    }
    return out;
  }

  /**
   * Records, in one transaction, that the ring buffer deletes these clips'
   * files: evicted_at for all, 'lost' (code EVICTED) for those the cloud does
   * not have, and the counters. Durable before the files go: a power cut in
   * between leaves files whose rows say evicted, which the next sweep deletes.
   * Whether a clip is lost is decided here from its state now, not from the
   * plan, so a clip uploaded meanwhile is not counted as lost.
   */
  markEvicted(ids: readonly string[]): EvictionRecord {
    const get = this.stmt(`SELECT state, size, kind, evicted_at FROM clips WHERE id = ?`);
    const lose = this.stmt(
      `UPDATE clips SET state = 'lost', last_error_code = 'EVICTED', not_before_ms = NULL, evicted_at = @now
       WHERE id = @id AND evicted_at IS NULL`,
    );
    const keep = this.stmt(`UPDATE clips SET evicted_at = @now WHERE id = @id AND evicted_at IS NULL`);
    return this.db.transaction(() => {
      const now = this.clock.now();
      const rec: EvictionRecord = { evictedClips: 0, evictedBytes: 0, lostClips: 0, lostBytes: 0, lostEventClips: 0, lostIds: [] };
      for (const id of ids) {
        const r = get.get(id) as { state: ClipState; size: number; kind: ClipKind; evicted_at: number | null } | undefined;
        if (!r || r.evicted_at !== null) continue;
        const losing = r.state === 'queued' || r.state === 'uploading' || r.state === 'failed';
        (losing ? lose : keep).run({ id, now });
        rec.evictedClips += 1;
        rec.evictedBytes += r.size;
        if (losing) {
          rec.lostClips += 1;
          rec.lostBytes += r.size;
          if (r.kind === 'event') rec.lostEventClips += 1;
          rec.lostIds.push(id);
        }
      }
      this.bumpStats({ evicted_clips: rec.evictedClips, evicted_bytes: rec.evictedBytes, lost_clips: rec.lostClips, lost_bytes: rec.lostBytes });
      return rec;
    })();
  }

  /** When the ring buffer deleted the file at `path`, if it did (start-up sweep of files a power cut left behind). */
  evictedAtByPath(path: string): number | null | undefined {
    const r = this.stmt(`SELECT evicted_at FROM clips WHERE path = ?`).get(path) as { evicted_at: number | null } | undefined;
    return r ? r.evicted_at : undefined;
  }

  /**
   * Forgets clips whose files are gone and whose story is over: uploaded clips
   * the ring buffer has deleted, and lost ones, once that happened before
   * `beforeMs`. Without this a camera's journal grows by every segment it ever
   * recorded (8,640 rows a day at 10 s segments), and every query and the SD
   * card pay for it. Kept: anything with a file on the device, anything still
   * to upload or refused, and the newest uploaded clip (`agent status` shows
   * the last upload). The counters in agent_stats are not touched. At most
   * `limit` rows in one short transaction; returns how many went.
   */
  pruneHistory(beforeMs: number, limit = 1000): number {
    return this.stmt(
      `DELETE FROM clips WHERE id IN (
         SELECT id FROM clips
          WHERE state IN ('uploaded', 'lost')
            AND COALESCE(evicted_at, CASE WHEN state = 'lost' THEN created_at END) < @before
            AND id IS NOT (SELECT id FROM clips WHERE state = 'uploaded' ORDER BY uploaded_at DESC, id DESC LIMIT 1)
          LIMIT @limit)`,
    ).run({ before: beforeMs, limit }).changes;
  }

  /**
   * markLost, and the footage counted as lost in the same transaction (the
   * file is gone before upload: deleted by hand, or lost by the card).
   */
  markClipLost(id: string, code: string): void {
    this.db.transaction(() => {
      const r = this.stmt(`SELECT size, state FROM clips WHERE id = ?`).get(id) as { size: number; state: ClipState } | undefined;
      this.markLost(id, code);
      if (r && r.state !== 'lost') this.bumpStats({ lost_clips: 1, lost_bytes: r.size });
    })();
  }

  /** Adds to durable counters (agent_stats), in one statement each, inside the caller's transaction if any. */
  addStats(deltas: Record<string, number>): void {
    this.db.transaction(() => this.bumpStats(deltas))();
  }

  /** Sets a stat's JSON detail (the last error, say). */
  setStatInfo(key: string, info: unknown): void {
    this.stmt(`INSERT INTO agent_stats (key, n, info) VALUES (?, 0, ?) ON CONFLICT (key) DO UPDATE SET info = excluded.info`)
      .run(key, JSON.stringify(info));
  }

  /** Every stat; empty for a journal from before agent_stats. */
  stats(): Record<string, StatEntry> {
    if (this.schemaVersion < 3) return {};
    const out: Record<string, StatEntry> = {};
    for (const r of this.stmt(`SELECT key, n, info FROM agent_stats`).all() as { key: string; n: number; info: string | null }[]) {
      out[r.key] = { n: r.n, info: r.info === null ? null : (JSON.parse(r.info) as unknown) };
    }
    return out;
  }

  /** The queue as `agent status` shows it: what waits, what it weighs, the last upload. */
  queueSummary(): QueueSummary {
    const byState = this.stmt(
      `SELECT state, kind, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes, MIN(start_ms) AS oldest FROM clips
       WHERE state IN ('queued', 'uploading', 'failed') ${this.schemaVersion >= 3 ? 'AND evicted_at IS NULL' : ''}
       GROUP BY state, kind`,
    ).all() as { state: ClipState; kind: ClipKind; n: number; bytes: number; oldest: number }[];
    const s: QueueSummary = {
      waiting: { event: 0, continuous: 0 },
      uploading: 0,
      failed: 0,
      waitingBytes: 0,
      failedBytes: 0,
      oldestWaiting: null,
      lastUpload: null,
    };
    for (const r of byState) {
      if (r.state === 'failed') {
        s.failed += r.n;
        s.failedBytes += r.bytes;
        continue;
      }
      if (r.state === 'uploading') s.uploading += r.n;
      s.waiting[r.kind] += r.n;
      s.waitingBytes += r.bytes;
    }
    const oldest = this.oldestUnuploaded();
    if (oldest) s.oldestWaiting = { clipId: oldest.id, startMs: oldest.startMs };
    const last = this.stmt(`SELECT id, uploaded_at FROM clips WHERE state = 'uploaded' ORDER BY uploaded_at DESC, id DESC LIMIT 1`)
      .get() as { id: string; uploaded_at: number } | undefined;
    if (last) s.lastUpload = { clipId: last.id, at: last.uploaded_at };
    return s;
  }

  private bumpStats(deltas: Record<string, number>): void {
    const add = this.stmt(`INSERT INTO agent_stats (key, n) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n`);
    for (const [key, d] of Object.entries(deltas)) if (d !== 0) add.run(key, d);
  }

  // ---- start-up reconciliation (issue 4, recorder side) ----------------------

  /**
   * Clips the cloud does not have whose file the device must still hold
   * (queued, uploading, failed): start-up looks for each file, and marks the
   * ones that are gone lost. Lazy, for a backlog of days; the caller must not
   * write to the journal until it has finished iterating.
   */
  *clipsExpectingFile(): Generator<{ id: string; path: string; state: ClipState }> {
    const rows = this.stmt(`SELECT id, path, state FROM clips WHERE state IN ('queued', 'uploading', 'failed')`).iterate() as IterableIterator<{
      id: string;
      path: string;
      state: ClipState;
    }>;
    for (const r of rows) yield { id: r.id, path: r.path, state: r.state };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Prepared statements are cached: the queue is read every few seconds for months. */
  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private transition(id: string, from: readonly ClipState[], set: string, params: Record<string, unknown> = {}): void {
    const placeholders = from.map((_, i) => `@from${i}`).join(', ');
    const fromParams = Object.fromEntries(from.map((s, i) => [`from${i}`, s]));
    const changes = this.stmt(`UPDATE clips SET ${set} WHERE id = @id AND state IN (${placeholders})`)
      .run({ id, now: this.clock.now(), ...fromParams, ...params }).changes;
    if (changes === 0) {
      const clip = this.getClip(id);
      throw new Error(clip ? `clip ${id} is ${clip.state}, not ${from.join(' or ')}` : `no clip ${id}`);
    }
  }
}

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new Error(`the journal is from a newer agent (schema ${version}, this agent knows ${MIGRATIONS.length})`);
  }
  for (let v = version; v < MIGRATIONS.length; v += 1) {
    const sql = MIGRATIONS[v] as string;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
