import Database from 'better-sqlite3';
import { SQLITE_MIGRATIONS } from './sqlite-migrations.js';
import {
  clipValues,
  toAccount,
  toClip,
  toDevice,
  toExperienceEvent,
  toNotification,
  toSecurityLog,
  toSession,
  toShare,
  toUpload,
  toWebhook,
  uploadValues,
  type AccountRecord,
  type ClipRecord,
  type DeviceRecord,
  type ExperienceEventRecord,
  type NotificationRecord,
  type SecurityLogRecord,
  type SessionRecord,
  type ShareRecord,
  type UploadRecord,
  type WebhookRecord,
} from './records.js';
import type {
  AccountRow,
  BindCodeRow,
  ClaimDeviceInput,
  ClaimDeviceOutcome,
  ClipFilter,
  ClipRow,
  DeviceRow,
  NotificationRow,
  WebhookRow,
  EmailCodePurpose,
  EmailCodeRow,
  RegisterAccountOutcome,
  PutShareOutcome,
  SessionRow,
  SharedDeviceRow,
  ShareRow,
  Store,
  UploadRow,
} from './types.js';
import { checkJobRun, type ClipSummary, type ExpiredClip, type JobRunRow } from './types.js';
import type {
  BeginCancellationOutcome,
  ConsentPurpose,
  ConsentRow,
  CredentialTombstones,
  ExperienceEventRow,
  PurgeAccountInput,
  SecurityLogRow,
} from './types.js';

/** a share is in force only while its device is bound to the account that granted it */
const SHARE_IN_FORCE = 'JOIN devices d ON d.serial = s.serial AND d.account_id = s.granted_by';
const NOTIFICATION_COLS = 'account_id, id, serial, type, at_ms, clip_id, received_at';

/** A refusal throws out of the claim transaction, so the bind code is not spent. */
class ClaimRefused extends Error {
  constructor(readonly outcome: ClaimDeviceOutcome) {
    super(outcome.status);
  }
}

export interface SqliteStoreOptions {
  /** a file path, or ':memory:' for tests */
  path: string;
}

