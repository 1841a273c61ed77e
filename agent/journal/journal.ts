import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { AlertType, UploadMode } from '../../shared/contracts/alerts.js';
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
  /** url: the broker, from the claim answer or GET /v1/device/config (absent: not known yet) */
  mqtt: { username: string; password: string; url?: string };
  claimedAt: number;
}

export type ClipCounts = Record<ClipState, number>;

/**
 * The stored SMTP settings (issue 7, DESIGN P4). agent/email/ reads and
 * writes them; the journal only keeps the row. The password stays encrypted.
 */
export interface EmailSettingsRow {
  /** random per `email set`; the AAD of the password's ciphertext */
  id: string;
  /** JSON of the settings, validated by agent/email/settings.ts */
  settings: string;
  /** AES-256-GCM ciphertext of the password (agent/email/crypto.ts) */
  password: Buffer;
  updatedAt: number;
}

/** The email rate limit of one camera: when an alert was last tried and sent. */
export interface EmailSentRow {
  camera: string;
  lastAttemptAt: number;
  lastSentAt: number | null;
  /** 'OK', or the failure's code (EAUTH, ECONNECTION, …) */
  lastCode: string | null;
}

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

/** An alert waiting in the outbox for the broker's PUBACK (issue 7). */
export interface OutboxAlert {
  /** the order of the motions; only grows, never reused after a delete (the send cursor relies on it) */
  seq: number;
  type: AlertType;
  atMs: number;
  clipId: string | null;
  /** not published before this time (a wait for the clip id), unless the clip id is known */
  sendAfter: number;
}

/** The owner unbound the camera (an MQTT unbind command): what `agent status` shows, and what start-up obeys. */
export interface UnboundRecord {
  at: number;
  /** the command's id */
  commandId: string;
  /**
   * SHA-256 of the bind code in the agent's configuration when it was
   * unbound, if any: that code must not claim the device again (it is spent
   * anyway); a different one binds it anew.
   */
  bindCodeSha256: string | null;
}