/**
 * The embedded metadata store. better-sqlite3 is synchronous; the methods are
 * async only to keep the Store interface the PostgreSQL store shares. WAL lets
 * readers run beside the one writer; synchronous=FULL because a completed
 * upload is a promise to the device that may then delete its copy.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private closed = false;

  constructor(opts: SqliteStoreOptions) {
    this.db = new Database(opts.path);
    if (opts.path !== ':memory:') this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    // A checkpoint fsyncs the database file; at the default 1000 pages one ran
    // every ~200 presigns, on the request path. 10000 pages (a WAL of up to
    // ~40 MB) makes them ten times rarer.
    this.db.pragma('wal_autocheckpoint = 10000');
    this.migrate();
  }

  /** the schema version this file is at */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const current = this.schemaVersion;
    if (current > SQLITE_MIGRATIONS.length) {
      throw new Error(
        `the database schema (version ${current}) is newer than this program knows (${SQLITE_MIGRATIONS.length}); upgrade camvault`,
      );
    }
    for (let v = current; v < SQLITE_MIGRATIONS.length; v++) {
      const sql = SQLITE_MIGRATIONS[v] as string;
      this.db.transaction(() => {
        this.db.exec(sql);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  /**
   * Prepared statements, cached by their SQL: preparing on every call was 11%
   * of the presign route's time (bench/presign).
   */
  private readonly statements = new Map<string, Database.Statement>();

  private stmt(sql: string): Database.Statement {
    if (this.closed) throw new Error('the store is closed');
    let s = this.statements.get(sql);
    if (!s) {
      s = this.live.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private get live(): Database.Database {
    if (this.closed) throw new Error('the store is closed');
    return this.db;
  }

  async createAccount(row: AccountRow): Promise<boolean> {
    const info = this.stmt(
        `INSERT INTO accounts (id, email, password_hash, plan, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (email) DO NOTHING`,
      )
      .run(row.id, row.email, row.passwordHash, row.plan, row.createdAt);
    return info.changes === 1;
  }

  async getAccountById(id: string): Promise<AccountRow | null> {
    const r = this.stmt('SELECT * FROM accounts WHERE id = ?').get(id) as AccountRecord | undefined;
    return r ? toAccount(r) : null;
  }

  async getAccountByEmail(email: string): Promise<AccountRow | null> {
    const r = this.stmt('SELECT * FROM accounts WHERE email = ?').get(email) as AccountRecord | undefined;
    return r ? toAccount(r) : null;
  }

  async setAccountPlan(accountId: string, plan: string | null): Promise<void> {
    this.stmt('UPDATE accounts SET plan = ? WHERE id = ?').run(plan, accountId);
  }

  async registerAccount(account: AccountRow, code: EmailCodeRow): Promise<RegisterAccountOutcome> {
    const db = this.live;
    return db
      .transaction((): RegisterAccountOutcome => {
        this.putEmailCodeSync(code);
        const inserted = this.stmt(
          `INSERT INTO accounts (id, email, password_hash, plan, created_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (email) DO NOTHING`,
        ).run(account.id, account.email, account.passwordHash, account.plan, account.createdAt);
        if (inserted.changes === 1) return { status: 'created', accountId: account.id };
        const existing = this.stmt('SELECT id, email_verified_at FROM accounts WHERE email = ?').get(account.email) as {
          id: string;
          email_verified_at: number | null;
        };
        if (existing.email_verified_at !== null) return { status: 'verified', accountId: existing.id };
        this.stmt('UPDATE accounts SET password_hash = ? WHERE id = ?').run(account.passwordHash, existing.id);
        return { status: 'pending', accountId: existing.id };
      })
      .immediate();
  }

  async markEmailVerified(accountId: string, nowMs: number): Promise<boolean> {
    return this.stmt('UPDATE accounts SET email_verified_at = ? WHERE id = ? AND email_verified_at IS NULL').run(nowMs, accountId)
      .changes === 1;
  }

  async changePassword(accountId: string, passwordHash: string, keepSessionTokenHash: string | null): Promise<number> {
    const db = this.live;
    return db
      .transaction((): number => {
        if (this.stmt('UPDATE accounts SET password_hash = ? WHERE id = ?').run(passwordHash, accountId).changes === 0) return 0;
        return this.stmt('DELETE FROM sessions WHERE account_id = ? AND token_hash IS NOT ?').run(accountId, keepSessionTokenHash)
          .changes;
      })
      .immediate();
  }

  private putEmailCodeSync(row: EmailCodeRow): void {
    this.stmt('DELETE FROM email_codes WHERE expires_at <= ?').run(row.createdAt);
    this.stmt(
      `INSERT INTO email_codes (email_hash, purpose, code_hash, attempts, created_at, expires_at) VALUES (?, ?, ?, 0, ?, ?)
       ON CONFLICT (email_hash, purpose) DO UPDATE SET code_hash = excluded.code_hash, attempts = 0,
         created_at = excluded.created_at, expires_at = excluded.expires_at`,
    ).run(row.emailHash, row.purpose, row.codeHash, row.createdAt, row.expiresAt);
  }

  async putEmailCode(row: EmailCodeRow): Promise<void> {
    this.live.transaction(() => this.putEmailCodeSync(row))();
  }

  async useEmailCode(
    emailHash: string,
    purpose: EmailCodePurpose,
    codeHash: string,
    nowMs: number,
    maxAttempts: number,
  ): Promise<boolean> {
    const db = this.live;
    return db
      .transaction((): boolean => {
        const live = this.stmt(
          'SELECT code_hash FROM email_codes WHERE email_hash = ? AND purpose = ? AND expires_at > ? AND attempts < ?',
        ).get(emailHash, purpose, nowMs, maxAttempts) as { code_hash: string } | undefined;
        if (!live) return false;
        if (live.code_hash === codeHash) {
          this.stmt('DELETE FROM email_codes WHERE email_hash = ? AND purpose = ?').run(emailHash, purpose);
          return true;
        }
        this.stmt('UPDATE email_codes SET attempts = attempts + 1 WHERE email_hash = ? AND purpose = ?').run(emailHash, purpose);
        return false;
      })
      .immediate();
  }

  async choosePlan(accountId: string, plan: string, retentionMs: number, nowMs: number): Promise<number> {
    const db = this.live;
    return db
      .transaction((): number => {
        this.stmt('UPDATE accounts SET plan = ?, plan_lapsed_at = NULL WHERE id = ?').run(plan, accountId);
        // PostgreSQL: LEAST(start_ms, uploaded_at)
        return this.stmt(
          'UPDATE clips SET expires_at = MIN(start_ms, uploaded_at) + ? WHERE account_id = ? AND expires_at > ?',
        ).run(retentionMs, accountId, nowMs).changes;
      })
      .immediate();
  }

  async lapsePlan(accountId: string, nowMs: number, graceEndsAtMs: number): Promise<number> {
    const db = this.live;
    return db
      .transaction((): number => {
        const lapsed = this.stmt('UPDATE accounts SET plan = NULL, plan_lapsed_at = ? WHERE id = ? AND plan IS NOT NULL').run(
          nowMs,
          accountId,
        );
        if (lapsed.changes === 0) return 0;
        return this.stmt('UPDATE clips SET expires_at = MIN(expires_at, ?) WHERE account_id = ? AND expires_at > ?').run(
          graceEndsAtMs,
          accountId,
          nowMs,
        ).changes;
      })
      .immediate();
  }

  async hitRateLimit(key: string, windowMs: number, nowMs: number): Promise<number> {
    const windowStart = nowMs - (((nowMs % windowMs) + windowMs) % windowMs);
    // A counter is no promise to anyone: like the pending-upload row, it skips
    // the fsync (a power cut forgets a few hits of the current window).
    return this.relaxed(() =>
      this.live.transaction((): number => {
        this.stmt('DELETE FROM rate_limits WHERE expires_at <= ?').run(nowMs);
        const r = this.stmt(
          `INSERT INTO rate_limits (key, window_start, count, expires_at) VALUES (?, ?, 1, ?)
           ON CONFLICT (key) DO UPDATE SET
             count = CASE WHEN rate_limits.window_start >= excluded.window_start THEN rate_limits.count + 1 ELSE 1 END,
             expires_at = MAX(rate_limits.expires_at, excluded.expires_at),
             window_start = MAX(rate_limits.window_start, excluded.window_start)
           RETURNING count`,
        ).get(key, windowStart, windowStart + windowMs) as { count: number };
        return r.count;
      })(),
    );
  }

  async createSession(row: SessionRow): Promise<void> {
    this.stmt('INSERT INTO sessions (token_hash, account_id, created_at, expires_at) VALUES (?, ?, ?, ?)')
      .run(row.tokenHash, row.accountId, row.createdAt, row.expiresAt);
  }

  async getSession(tokenHash: string, nowMs: number): Promise<SessionRow | null> {
    // with the account's cancellation: a session that slipped in while it began is refused all the same
    const r = this.stmt(
      `SELECT s.*, a.cancelled_at AS account_cancelled_at FROM sessions s JOIN accounts a ON a.id = s.account_id
       WHERE s.token_hash = ? AND s.expires_at > ?`,
    ).get(tokenHash, nowMs) as (SessionRecord & { account_cancelled_at: number | null }) | undefined;
    return r ? { ...toSession(r), accountCancelledAt: r.account_cancelled_at } : null;
  }

  async deleteSession(tokenHash: string): Promise<void> {
    this.stmt('DELETE FROM sessions WHERE token_hash = ?').run(tokenHash);
  }

  async createBindCode(row: BindCodeRow): Promise<void> {
    this.stmt('INSERT INTO bind_codes (code_hash, account_id, created_at, expires_at) VALUES (?, ?, ?, ?)')
      .run(row.codeHash, row.accountId, row.createdAt, row.expiresAt);
  }

  private consumeBindCodeSync(codeHash: string, nowMs: number): string | null {
    // DELETE … RETURNING: the row is gone in the same statement that reads it, so
    // two claims racing with one code cannot both win (PostgreSQL: same SQL).
    const r = this.stmt('DELETE FROM bind_codes WHERE code_hash = ? AND expires_at > ? RETURNING account_id')
      .get(codeHash, nowMs) as { account_id: string } | undefined;
    return r ? r.account_id : null;
  }

  async consumeBindCode(codeHash: string, nowMs: number): Promise<string | null> {
    return this.consumeBindCodeSync(codeHash, nowMs);
  }

  async getDevice(serial: string): Promise<DeviceRow | null> {
    const r = this.stmt('SELECT * FROM devices WHERE serial = ?').get(serial) as DeviceRecord | undefined;
    return r ? toDevice(r) : null;
  }

  async claimDevice(input: ClaimDeviceInput): Promise<ClaimDeviceOutcome> {
    const db = this.live;
    const run = db.transaction((): ClaimDeviceOutcome => {
      const accountId = this.consumeBindCodeSync(input.codeHash, input.nowMs);
      if (accountId === null) return { status: 'code-invalid' };
      const existing = this.stmt('SELECT account_id FROM devices WHERE serial = ?').get(input.serial) as
        | { account_id: string }
        | undefined;
      if (existing && existing.account_id !== accountId) throw new ClaimRefused({ status: 'bound-elsewhere' });
      if (!existing) {
        const account = this.stmt('SELECT plan FROM accounts WHERE id = ?').get(accountId) as { plan: string | null };
        const limit = input.cameraLimit(account.plan);
        if (limit !== null) {
          const { n } = this.stmt('SELECT COUNT(*) AS n FROM devices WHERE account_id = ?').get(accountId) as {
            n: number;
          };
          if (n >= limit) throw new ClaimRefused({ status: 'camera-limit' });
        }
      }
      this.stmt(
        `INSERT INTO devices (serial, model, account_id, token_hash, mqtt_password_hash, bound_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (serial) DO UPDATE SET model = excluded.model, token_hash = excluded.token_hash,
           mqtt_password_hash = excluded.mqtt_password_hash, bound_at = excluded.bound_at`,
      ).run(input.serial, input.model, accountId, input.tokenHash, input.mqttPasswordHash, input.nowMs);
      return { status: existing ? 'rebound' : 'bound', accountId };
    });
    try {
      // IMMEDIATE takes the write lock up front: the camera count cannot change under us
      return run.immediate();
    } catch (err) {
      if (err instanceof ClaimRefused) return err.outcome;
      throw err;
    }
  }

  async listDevices(accountId: string): Promise<DeviceRow[]> {
    const rows = this.stmt('SELECT * FROM devices WHERE account_id = ? ORDER BY bound_at, serial')
      .all(accountId) as DeviceRecord[];
    return rows.map(toDevice);
  }

  async unbindDevice(serial: string, accountId: string): Promise<boolean> {
    // uploads and shares go with the device (ON DELETE CASCADE)
    const info = this.stmt('DELETE FROM devices WHERE serial = ? AND account_id = ?').run(serial, accountId);
    return info.changes === 1;
  }

  async putShare(row: ShareRow): Promise<PutShareOutcome> {
    const db = this.live;
    // IMMEDIATE: an unbind cannot slip between the owner check and the write
    return db
      .transaction((): PutShareOutcome => {
        const device = this.stmt('SELECT 1 FROM devices WHERE serial = ? AND account_id = ?').get(row.serial, row.grantedBy);
        if (!device) return { status: 'device-not-found' };
        // an account being cancelled takes no new shares
        if (!this.stmt('SELECT 1 FROM accounts WHERE id = ? AND cancelled_at IS NULL').get(row.granteeAccountId)) {
          return { status: 'grantee-not-found' };
        }
        const existing = this.stmt('SELECT 1 FROM shares WHERE serial = ? AND grantee_account_id = ?').get(
          row.serial,
          row.granteeAccountId,
        );
        const stored = this.stmt(
          `INSERT INTO shares (serial, grantee_account_id, role, granted_by, created_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (serial, grantee_account_id) DO UPDATE SET role = excluded.role, granted_by = excluded.granted_by
           RETURNING *`,
        ).get(row.serial, row.granteeAccountId, row.role, row.grantedBy, row.createdAt) as ShareRecord;
        return { status: existing ? 'updated' : 'created', share: toShare(stored) };
      })
      .immediate();
  }

  async getShare(serial: string, granteeAccountId: string): Promise<ShareRow | null> {
    const r = this.stmt(`SELECT s.* FROM shares s ${SHARE_IN_FORCE} WHERE s.serial = ? AND s.grantee_account_id = ?`).get(
      serial,
      granteeAccountId,
    ) as ShareRecord | undefined;
    return r ? toShare(r) : null;
  }

  async listDeviceShares(serial: string): Promise<ShareRow[]> {
    const rows = this.stmt(
      `SELECT s.* FROM shares s ${SHARE_IN_FORCE} WHERE s.serial = ? ORDER BY s.created_at, s.grantee_account_id`,
    ).all(serial) as ShareRecord[];
    return rows.map(toShare);
  }

  async listSharedDevices(granteeAccountId: string): Promise<SharedDeviceRow[]> {
    const rows = this.stmt(
      `SELECT s.serial AS s_serial, s.grantee_account_id, s.role, s.granted_by, s.created_at, d.*
       FROM shares s ${SHARE_IN_FORCE} WHERE s.grantee_account_id = ? ORDER BY s.created_at, s.serial`,
    ).all(granteeAccountId) as (DeviceRecord & Omit<ShareRecord, 'serial'> & { s_serial: string })[];
    return rows.map((r) => ({ device: toDevice(r), share: toShare({ ...r, serial: r.s_serial }) }));
  }

  async deleteShare(serial: string, granteeAccountId: string): Promise<boolean> {
    return this.stmt('DELETE FROM shares WHERE serial = ? AND grantee_account_id = ?').run(serial, granteeAccountId).changes === 1;
  }

  async upsertUpload(row: UploadRow): Promise<void> {
    // A pending upload is no promise to anyone: lost in a power cut, the
    // device's complete gets UPLOAD_NOT_FOUND and it presigns again. So this,
    // the presign route's one write, skips the fsync; every other write keeps
    // synchronous=FULL (the fsync was a quarter of the route's time).
    this.relaxed(() => this.upsertUploadSync(row));
  }

  private relaxed<T>(fn: () => T): T {
    this.stmt('PRAGMA synchronous = NORMAL').run();
    try {
      return fn();
    } finally {
      this.stmt('PRAGMA synchronous = FULL').run();
    }
  }

  private upsertUploadSync(row: UploadRow): void {
    this.stmt(
        `INSERT INTO uploads (clip_id, serial, account_id, object_key, size, md5, sha256, start_ms, duration_ms, kind, created_at,
           multipart_upload_id, part_bytes, part_md5s)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (clip_id) DO UPDATE SET serial = excluded.serial, account_id = excluded.account_id,
           object_key = excluded.object_key, size = excluded.size, md5 = excluded.md5, sha256 = excluded.sha256,
           start_ms = excluded.start_ms, duration_ms = excluded.duration_ms, kind = excluded.kind,
           created_at = excluded.created_at, multipart_upload_id = excluded.multipart_upload_id,
           part_bytes = excluded.part_bytes, part_md5s = excluded.part_md5s`,
      )
      .run(...uploadValues(row));
  }

  async getUpload(clipId: string): Promise<UploadRow | null> {
    // part_md5s is JSON text here
    const r = this.stmt('SELECT * FROM uploads WHERE clip_id = ?').get(clipId) as UploadRecord<string> | undefined;
    return r ? toUpload(r, (json) => JSON.parse(json) as string[]) : null;
  }

  async deleteUpload(clipId: string): Promise<void> {
    this.stmt('DELETE FROM uploads WHERE clip_id = ?').run(clipId);
  }

  async sumPendingUploadBytes(accountId: string, exceptClipId?: string): Promise<number> {
    // pending_bytes is kept by triggers on uploads (sqlite-migrations.ts, 2)
    const r = this.stmt(
      `SELECT pending_bytes - COALESCE((SELECT size FROM uploads WHERE clip_id = ? AND account_id = accounts.id), 0) AS n
       FROM accounts WHERE id = ?`,
    ).get(exceptClipId ?? null, accountId) as { n: number } | undefined;
    return r?.n ?? 0;
  }


  async insertClip(row: ClipRow): Promise<ClipRow> {
    this.stmt(
      `INSERT INTO clips (id, account_id, serial, object_key, kind, start_ms, duration_ms, size, md5, sha256, uploaded_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
    ).run(...clipValues(row));
    return toClip(this.stmt('SELECT * FROM clips WHERE id = ?').get(row.id) as ClipRecord);
  }

  async completeUpload(row: ClipRow): Promise<ClipRow> {
    const insert = this.stmt(
      `INSERT INTO clips (id, account_id, serial, object_key, kind, start_ms, duration_ms, size, md5, sha256, uploaded_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
    );
    const del = this.stmt('DELETE FROM uploads WHERE clip_id = ?');
    const get = this.stmt('SELECT * FROM clips WHERE id = ?');
    return this.live.transaction(() => {
      insert.run(...clipValues(row));
      del.run(row.id);
      return toClip(get.get(row.id) as ClipRecord);
    })();
  }

  async getClip(id: string): Promise<ClipRow | null> {
    const r = this.stmt('SELECT * FROM clips WHERE id = ?').get(id) as ClipRecord | undefined;
    return r ? toClip(r) : null;
  }

  async listClips(filter: ClipFilter): Promise<ClipRow[]> {
    const where = ['account_id = @accountId'];
    const params: Record<string, string | number> = { accountId: filter.accountId, limit: filter.limit };
    if (filter.serial !== undefined) {
      where.push('serial = @serial');
      params.serial = filter.serial;
    }
    if (filter.fromMs !== undefined) {
      where.push('start_ms >= @fromMs');
      params.fromMs = filter.fromMs;
    }
    if (filter.toMs !== undefined) {
      where.push('start_ms < @toMs');
      params.toMs = filter.toMs;
    }
    if (filter.kind !== undefined) {
      where.push('kind = @kind');
      params.kind = filter.kind;
    }
    if (filter.visibleAt !== undefined) {
      // unary +: not an index term. Without it SQLite (no ANALYZE) read a first
      // page through clips_by_account_expiry_size and sorted every visible clip
      // of the account; this way it walks clips_by_account_start in order.
      where.push('+expires_at > @visibleAt');
      params.visibleAt = filter.visibleAt;
    }
    if (filter.after !== undefined) {
      where.push('(start_ms < @afterStart OR (start_ms = @afterStart AND id < @afterId))');
      params.afterStart = filter.after.startMs;
      params.afterId = filter.after.id;
    }
    const rows = this.stmt(`SELECT * FROM clips WHERE ${where.join(' AND ')} ORDER BY start_ms DESC, id DESC LIMIT @limit`)
      .all(params) as ClipRecord[];
    return rows.map(toClip);
  }

  async deleteClips(ids: string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const db = this.live;
    const del = this.stmt('DELETE FROM clips WHERE id = ?');
    return db.transaction(() => ids.reduce((n, id) => n + del.run(id).changes, 0))();
  }

  async sumClipBytes(accountId: string, visibleAt: number): Promise<number> {
    const r = this.stmt('SELECT COALESCE(SUM(size), 0) AS n FROM clips WHERE account_id = ? AND expires_at > ?')
      .get(accountId, visibleAt) as { n: number };
    return r.n;
  }

  /**
   * One statement, so one write under SQLite's single writer: two callers
   * (two processes on one file) cannot lease the same clip. The subquery
   * walks clips_by_expiry from the oldest expiry.
   */
  async claimExpiredClips(owner: string, nowMs: number, leaseUntilMs: number, limit: number): Promise<ExpiredClip[]> {
    const rows = this.stmt(
      `UPDATE clips SET lease_until = ?, lease_owner = ?
       WHERE id IN (SELECT id FROM clips WHERE expires_at <= ? AND (lease_until IS NULL OR lease_until <= ?)
                    ORDER BY expires_at LIMIT ?)
       RETURNING id, object_key, expires_at`,
    ).all(leaseUntilMs, owner, nowMs, nowMs, limit) as { id: string; object_key: string; expires_at: number }[];
    return rows
      .map((r) => ({ id: r.id, key: r.object_key, expiresAt: r.expires_at }))
      .sort((a, b) => a.expiresAt - b.expiresAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async releaseClipLeases(owner: string, ids: string[], retryAtMs: number): Promise<void> {
    if (ids.length === 0) return;
    const release = this.stmt('UPDATE clips SET lease_until = ?, lease_owner = NULL WHERE id = ? AND lease_owner = ?');
    this.live.transaction(() => {
      for (const id of ids) release.run(retryAtMs, id, owner);
    })();
  }

  async deleteStaleUploads(createdBeforeMs: number, limit: number): Promise<number> {
    // no index on created_at (every index is one more page per presign): the
    // hourly sweep scans the pending uploads, which are few
    return this.stmt('DELETE FROM uploads WHERE clip_id IN (SELECT clip_id FROM uploads WHERE created_at < ? LIMIT ?)').run(
      createdBeforeMs,
      limit,
    ).changes;
  }

  async deleteExpiredSessions(nowMs: number, limit: number): Promise<number> {
    return this.stmt('DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at <= ? LIMIT ?)').run(nowMs, limit).changes;
  }

  async objectKeysInUse(clipIds: string[]): Promise<string[]> {
    const keys = new Set<string>();
    const clip = this.stmt('SELECT object_key FROM clips WHERE id = ?');
    const upload = this.stmt('SELECT object_key FROM uploads WHERE clip_id = ?');
    // one read transaction: both tables as of one moment (a complete inserts
    // the clip row before it deletes the upload row)
    this.live.transaction(() => {
      for (const id of new Set(clipIds)) {
        for (const s of [clip, upload]) {
          const r = s.get(id) as { object_key: string } | undefined;
          if (r) keys.add(r.object_key);
        }
      }
    })();
    return [...keys];
  }

  async clipSummary(accountId: string, visibleAt: number): Promise<ClipSummary> {
    // the oldest visible clip: clips_by_account_start walked from its old end
    // (unary +: not an index term, as in listClips); the next expiry from
    // clips_by_account_expiry_size
    const oldest = this.stmt('SELECT start_ms FROM clips WHERE account_id = ? AND +expires_at > ? ORDER BY start_ms ASC LIMIT 1').get(
      accountId,
      visibleAt,
    ) as { start_ms: number } | undefined;
    const next = this.stmt('SELECT MIN(expires_at) AS e FROM clips WHERE account_id = ? AND expires_at > ?').get(accountId, visibleAt) as {
      e: number | null;
    };
    return { oldestStartMs: oldest?.start_ms ?? null, nextExpiresAt: next.e };
  }

  async recordJobRun(row: JobRunRow, pruneBeforeMs: number): Promise<void> {
    checkJobRun(row);
    this.live.transaction(() => {
      this.stmt('DELETE FROM job_runs WHERE started_at < ?').run(pruneBeforeMs);
      this.stmt('INSERT INTO job_runs (job, started_at, duration_ms, ok, counts) VALUES (?, ?, ?, ?, ?)').run(
        row.job,
        row.startedAt,
        row.durationMs,
        row.ok ? 1 : 0,
        JSON.stringify(row.counts),
      );
    })();
  }

  async listJobRuns(job: string, limit: number): Promise<JobRunRow[]> {
    const rows = this.stmt(
      'SELECT job, started_at, duration_ms, ok, counts FROM job_runs WHERE job = ? ORDER BY started_at DESC, id DESC LIMIT ?',
    ).all(job, limit) as { job: string; started_at: number; duration_ms: number; ok: number; counts: string }[];
    return rows.map((r) => ({
      job: r.job,
      startedAt: r.started_at,
      durationMs: r.duration_ms,
      ok: r.ok === 1,
      counts: JSON.parse(r.counts) as Record<string, number>,
    }));
  }

  // notifications and webhooks (issue 7)

  async notificationRecipients(serial: string): Promise<string[]> {
    const owner = this.stmt('SELECT account_id FROM devices WHERE serial = ?').get(serial) as { account_id: string } | undefined;
    if (!owner) return [];
    const grantees = this.stmt(
      `SELECT s.grantee_account_id FROM shares s ${SHARE_IN_FORCE} WHERE s.serial = ? ORDER BY s.created_at, s.grantee_account_id`,
    ).all(serial) as { grantee_account_id: string }[];
    return [owner.account_id, ...grantees.map((g) => g.grantee_account_id)];
  }

  async putNotifications(rows: NotificationRow[]): Promise<boolean[]> {
    if (rows.length === 0) return [];
    const insert = this.stmt(
      `INSERT INTO notifications (account_id, id, serial, type, at_ms, clip_id, received_at)
       SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?)
       ON CONFLICT (account_id, id) DO NOTHING`,
    );
    // A notification is no promise the way a clip is: lost in a power cut, it
    // is at worst a webhook sent twice. Like the rate-limit counters, no fsync.
    return this.relaxed(() =>
      this.live.transaction(() =>
        rows.map(
          (r) => insert.run(r.accountId, r.id, r.serial, r.type, r.atMs, r.clipId, r.receivedAt, r.accountId).changes === 1,
        ),
      )(),
    );
  }

  async getNotification(accountId: string, id: string): Promise<NotificationRow | null> {
    const r = this.stmt(`SELECT ${NOTIFICATION_COLS} FROM notifications WHERE account_id = ? AND id = ?`).get(accountId, id) as
      | NotificationRecord
      | undefined;
    return r ? toNotification(r) : null;
  }

  async listNotificationsAfter(accountId: string, after: { receivedAt: number; id: string }, limit: number): Promise<NotificationRow[]> {
    const rows = this.stmt(
      `SELECT ${NOTIFICATION_COLS} FROM notifications
       WHERE account_id = ? AND (received_at > ? OR (received_at = ? AND id > ?))
       ORDER BY received_at, id LIMIT ?`,
    ).all(accountId, after.receivedAt, after.receivedAt, after.id, limit) as NotificationRecord[];
    return rows.map(toNotification);
  }

  async listRecentNotifications(accountId: string, sinceMs: number, limit: number): Promise<NotificationRow[]> {
    const rows = this.stmt(
      `SELECT ${NOTIFICATION_COLS} FROM notifications WHERE account_id = ? AND received_at >= ?
       ORDER BY received_at DESC, id DESC LIMIT ?`,
    ).all(accountId, sinceMs, limit) as NotificationRecord[];
    return rows.map(toNotification);
  }

  async deleteNotificationsBefore(beforeMs: number, limit: number): Promise<number> {
    return this.stmt(
      `DELETE FROM notifications WHERE rowid IN (SELECT rowid FROM notifications WHERE received_at < ? ORDER BY received_at LIMIT ?)`,
    ).run(beforeMs, limit).changes;
  }

  async putWebhook(row: WebhookRow): Promise<boolean> {
    return (
      this.stmt(
        `INSERT INTO webhooks (account_id, url, secret, created_at)
         SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?)
         ON CONFLICT (account_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, created_at = excluded.created_at`,
      ).run(row.accountId, row.url, row.secret, row.createdAt, row.accountId).changes === 1
    );
  }

  async getWebhooks(accountIds: string[]): Promise<WebhookRow[]> {
    if (accountIds.length === 0) return [];
    const one = this.stmt('SELECT account_id, url, secret, created_at FROM webhooks WHERE account_id = ?');
    const out: WebhookRow[] = [];
    for (const id of new Set(accountIds)) {
      const r = one.get(id) as WebhookRecord | undefined;
      if (r) out.push(toWebhook(r));
    }
    return out;
  }

  async deleteWebhook(accountId: string): Promise<boolean> {
    return this.stmt('DELETE FROM webhooks WHERE account_id = ?').run(accountId).changes === 1;
  }

  // account rights (issue 6)

  async getConsents(accountId: string): Promise<ConsentRow[]> {
    const rows = this.stmt('SELECT purpose, granted, updated_at FROM consents WHERE account_id = ? ORDER BY purpose').all(accountId) as {
      purpose: ConsentPurpose;
      granted: number;
      updated_at: number;
    }[];
    return rows.map((r) => ({ purpose: r.purpose, granted: r.granted === 1, updatedAt: r.updated_at }));
  }

  async setConsents(accountId: string, changes: { purpose: ConsentPurpose; granted: boolean }[], nowMs: number): Promise<ConsentRow[]> {
    const db = this.live;
    return db
      .transaction((): ConsentRow[] => {
        if (!this.stmt('SELECT 1 FROM accounts WHERE id = ?').get(accountId)) return [];
        const put = this.stmt(
          `INSERT INTO consents (account_id, purpose, granted, updated_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (account_id, purpose) DO UPDATE SET granted = excluded.granted, updated_at = excluded.updated_at
           WHERE consents.granted <> excluded.granted`,
        );
        for (const c of changes) {
          put.run(accountId, c.purpose, c.granted ? 1 : 0, nowMs);
          // withdrawn: what was collected goes in the same step (P7)
          if (c.purpose === 'experience' && !c.granted) this.stmt('DELETE FROM experience_events WHERE account_id = ?').run(accountId);
        }
        const rows = this.stmt('SELECT purpose, granted, updated_at FROM consents WHERE account_id = ? ORDER BY purpose').all(accountId) as {
          purpose: ConsentPurpose;
          granted: number;
          updated_at: number;
        }[];
        return rows.map((r) => ({ purpose: r.purpose, granted: r.granted === 1, updatedAt: r.updated_at }));
      })
      .immediate();
  }

  async recordExperienceEvent(accountId: string, event: string, nowMs: number): Promise<boolean> {
    // one statement under SQLite's one writer: a withdrawal is either before it (nothing inserted) or after it (deleted)
    return (
      this.stmt(
        `INSERT INTO experience_events (account_id, event, at)
         SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM consents WHERE account_id = ? AND purpose = 'experience' AND granted = 1)`,
      ).run(accountId, event, nowMs, accountId).changes === 1
    );
  }

  async listExperienceEvents(accountId: string): Promise<ExperienceEventRow[]> {
    const rows = this.stmt('SELECT account_id, event, at FROM experience_events WHERE account_id = ? ORDER BY at, id')
      .all(accountId) as ExperienceEventRecord[];
    return rows.map(toExperienceEvent);
  }

  async appendSecurityLog(row: SecurityLogRow): Promise<void> {
    this.stmt('INSERT INTO security_log (account_id, event, at, ip) VALUES (?, ?, ?, ?)').run(row.accountId, row.event, row.at, row.ip);
  }

  async listSecurityLog(accountId: string): Promise<SecurityLogRow[]> {
    const rows = this.stmt('SELECT account_id, event, at, ip FROM security_log WHERE account_id = ? ORDER BY at, id')
      .all(accountId) as SecurityLogRecord[];
    return rows.map(toSecurityLog);
  }

  async eraseSecurityLogBefore(beforeMs: number, limit: number): Promise<number> {
    return this.stmt('DELETE FROM security_log WHERE id IN (SELECT id FROM security_log WHERE at < ? ORDER BY at LIMIT ?)').run(beforeMs, limit)
      .changes;
  }

  /** tombstones for the account's sessions and device tokens; sessions deleted, device credentials blanked */
  private revokeCredentialsSync(accountId: string, nowMs: number, tombstones: CredentialTombstones, deleteDevices: boolean): void {
    const tomb = this.stmt('INSERT INTO cancelled_credentials (digest, expires_at) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING');
    const sessions = this.stmt('SELECT token_hash, expires_at FROM sessions WHERE account_id = ?').all(accountId) as {
      token_hash: string;
      expires_at: number;
    }[];
    for (const r of sessions) if (r.expires_at > nowMs) tomb.run(tombstones.digest(r.token_hash), r.expires_at);
    this.stmt('DELETE FROM sessions WHERE account_id = ?').run(accountId);
    const devices = this.stmt("SELECT token_hash FROM devices WHERE account_id = ? AND token_hash <> ''").all(accountId) as {
      token_hash: string;
    }[];
    for (const r of devices) tomb.run(tombstones.digest(r.token_hash), tombstones.deviceUntil);
    // devices stay (the unbind commands need them) with credentials nobody can present
    if (deleteDevices) this.stmt('DELETE FROM devices WHERE account_id = ?').run(accountId);
    else this.stmt("UPDATE devices SET token_hash = '', mqtt_password_hash = '' WHERE account_id = ?").run(accountId);
  }

  /** rows that end with a cancellation's first step and again with its purge */
  private dropAccessSync(accountId: string): void {
    this.stmt('DELETE FROM bind_codes WHERE account_id = ?').run(accountId);
    this.stmt('DELETE FROM shares WHERE granted_by = ? OR grantee_account_id = ?').run(accountId, accountId);
    this.stmt('DELETE FROM webhooks WHERE account_id = ?').run(accountId);
    // its own notifications, and its devices' alerts in every other account's
    this.stmt('DELETE FROM notifications WHERE account_id = ?').run(accountId);
    this.stmt('DELETE FROM notifications WHERE serial IN (SELECT serial FROM devices WHERE account_id = ?)').run(accountId);
    this.stmt('DELETE FROM consents WHERE account_id = ?').run(accountId);
    this.stmt('DELETE FROM experience_events WHERE account_id = ?').run(accountId);
  }

  async beginCancellation(accountId: string, nowMs: number, tombstones: CredentialTombstones): Promise<BeginCancellationOutcome> {
    const db = this.live;
    return db
      .transaction((): BeginCancellationOutcome => {
        const r = this.stmt('SELECT cancelled_at FROM accounts WHERE id = ?').get(accountId) as { cancelled_at: number | null } | undefined;
        if (!r) return 'not-found';
        if (r.cancelled_at !== null) return 'already-cancelled';
        this.stmt('UPDATE accounts SET cancelled_at = ? WHERE id = ?').run(nowMs, accountId);
        this.dropAccessSync(accountId);
        this.revokeCredentialsSync(accountId, nowMs, tombstones, false);
        return 'started';
      })
      .immediate();
  }

  async listCancellations(nowMs: number, limit: number): Promise<string[]> {
    const rows = this.stmt(
      `SELECT id FROM accounts WHERE cancelled_at IS NOT NULL AND (cancel_lease_until IS NULL OR cancel_lease_until <= ?)
       ORDER BY cancelled_at, id LIMIT ?`,
    ).all(nowMs, limit) as { id: string }[];
    return rows.map((r) => r.id);
  }

  async leaseCancellation(accountId: string, owner: string, nowMs: number, untilMs: number): Promise<boolean> {
    return (
      this.stmt(
        `UPDATE accounts SET cancel_lease_owner = ?, cancel_lease_until = ?
         WHERE id = ? AND cancelled_at IS NOT NULL
           AND (cancel_lease_until IS NULL OR cancel_lease_until <= ? OR cancel_lease_owner = ?)`,
      ).run(owner, untilMs, accountId, nowMs, owner).changes === 1
    );
  }

  async purgeAccountRows(accountId: string, input: PurgeAccountInput): Promise<void> {
    const db = this.live;
    db.transaction(() => {
      if (!this.stmt('SELECT 1 FROM accounts WHERE id = ? AND cancelled_at IS NOT NULL').get(accountId)) return;
      this.dropAccessSync(accountId);
      // devices last among the access rows: the notifications above go by their serials
      this.revokeCredentialsSync(accountId, input.nowMs, input.tombstones, true);
      this.stmt('DELETE FROM uploads WHERE account_id = ?').run(accountId);
      this.stmt('DELETE FROM security_log WHERE account_id = ?').run(accountId);
      this.stmt('DELETE FROM email_codes WHERE email_hash = ?').run(input.emailHash);
      const limit = this.stmt('DELETE FROM rate_limits WHERE key = ?');
      for (const key of input.rateLimitKeys) limit.run(key);
      this.stmt("UPDATE accounts SET email = ?, password_hash = '' WHERE id = ?").run(input.erasedEmail, accountId);
    }).immediate();
  }

  async deleteCancelledClipRows(accountId: string, limit: number): Promise<number> {
    return this.stmt(
      `DELETE FROM clips WHERE id IN (SELECT id FROM clips WHERE account_id = ? LIMIT ?)
         AND EXISTS (SELECT 1 FROM accounts WHERE id = ? AND cancelled_at IS NOT NULL)`,
    ).run(accountId, limit, accountId).changes;
  }

  async finishCancellation(accountId: string): Promise<boolean> {
    const db = this.live;
    return db
      .transaction((): boolean => {
        const r = this.stmt('SELECT cancelled_at FROM accounts WHERE id = ?').get(accountId) as { cancelled_at: number | null } | undefined;
        if (!r) return true;
        if (r.cancelled_at === null) throw new Error('finishCancellation: the account is not being cancelled');
        if (this.stmt('SELECT 1 FROM clips WHERE account_id = ? LIMIT 1').get(accountId)) return false;
        // whatever still names it goes with it (ON DELETE CASCADE)
        this.stmt('DELETE FROM accounts WHERE id = ?').run(accountId);
        return true;
      })
      .immediate();
  }

  async isCredentialCancelled(digest: string, nowMs: number): Promise<boolean> {
    return this.stmt('SELECT 1 FROM cancelled_credentials WHERE digest = ? AND expires_at > ?').get(digest, nowMs) !== undefined;
  }

  async pruneCancelledCredentials(nowMs: number, limit: number): Promise<number> {
    return this.stmt(
      'DELETE FROM cancelled_credentials WHERE digest IN (SELECT digest FROM cancelled_credentials WHERE expires_at <= ? LIMIT ?)',
    ).run(nowMs, limit).changes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