/** agent_stats keys of the MQTT side */
export const ALERT_STATS = { sent: 'alerts_sent', dropped: 'alerts_dropped' } as const;
/** agent_stats key whose info is the broker connection state (agent/mqtt/connection.ts MqttStatus), written on change */
export const MQTT_STATUS_STAT = 'mqtt';
/** clips dropped from the upload queue by an unbind (never uploaded, never counted as lost footage) */
export const UNBOUND_CLIPS_STAT = 'unbound_clips';
/** clips kept on the device by the upload mode or an unbind, evicted by the ring buffer (not lost footage) */
export const LOCAL_ONLY_EVICTED_STAT = 'local_only_evicted';

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
  // (issue 7, email alerts; DESIGN P4) the SMTP settings, on the device only.
  // One row at most (slot = 1); id is random per `email set` and is the AAD
  // of the password's AES-256-GCM ciphertext, so a ciphertext copied into
  // another row does not decrypt. settings: JSON of host, port, security,
  // user, recipients, from, minIntervalMinutes. `email disable` deletes the
  // row under secure_delete and truncates the WAL. email_alerts_sent: the
  // rate limit per camera, kept apart so it survives a restart (and a
  // disable: it holds times and an SMTP code, nothing of the settings).
  `
  CREATE TABLE email_settings (
    id         TEXT PRIMARY KEY,
    slot       INTEGER NOT NULL UNIQUE CHECK (slot = 1),
    settings   TEXT NOT NULL,
    password   BLOB NOT NULL,
    updated_at INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE email_alerts_sent (
    camera          TEXT PRIMARY KEY,
    last_attempt_at INTEGER NOT NULL,
    last_sent_at    INTEGER,
    last_code       TEXT
  ) STRICT;
  `,
  // (issue 7, the agent's MQTT side) the alert outbox. An alert is written
  // here when the motion arrives, so it survives a broker outage and a
  // restart, and is deleted only after the broker's PUBACK; sent in seq
  // order. Bounded by the agent (alertOutboxMax): when full, the oldest rows
  // go and are counted in agent_stats (alerts_dropped). No serial and no
  // payload are stored: the payload is built from these columns at publish
  // time through the Alert schema, so nothing else can ride along (P6).
  // send_after: not published before (an optional wait for the clip id).
  // seq is AUTOINCREMENT: a plain INTEGER PRIMARY KEY gives a new row the
  // rowid of the newest one just deleted (PUBACKed), i.e. a seq at or behind
  // the outbox's send cursor, and that alert was never sent on the live
  // connection. The outbox needs seqs that only grow.
  `
  CREATE TABLE alert_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    type       TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    clip_id    TEXT,
    send_after INTEGER NOT NULL
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
  /**
   * false for `agent email …` while the agent may run: migrate, but leave
   * clips marked 'uploading' alone (they are the running agent's). Default true.
   */
  recover?: boolean;
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
      const recovered = opts.recover === false ? 0 : db.prepare(`UPDATE clips SET state = 'queued' WHERE state = 'uploading'`).run().changes;
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
   * `eventsOnly` (upload mode 'events', issue 7): continuous footage stays
   * queued on the device and is not handed out.
   */
  nextToUpload(limit: number, exclude: readonly string[] = [], opts: { eventsOnly?: boolean } = {}): ClipRow[] {
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
      events.length >= n || opts.eventsOnly
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

  /** When the earliest clip waiting out a retry delay becomes due, if any (of event clips only, with `eventsOnly`). */
  nextDueAt(opts: { eventsOnly?: boolean } = {}): number | undefined {
    const r = this.stmt(
      `SELECT MIN(not_before_ms) AS t FROM clips WHERE state = 'queued' AND not_before_ms IS NOT NULL${opts.eventsOnly ? ` AND kind = 'event'` : ''}`,
    ).get() as { t: number | null };
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
    // issue 7: footage kept on the device by the owner's choice (continuous
    // clips in upload mode 'events', anything queued while unbound) was never
    // going to the cloud: its eviction ends it as LOCAL_ONLY, not as lost footage
    const localOnly = this.stmt(
      `UPDATE clips SET state = 'lost', last_error_code = 'LOCAL_ONLY', not_before_ms = NULL, evicted_at = @now
       WHERE id = @id AND evicted_at IS NULL`,
    );
    return this.db.transaction(() => {
      const now = this.clock.now();
      const rec: EvictionRecord = { evictedClips: 0, evictedBytes: 0, lostClips: 0, lostBytes: 0, lostEventClips: 0, lostIds: [] };
      const unbound = this.unboundRecord() !== undefined;
      const eventsOnly = this.uploadMode() === 'events';
      let localOnlyClips = 0;
      for (const id of ids) {
        const r = get.get(id) as { state: ClipState; size: number; kind: ClipKind; evicted_at: number | null } | undefined;
        if (!r || r.evicted_at !== null) continue;
        if (r.state === 'queued' && (unbound || (eventsOnly && r.kind === 'continuous'))) {
          localOnly.run({ id, now });
          localOnlyClips += 1;
          rec.evictedClips += 1;
          rec.evictedBytes += r.size;
          continue;
        }
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
      this.bumpStats({
        evicted_clips: rec.evictedClips,
        evicted_bytes: rec.evictedBytes,
        lost_clips: rec.lostClips,
        lost_bytes: rec.lostBytes,
        [LOCAL_ONLY_EVICTED_STAT]: localOnlyClips,
      });
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

  // ---- email alerts (issue 7, DESIGN P4) ------------------------------------

  /** false for a journal of an older agent, read unmigrated by `agent status` */
  get hasEmailSettings(): boolean {
    return this.stmt(`SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'email_settings'`).get() !== undefined;
  }

  getEmailSettings(): EmailSettingsRow | undefined {
    if (!this.hasEmailSettings) return undefined;
    const r = this.stmt(`SELECT id, settings, password, updated_at FROM email_settings WHERE slot = 1`).get() as
      | { id: string; settings: string; password: Buffer; updated_at: number }
      | undefined;
    return r ? { id: r.id, settings: r.settings, password: r.password, updatedAt: r.updated_at } : undefined;
  }

  /**
   * Replaces the settings. Under secure_delete, so the previous row's bytes
   * (an older ciphertext) are zeroed in the page rather than left as free
   * space; the WAL still holds them until the next checkpoint.
   */
  putEmailSettings(row: Omit<EmailSettingsRow, 'updatedAt'>): void {
    this.withSecureDelete(() =>
      this.db.transaction(() => {
        this.stmt(`DELETE FROM email_settings`).run();
        this.stmt(`INSERT INTO email_settings (id, slot, settings, password, updated_at) VALUES (?, 1, ?, ?, ?)`)
          .run(row.id, row.settings, row.password, this.clock.now());
      })(),
    );
  }

  /**
   * `email disable`: deletes the settings row with secure_delete on (SQLite
   * zeroes the deleted cell in its page) and nothing else, then checkpoints
   * with TRUNCATE: the page is copied over its old version in the database
   * file and the WAL, which still holds the frames written when the row was
   * inserted, is cut to zero bytes. `checkpointed` is false when readers kept
   * the checkpoint from finishing within the busy timeout, three times over.
   */
  eraseEmailSettings(): { erased: boolean; checkpointed: boolean } {
    if (!this.hasEmailSettings) return { erased: false, checkpointed: this.checkpoint() };
    const erased = this.withSecureDelete(() => this.stmt(`DELETE FROM email_settings`).run().changes > 0);
    let checkpointed = false;
    for (let i = 0; i < 3 && !checkpointed; i += 1) checkpointed = this.checkpoint();
    return { erased, checkpointed };
  }

  emailSent(camera: string): EmailSentRow | undefined {
    if (!this.hasEmailSettings) return undefined;
    const r = this.stmt(`SELECT camera, last_attempt_at, last_sent_at, last_code FROM email_alerts_sent WHERE camera = ?`).get(camera) as
      | { camera: string; last_attempt_at: number; last_sent_at: number | null; last_code: string | null }
      | undefined;
    return r ? { camera: r.camera, lastAttemptAt: r.last_attempt_at, lastSentAt: r.last_sent_at, lastCode: r.last_code } : undefined;
  }

  /** An alert email is about to be tried: durable first, so a crash mid-send does not lift the rate limit. */
  recordEmailAttempt(camera: string, at: number): void {
    this.stmt(
      `INSERT INTO email_alerts_sent (camera, last_attempt_at) VALUES (?, ?)
       ON CONFLICT (camera) DO UPDATE SET last_attempt_at = excluded.last_attempt_at, last_code = NULL`,
    ).run(camera, at);
  }

  /** How the attempt ended: 'OK' (sent at `at`) or the failure's code. */
  recordEmailResult(camera: string, at: number, code: string): void {
    this.stmt(
      `INSERT INTO email_alerts_sent (camera, last_attempt_at, last_sent_at, last_code) VALUES (@camera, @at, @sent, @code)
       ON CONFLICT (camera) DO UPDATE SET last_code = excluded.last_code,
         last_sent_at = COALESCE(excluded.last_sent_at, email_alerts_sent.last_sent_at)`,
    ).run({ camera, at, sent: code === 'OK' ? at : null, code });
  }

  /** The newest email result over every camera, for `agent status`. */
  lastEmailSent(): EmailSentRow | undefined {
    if (!this.hasEmailSettings) return undefined;
    const r = this.stmt(
      `SELECT camera, last_attempt_at, last_sent_at, last_code FROM email_alerts_sent ORDER BY last_attempt_at DESC LIMIT 1`,
    ).get() as { camera: string; last_attempt_at: number; last_sent_at: number | null; last_code: string | null } | undefined;
    return r ? { camera: r.camera, lastAttemptAt: r.last_attempt_at, lastSentAt: r.last_sent_at, lastCode: r.last_code } : undefined;
  }

  /** The newest clips whose files the device should still hold, newest first (`email test` takes a frame of one). */
  newestClipFiles(limit = 5): { id: string; path: string; durationMs: number }[] {
    return (this.stmt(`SELECT id, path, duration_ms FROM clips WHERE evicted_at IS NULL ORDER BY start_ms DESC, id DESC LIMIT ?`).all(limit) as {
      id: string;
      path: string;
      duration_ms: number;
    }[]).map((r) => ({ id: r.id, path: r.path, durationMs: r.duration_ms }));
  }

  private withSecureDelete<T>(fn: () => T): T {
    const before = this.db.pragma('secure_delete', { simple: true }) as number;
    this.db.pragma('secure_delete = ON');
    try {
      return fn();
    } finally {
      this.db.pragma(`secure_delete = ${before === 2 ? 'FAST' : before ? 'ON' : 'OFF'}`);
    }
  }

  // ---- the MQTT side: alert outbox, upload mode, unbind (issue 7) ---------

  /** false for a journal of an older agent, read unmigrated by `agent status` */
  get hasAlertOutbox(): boolean {
    return this.stmt(`SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'alert_outbox'`).get() !== undefined;
  }

  /**
   * Writes an alert to the outbox; durable when this returns. When the
   * outbox then holds more than `max` alerts the oldest go, counted in
   * alerts_dropped, in the same transaction: after a long outage the
   * freshest alerts are the ones worth delivering.
   */
  addAlert(alert: { type: AlertType; atMs: number; sendAfter: number }, max: number): { seq: number; dropped: number } {
    return this.db.transaction(() => {
      const seq = Number(
        this.stmt(`INSERT INTO alert_outbox (type, at_ms, send_after) VALUES (?, ?, ?)`).run(alert.type, alert.atMs, alert.sendAfter).lastInsertRowid,
      );
      const { n } = this.stmt(`SELECT COUNT(*) AS n FROM alert_outbox`).get() as { n: number };
      let dropped = 0;
      if (n > max) {
        dropped = this.stmt(`DELETE FROM alert_outbox WHERE seq IN (SELECT seq FROM alert_outbox ORDER BY seq LIMIT ?)`).run(n - max).changes;
        this.bumpStats({ [ALERT_STATS.dropped]: dropped });
      }
      return { seq, dropped };
    })();
  }

  /** Up to `limit` alerts after `afterSeq`, in the order they are sent (oldest first). */
  alertsInOrder(limit: number, afterSeq = 0): OutboxAlert[] {
    const rows = this.stmt(`SELECT seq, type, at_ms, clip_id, send_after FROM alert_outbox WHERE seq > ? ORDER BY seq LIMIT ?`).all(afterSeq, limit) as {
      seq: number;
      type: AlertType;
      at_ms: number;
      clip_id: string | null;
      send_after: number;
    }[];
    return rows.map((r) => ({ seq: r.seq, type: r.type, atMs: r.at_ms, clipId: r.clip_id, sendAfter: r.send_after }));
  }

  /**
   * An event clip was journaled: the alerts of motions within [fromMs, toMs]
   * that have no clip id yet get this one. Returns how many.
   */
  attachAlertClip(clipId: string, fromMs: number, toMs: number): number {
    return this.stmt(`UPDATE alert_outbox SET clip_id = ? WHERE clip_id IS NULL AND at_ms BETWEEN ? AND ?`).run(clipId, fromMs, toMs).changes;
  }

  /** The broker acknowledged the alert (PUBACK): it leaves the outbox, counted in alerts_sent. */
  alertDelivered(seq: number): void {
    this.db.transaction(() => {
      if (this.stmt(`DELETE FROM alert_outbox WHERE seq = ?`).run(seq).changes > 0) this.bumpStats({ [ALERT_STATS.sent]: 1 });
    })();
  }

  /** An alert that cannot be sent (it fits no schema): gone, counted in alerts_dropped. */
  discardAlert(seq: number): void {
    this.db.transaction(() => {
      if (this.stmt(`DELETE FROM alert_outbox WHERE seq = ?`).run(seq).changes > 0) this.bumpStats({ [ALERT_STATS.dropped]: 1 });
    })();
  }

  /** Alerts waiting in the outbox; 0 for a journal from before it. */
  alertOutboxSize(): number {
    if (!this.hasAlertOutbox) return 0;
    return (this.stmt(`SELECT COUNT(*) AS n FROM alert_outbox`).get() as { n: number }).n;
  }

  /** 'continuous' (every clip is uploaded) unless the owner chose 'events'. */
  uploadMode(): UploadMode {
    return this.deviceState('upload_mode') === 'events' ? 'events' : 'continuous';
  }

  setUploadMode(mode: UploadMode): void {
    this.setDeviceState('upload_mode', mode);
  }

  /** Set once the owner unbound the camera, until a new bind code claims it again. */
  unboundRecord(): UnboundRecord | undefined {
    const v = this.deviceState('unbound');
    return v === undefined ? undefined : (JSON.parse(v) as UnboundRecord);
  }

  /**
   * The owner unbound the camera: in one transaction the device token and the
   * MQTT credential are wiped, the unbind is recorded, and the alerts still
   * waiting (for the owner who left) are deleted.
   */
  markUnbound(rec: UnboundRecord): void {
    this.db.transaction(() => {
      this.clearCredentials();
      this.setDeviceState('unbound', JSON.stringify(rec));
      if (this.hasAlertOutbox) this.stmt(`DELETE FROM alert_outbox`).run();
    })();
  }

  /**
   * Takes every clip not uploaded yet out of the upload queue for good
   * (state lost with `code`, counted in unbound_clips, not in lost_clips):
   * footage recorded for an owner who unbound the camera never goes to
   * anyone else. The files stay until the ring buffer needs the room. The
   * uploader must be stopped. Returns how many.
   */
  dropUploadQueue(code: string): number {
    return this.db.transaction(() => {
      const n = this.stmt(
        `UPDATE clips SET state = 'lost', last_error_code = ?, not_before_ms = NULL WHERE state IN ('queued', 'uploading', 'failed')`,
      ).run(code).changes;
      this.bumpStats({ [UNBOUND_CLIPS_STAT]: n });
      return n;
    })();
  }

  /**
   * A new bind code claimed the camera after an unbind: in one transaction,
   * what was recorded before is dropped from the queue (dropUploadQueue), the
   * unbind is forgotten, and the new credentials are stored.
   */
  rebind(creds: DeviceCredentials): number {
    return this.db.transaction(() => {
      const dropped = this.dropUploadQueue('UNBOUND');
      this.stmt(`DELETE FROM device_state WHERE key = 'unbound'`).run();
      this.setCredentials(creds);
      return dropped;
    })();
  }

  /**
   * The MQTT credential (its SHA-256, never the credential) for which the
   * broker's session was started clean: a new credential (a claim, a rebind)
   * gets a fresh session before the persistent one.
   */
  mqttSessionKey(): string | undefined {
    return this.deviceState('mqtt_session');
  }

  setMqttSessionKey(sha256: string): void {
    this.setDeviceState('mqtt_session', sha256);
  }

  /** sync-now: clips waiting out a retry delay are due at once. Returns how many. */
  clearRetryDelays(): number {
    return this.stmt(`UPDATE clips SET not_before_ms = NULL WHERE state = 'queued' AND not_before_ms IS NOT NULL`).run().changes;
  }

  private deviceState(key: string): string | undefined {
    return (this.stmt(`SELECT value FROM device_state WHERE key = ?`).get(key) as { value: string } | undefined)?.value;
  }

  private setDeviceState(key: string, value: string): void {
    this.stmt(`INSERT INTO device_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(key, value);
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
