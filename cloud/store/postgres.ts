import { createHash } from 'node:crypto';
import pg from 'pg';
import { POSTGRES_MIGRATIONS } from './postgres-migrations.js';
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
  PutShareOutcome,
  RegisterAccountOutcome,
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

// Explicit column lists, never SELECT *: a node's prepared statements outlive
// a migration another node runs, and PostgreSQL refuses to re-run a cached
// plan whose result columns changed ("cached plan must not change result type").
const ACCOUNT_COLS = 'id, email, password_hash, plan, created_at, email_verified_at, plan_lapsed_at, cancelled_at';
const DEVICE_COLS = 'serial, model, account_id, token_hash, mqtt_password_hash, bound_at';
const UPLOAD_COLS =
  'clip_id, serial, account_id, object_key, size, md5, sha256, start_ms, duration_ms, kind, created_at, multipart_upload_id, part_bytes, part_md5s';
const SHARE_COLS = 's.serial, s.grantee_account_id, s.role, s.granted_by, s.created_at';
/** a share is in force only while its device is bound to the account that granted it */
const SHARE_IN_FORCE = 'JOIN devices d ON d.serial = s.serial AND d.account_id = s.granted_by';
const CLIP_COLS = 'id, account_id, serial, object_key, kind, start_ms, duration_ms, size, md5, sha256, uploaded_at, expires_at';
const NOTIFICATION_COLS = 'account_id, id, serial, type, at_ms, clip_id, received_at';

/**
 * BIGINT (epoch ms, byte counts, COUNT(*)) as a JS number. Every value the
 * store keeps is a safe integer; one that is not is a bug, not a rounding.
 * Set per pool, not on pg's global parser table.
 */
const INT8_OID = 20;
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error('a BIGINT value is outside the safe integer range');
  return n;
}
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** the first int of the two-int advisory lock the migrations take ('cvmg') */
const MIGRATION_LOCK_CLASS = 0x63766d67;

/** SQLSTATEs after which a transaction is simply run again: deadlock, serialization failure */
const RETRYABLE = new Set(['40P01', '40001']);

/** A refusal throws out of the claim transaction, so the bind code is not spent. */
class ClaimRefused extends Error {
  constructor(readonly outcome: ClaimDeviceOutcome) {
    super(outcome.status);
  }
}

export interface PostgresStoreOptions {
  /**
   * postgres:// or postgresql:// URL. libpq's `options` parameter reaches the
   * server, e.g. `?options=-c%20search_path%3Dcamvault` keeps the tables in
   * schema camvault (the tests give every store a schema of its own this way).
   */
  url: string;
  /** connections per node (default 10) */
  poolSize?: number;
  /** how long opening a connection (or waiting for a free one) may take, default 10 s */
  connectTimeoutMs?: number;
  /** an idle pooled connection failed (the server restarted); the pool replaces it */
  onIdleError?: (err: Error) => void;
}

/**
 * The production metadata store: the same semantics as SqliteStore, on a
 * pg.Pool, for several cloud nodes sharing one database. Every method is one
 * statement or one transaction; what SQLite gets from its single writer
 * (claimDevice's BEGIN IMMEDIATE) PostgreSQL gets from row locks. Open it with
 * PostgresStore.open(), which migrates under an advisory lock, so nodes that
 * start together migrate once.
 */
export class PostgresStore implements Store {
  private readonly pool: pg.Pool;
  private closed = false;
  private closing: Promise<void> | undefined;
  private version = 0;
  /** where the store points, without credentials, for error lines */
  readonly target: string;
  private readonly password: string;

  private constructor(opts: PostgresStoreOptions) {
    const url = parseDatabaseUrl(opts.url);
    this.target = url.target;
    this.password = url.password;
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      keepAlive: true,
      application_name: 'camvault-cloud',
      types,
    });
    this.pool.on('error', (err) => opts.onIdleError?.(err));
  }

  /**
   * Connects, migrates, and resolves with the store; rejects with one line
   * naming the server (never the URL's credentials) when the database cannot
   * be reached, refuses the login, or holds a schema newer than this program.
   */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const store = new PostgresStore(opts);
    try {
      await store.migrate();
    } catch (err) {
      await store.close();
      throw new Error(`postgresql store at ${store.target}: ${store.oneLine(err)}`, { cause: err });
    }
    return store;
  }

  /** the schema version this database is at */
  get schemaVersion(): number {
    return this.version;
  }

  /** an error as one line, never holding the password */
  private oneLine(err: unknown): string {
    let msg = describeError(err);
    if (this.password) msg = msg.split(this.password).join('[redacted]');
    return msg;
  }

  /**
   * All pending migrations in one transaction, under an advisory lock keyed by
   * the schema: a second node starting at the same moment waits, then finds
   * nothing to do. DDL is transactional here, so a failed migration leaves the
   * schema as it was.
   */
  private async migrate(): Promise<void> {
    const applied = await this.tx(async (c) => {
      await c.query("SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))", [MIGRATION_LOCK_CLASS]);
      await c.query(
        `CREATE TABLE IF NOT EXISTS camvault_schema_migrations (
           version    INTEGER PRIMARY KEY,
           applied_at BIGINT NOT NULL
         )`,
      );
      const { rows } = await c.query<{ v: number }>('SELECT COALESCE(MAX(version), 0)::bigint AS v FROM camvault_schema_migrations');
      const current = rows[0]?.v ?? 0;
      if (current > POSTGRES_MIGRATIONS.length) {
        throw new Error(
          `the database schema (version ${current}) is newer than this program knows (${POSTGRES_MIGRATIONS.length}); upgrade camvault`,
        );
      }
      for (let v = current; v < POSTGRES_MIGRATIONS.length; v++) {
        await c.query(POSTGRES_MIGRATIONS[v] as string);
        await c.query('INSERT INTO camvault_schema_migrations (version, applied_at) VALUES ($1, $2)', [v + 1, Date.now()]);
      }
      return POSTGRES_MIGRATIONS.length;
    });
    this.version = applied;
  }

  /**
   * Statement names, by SQL: each pooled connection prepares a statement once
   * and then only binds and executes it (the SQLite store's statement cache).
   */
  private readonly names = new Map<string, string>();

  private nameOf(text: string): string {
    let name = this.names.get(text);
    if (!name) {
      name = `cv_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
      this.names.set(text, name);
    }
    return name;
  }

  private live(): void {
    if (this.closed) throw new Error('the store is closed');
  }

  private async q<R extends pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
    client?: pg.PoolClient,
  ): Promise<pg.QueryResult<R>> {
    this.live();
    return (client ?? this.pool).query<R>({ name: this.nameOf(text), text, values });
  }

  /**
   * One transaction on one pooled connection, READ COMMITTED. Run again (at
   * most three times in all) after a deadlock or a serialization failure: the
   * rollback undid everything, so running again is safe.
   */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      this.live();
      const c = await this.pool.connect();
      let broken: Error | undefined;
      try {
        await c.query('BEGIN');
        const out = await fn(c);
        await c.query('COMMIT');
        return out;
      } catch (err) {
        try {
          await c.query('ROLLBACK');
        } catch (rollbackErr) {
          // the connection is unusable: the pool must drop it, not hand it out again
          broken = rollbackErr as Error;
        }
        const code = (err as { code?: string }).code;
        if (attempt < 3 && code !== undefined && RETRYABLE.has(code) && !broken) continue;
        throw err;
      } finally {
        c.release(broken);
      }
    }
  }

  /** as SqliteStore: emailVerifiedAt and planLapsedAt start null whatever row holds */
  async createAccount(row: AccountRow): Promise<boolean> {
    const r = await this.q(
      `INSERT INTO accounts (id, email, password_hash, plan, created_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (email) DO NOTHING`,
      [row.id, row.email, row.passwordHash, row.plan, row.createdAt],
    );
    return r.rowCount === 1;
  }

  async getAccountById(id: string): Promise<AccountRow | null> {
    const { rows } = await this.q<AccountRecord>(`SELECT ${ACCOUNT_COLS} FROM accounts WHERE id = $1`, [id]);
    return rows[0] ? toAccount(rows[0]) : null;
  }

  async getAccountByEmail(email: string): Promise<AccountRow | null> {
    const { rows } = await this.q<AccountRecord>(`SELECT ${ACCOUNT_COLS} FROM accounts WHERE email = $1`, [email]);
    return rows[0] ? toAccount(rows[0]) : null;
  }

  async setAccountPlan(accountId: string, plan: string | null): Promise<void> {
    await this.q('UPDATE accounts SET plan = $1 WHERE id = $2', [plan, accountId]);
  }

  /**
   * One transaction: the code first (putEmailCode), then one statement that
   * inserts the account or, when the email exists, takes the existing row:
   * its password hash is replaced only while it is unverified. The no-op
   * update on a verified account is what makes the statement return that row
   * even while a concurrent registration of the same address commits.
   */
  async registerAccount(account: AccountRow, code: EmailCodeRow): Promise<RegisterAccountOutcome> {
    return this.tx(async (c) => {
      await this.putEmailCodeOn(code, c);
      const { rows } = await this.q<{ id: string; email_verified_at: number | null; inserted: boolean }>(
        `INSERT INTO accounts AS a (id, email, password_hash, plan, created_at, email_verified_at, plan_lapsed_at)
         VALUES ($1, $2, $3, $4, $5, NULL, NULL)
         ON CONFLICT (email) DO UPDATE SET password_hash =
           CASE WHEN a.email_verified_at IS NULL THEN EXCLUDED.password_hash ELSE a.password_hash END
         RETURNING a.id, a.email_verified_at, (a.xmax = 0) AS inserted`,
        [account.id, account.email, account.passwordHash, account.plan, account.createdAt],
        c,
      );
      const r = rows[0] as { id: string; email_verified_at: number | null; inserted: boolean };
      if (r.inserted) return { status: 'created', accountId: r.id };
      return { status: r.email_verified_at === null ? 'pending' : 'verified', accountId: r.id };
    });
  }

  async markEmailVerified(accountId: string, nowMs: number): Promise<boolean> {
    const r = await this.q('UPDATE accounts SET email_verified_at = $1 WHERE id = $2 AND email_verified_at IS NULL', [nowMs, accountId]);
    return r.rowCount === 1;
  }

  /** one statement: the sessions are deleted only when the account's row was updated */
  async changePassword(accountId: string, passwordHash: string, keepSessionTokenHash: string | null): Promise<number> {
    const r = await this.q(
      `WITH a AS (UPDATE accounts SET password_hash = $2 WHERE id = $1 RETURNING id)
       DELETE FROM sessions WHERE account_id IN (SELECT id FROM a) AND token_hash IS DISTINCT FROM $3`,
      [accountId, passwordHash, keepSessionTokenHash],
    );
    return r.rowCount ?? 0;
  }

  /**
   * The code's row first, then the expired codes of other addresses, skipping
   * rows another transaction holds: a prune that waited could deadlock with a
   * concurrent caller whose own code it was pruning.
   */
  private async putEmailCodeOn(row: EmailCodeRow, c: pg.PoolClient): Promise<void> {
    await this.q(
      `INSERT INTO email_codes (email_hash, purpose, code_hash, attempts, created_at, expires_at) VALUES ($1, $2, $3, 0, $4, $5)
       ON CONFLICT (email_hash, purpose) DO UPDATE SET code_hash = EXCLUDED.code_hash, attempts = 0,
         created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at`,
      [row.emailHash, row.purpose, row.codeHash, row.createdAt, row.expiresAt],
      c,
    );
    await this.q(
      `DELETE FROM email_codes WHERE (email_hash, purpose) IN
         (SELECT email_hash, purpose FROM email_codes
          WHERE expires_at <= $1 AND (email_hash, purpose) <> ($2, $3) FOR UPDATE SKIP LOCKED)`,
      [row.createdAt, row.emailHash, row.purpose],
      c,
    );
  }

  async putEmailCode(row: EmailCodeRow): Promise<void> {
    await this.tx((c) => this.putEmailCodeOn(row, c));
  }

  /**
   * One transaction holding the code's row (FOR UPDATE): of two callers with
   * the right code, the second waits, then finds the row gone; wrong guesses
   * queue and each counts.
   */
  async useEmailCode(
    emailHash: string,
    purpose: EmailCodePurpose,
    codeHash: string,
    nowMs: number,
    maxAttempts: number,
  ): Promise<boolean> {
    return this.tx(async (c) => {
      const { rows } = await this.q<{ code_hash: string }>(
        `SELECT code_hash FROM email_codes WHERE email_hash = $1 AND purpose = $2 AND expires_at > $3 AND attempts < $4
         FOR UPDATE`,
        [emailHash, purpose, nowMs, maxAttempts],
        c,
      );
      const live = rows[0];
      if (!live) return false;
      if (live.code_hash === codeHash) {
        await this.q('DELETE FROM email_codes WHERE email_hash = $1 AND purpose = $2', [emailHash, purpose], c);
        return true;
      }
      await this.q('UPDATE email_codes SET attempts = attempts + 1 WHERE email_hash = $1 AND purpose = $2', [emailHash, purpose], c);
      return false;
    });
  }

  /** one statement; expiry counts from the earlier of the device's stamp and the cloud's receipt */
  async choosePlan(accountId: string, plan: string, retentionMs: number, nowMs: number): Promise<number> {
    const r = await this.q(
      `WITH a AS (UPDATE accounts SET plan = $2, plan_lapsed_at = NULL WHERE id = $1 RETURNING id)
       UPDATE clips SET expires_at = LEAST(start_ms, uploaded_at) + $3 WHERE account_id = $1 AND expires_at > $4`,
      [accountId, plan, retentionMs, nowMs],
    );
    return r.rowCount ?? 0;
  }

  /** one statement: the clips are capped only when the account had a plan to lapse */
  async lapsePlan(accountId: string, nowMs: number, graceEndsAtMs: number): Promise<number> {
    const r = await this.q(
      `WITH a AS (UPDATE accounts SET plan = NULL, plan_lapsed_at = $2 WHERE id = $1 AND plan IS NOT NULL RETURNING id)
       UPDATE clips SET expires_at = LEAST(expires_at, $3) WHERE account_id IN (SELECT id FROM a) AND expires_at > $2`,
      [accountId, nowMs, graceEndsAtMs],
    );
    return r.rowCount ?? 0;
  }

  /**
   * One transaction: the key's row is counted first (the upsert takes its row
   * lock, so concurrent hits get distinct counts), then windows that ended are
   * pruned, skipping rows another hit holds (it is counting or pruning them):
   * a prune that waited could deadlock with a hit on the key it was pruning.
   */
  async hitRateLimit(key: string, windowMs: number, nowMs: number): Promise<number> {
    const windowStart = nowMs - (((nowMs % windowMs) + windowMs) % windowMs);
    return this.tx(async (c) => {
      const { rows } = await this.q<{ count: number }>(
        `INSERT INTO rate_limits AS r (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (key) DO UPDATE SET
           count = CASE WHEN r.window_start >= EXCLUDED.window_start THEN r.count + 1 ELSE 1 END,
           expires_at = GREATEST(r.expires_at, EXCLUDED.expires_at),
           window_start = GREATEST(r.window_start, EXCLUDED.window_start)
         RETURNING r.count`,
        [key, windowStart, windowStart + windowMs],
        c,
      );
      await this.q(
        'DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE expires_at <= $1 FOR UPDATE SKIP LOCKED)',
        [nowMs],
        c,
      );
      return (rows[0] as { count: number }).count;
    });
  }

  async createSession(row: SessionRow): Promise<void> {
    await this.q('INSERT INTO sessions (token_hash, account_id, created_at, expires_at) VALUES ($1, $2, $3, $4)', [
      row.tokenHash,
      row.accountId,
      row.createdAt,
      row.expiresAt,
    ]);
  }

  async getSession(tokenHash: string, nowMs: number): Promise<SessionRow | null> {
    // with the account's cancellation: a session that slipped in while it began is refused all the same
    const { rows } = await this.q<SessionRecord & { account_cancelled_at: number | null }>(
      `SELECT s.token_hash, s.account_id, s.created_at, s.expires_at, a.cancelled_at AS account_cancelled_at
       FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = $1 AND s.expires_at > $2`,
      [tokenHash, nowMs],
    );
    const r = rows[0];
    return r ? { ...toSession(r), accountCancelledAt: r.account_cancelled_at } : null;
  }

  async deleteSession(tokenHash: string): Promise<void> {
    await this.q('DELETE FROM sessions WHERE token_hash = $1', [tokenHash]);
  }

  async createBindCode(row: BindCodeRow): Promise<void> {
    await this.q('INSERT INTO bind_codes (code_hash, account_id, created_at, expires_at) VALUES ($1, $2, $3, $4)', [
      row.codeHash,
      row.accountId,
      row.createdAt,
      row.expiresAt,
    ]);
  }

  /**
   * DELETE … RETURNING: the row is gone in the statement that reads it. A
   * second claim with the same code waits on the row lock and then finds it
   * deleted (or, when the first transaction rolled back, takes it).
   */
  private async consumeBindCodeOn(codeHash: string, nowMs: number, client?: pg.PoolClient): Promise<string | null> {
    const { rows } = await this.q<{ account_id: string }>(
      'DELETE FROM bind_codes WHERE code_hash = $1 AND expires_at > $2 RETURNING account_id',
      [codeHash, nowMs],
      client,
    );
    return rows[0]?.account_id ?? null;
  }

  async consumeBindCode(codeHash: string, nowMs: number): Promise<string | null> {
    return this.consumeBindCodeOn(codeHash, nowMs);
  }

  async getDevice(serial: string): Promise<DeviceRow | null> {
    const { rows } = await this.q<DeviceRecord>(`SELECT ${DEVICE_COLS} FROM devices WHERE serial = $1`, [serial]);
    return rows[0] ? toDevice(rows[0]) : null;
  }

  /**
   * One transaction. Locks, always in this order: the bind code (deleted), the
   * device row when it exists, the account row (FOR NO KEY UPDATE, so it does
   * not block the foreign-key checks of concurrent presigns). Holding the
   * account row serializes claims for one account, so the camera count cannot
   * change between the count and the insert. A new serial claimed by two
   * accounts at once: the insert's ON CONFLICT … WHERE lets only the account
   * that already owns the row update it; the other sees no row and is refused.
   */
  async claimDevice(input: ClaimDeviceInput): Promise<ClaimDeviceOutcome> {
    try {
      return await this.tx(async (c): Promise<ClaimDeviceOutcome> => {
        const accountId = await this.consumeBindCodeOn(input.codeHash, input.nowMs, c);
        if (accountId === null) return { status: 'code-invalid' };
        const existing = (
          await this.q<{ account_id: string }>('SELECT account_id FROM devices WHERE serial = $1 FOR NO KEY UPDATE', [input.serial], c)
        ).rows[0];
        if (existing && existing.account_id !== accountId) throw new ClaimRefused({ status: 'bound-elsewhere' });
        if (!existing) {
          const account = (
            await this.q<{ plan: string | null }>('SELECT plan FROM accounts WHERE id = $1 FOR NO KEY UPDATE', [accountId], c)
          ).rows[0];
          const limit = input.cameraLimit(account?.plan ?? null);
          if (limit !== null) {
            const n = (await this.q<{ n: number }>('SELECT COUNT(*) AS n FROM devices WHERE account_id = $1', [accountId], c)).rows[0]?.n ?? 0;
            if (n >= limit) throw new ClaimRefused({ status: 'camera-limit' });
          }
        }
        const written = (
          await this.q<{ inserted: boolean }>(
            `INSERT INTO devices (serial, model, account_id, token_hash, mqtt_password_hash, bound_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (serial) DO UPDATE SET model = EXCLUDED.model, token_hash = EXCLUDED.token_hash,
               mqtt_password_hash = EXCLUDED.mqtt_password_hash, bound_at = EXCLUDED.bound_at
             WHERE devices.account_id = EXCLUDED.account_id
             RETURNING (xmax = 0) AS inserted`,
            [input.serial, input.model, accountId, input.tokenHash, input.mqttPasswordHash, input.nowMs],
            c,
          )
        ).rows[0];
        // another account bound this serial between our look and our insert
        if (!written) throw new ClaimRefused({ status: 'bound-elsewhere' });
        return { status: written.inserted ? 'bound' : 'rebound', accountId };
      });
    } catch (err) {
      if (err instanceof ClaimRefused) return err.outcome;
      throw err;
    }
  }

  async listDevices(accountId: string): Promise<DeviceRow[]> {
    const { rows } = await this.q<DeviceRecord>(`SELECT ${DEVICE_COLS} FROM devices WHERE account_id = $1 ORDER BY bound_at, serial`, [
      accountId,
    ]);
    return rows.map(toDevice);
  }

  async unbindDevice(serial: string, accountId: string): Promise<boolean> {
    // uploads and shares go with the device (ON DELETE CASCADE); the trigger lowers pending_bytes
    const r = await this.q('DELETE FROM devices WHERE serial = $1 AND account_id = $2', [serial, accountId]);
    return r.rowCount === 1;
  }

  /**
   * One transaction: the device row is locked (FOR KEY SHARE) while it is
   * checked to be bound to grantedBy, so an unbind waits for the grant and
   * then removes it with the device, never the reverse.
   */
  async putShare(row: ShareRow): Promise<PutShareOutcome> {
    return this.tx(async (c): Promise<PutShareOutcome> => {
      const device = await this.q('SELECT 1 FROM devices WHERE serial = $1 AND account_id = $2 FOR KEY SHARE', [row.serial, row.grantedBy], c);
      if (device.rowCount !== 1) return { status: 'device-not-found' };
      // an account being cancelled takes no new shares
      const grantee = await this.q('SELECT 1 FROM accounts WHERE id = $1 AND cancelled_at IS NULL FOR KEY SHARE', [row.granteeAccountId], c);
      if (grantee.rowCount !== 1) return { status: 'grantee-not-found' };
      const { rows } = await this.q<ShareRecord & { inserted: boolean }>(
        `INSERT INTO shares AS s (serial, grantee_account_id, role, granted_by, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (serial, grantee_account_id) DO UPDATE SET role = EXCLUDED.role, granted_by = EXCLUDED.granted_by
         RETURNING ${SHARE_COLS}, (s.xmax = 0) AS inserted`,
        [row.serial, row.granteeAccountId, row.role, row.grantedBy, row.createdAt],
        c,
      );
      const stored = rows[0] as ShareRecord & { inserted: boolean };
      return { status: stored.inserted ? 'created' : 'updated', share: toShare(stored) };
    });
  }

  async getShare(serial: string, granteeAccountId: string): Promise<ShareRow | null> {
    const { rows } = await this.q<ShareRecord>(
      `SELECT ${SHARE_COLS} FROM shares s ${SHARE_IN_FORCE} WHERE s.serial = $1 AND s.grantee_account_id = $2`,
      [serial, granteeAccountId],
    );
    return rows[0] ? toShare(rows[0]) : null;
  }

  async listDeviceShares(serial: string): Promise<ShareRow[]> {
    const { rows } = await this.q<ShareRecord>(
      `SELECT ${SHARE_COLS} FROM shares s ${SHARE_IN_FORCE} WHERE s.serial = $1 ORDER BY s.created_at, s.grantee_account_id`,
      [serial],
    );
    return rows.map(toShare);
  }

  async listSharedDevices(granteeAccountId: string): Promise<SharedDeviceRow[]> {
    const { rows } = await this.q<ShareRecord & DeviceRecord>(
      `SELECT ${SHARE_COLS}, d.model, d.account_id, d.token_hash, d.mqtt_password_hash, d.bound_at
       FROM shares s ${SHARE_IN_FORCE} WHERE s.grantee_account_id = $1 ORDER BY s.created_at, s.serial`,
      [granteeAccountId],
    );
    return rows.map((r) => ({ device: toDevice(r), share: toShare(r) }));
  }

  async deleteShare(serial: string, granteeAccountId: string): Promise<boolean> {
    const r = await this.q('DELETE FROM shares WHERE serial = $1 AND grantee_account_id = $2', [serial, granteeAccountId]);
    return r.rowCount === 1;
  }

  async upsertUpload(row: UploadRow): Promise<void> {
    await this.q(
      `INSERT INTO uploads (${UPLOAD_COLS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb)
       ON CONFLICT (clip_id) DO UPDATE SET serial = EXCLUDED.serial, account_id = EXCLUDED.account_id,
         object_key = EXCLUDED.object_key, size = EXCLUDED.size, md5 = EXCLUDED.md5, sha256 = EXCLUDED.sha256,
         start_ms = EXCLUDED.start_ms, duration_ms = EXCLUDED.duration_ms, kind = EXCLUDED.kind,
         created_at = EXCLUDED.created_at, multipart_upload_id = EXCLUDED.multipart_upload_id,
         part_bytes = EXCLUDED.part_bytes, part_md5s = EXCLUDED.part_md5s`,
      uploadValues(row),
    );
  }

  async getUpload(clipId: string): Promise<UploadRow | null> {
    // part_md5s is JSONB, parsed by pg
    const { rows } = await this.q<UploadRecord<string[]>>(`SELECT ${UPLOAD_COLS} FROM uploads WHERE clip_id = $1`, [clipId]);
    return rows[0] ? toUpload(rows[0], (md5s) => md5s) : null;
  }

  async deleteUpload(clipId: string): Promise<void> {
    await this.q('DELETE FROM uploads WHERE clip_id = $1', [clipId]);
  }

  async sumPendingUploadBytes(accountId: string, exceptClipId?: string): Promise<number> {
    // pending_bytes is kept by a trigger on uploads (postgres-migrations.ts, 2)
    const { rows } = await this.q<{ n: number }>(
      `SELECT pending_bytes - COALESCE((SELECT size FROM uploads WHERE clip_id = $1 AND account_id = accounts.id), 0) AS n
       FROM accounts WHERE id = $2`,
      [exceptClipId ?? null, accountId],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * One statement that always returns the stored row: on a conflict the
   * no-op DO UPDATE returns the existing row (waiting for a concurrent insert
   * of the same id to commit first). DO NOTHING would return nothing, and a
   * read in the same statement would not see a row committed during it.
   */
  async insertClip(row: ClipRow): Promise<ClipRow> {
    const { rows } = await this.q<ClipRecord>(
      `INSERT INTO clips (${CLIP_COLS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
       ON CONFLICT (id) DO UPDATE SET id = clips.id
       RETURNING ${CLIP_COLS}`,
      clipValues(row),
    );
    return toClip(rows[0] as ClipRecord);
  }

  /** one statement, so one commit: the pending upload's DELETE rides along as a CTE */
  async completeUpload(row: ClipRow): Promise<ClipRow> {
    const { rows } = await this.q<ClipRecord>(
      `WITH done AS (DELETE FROM uploads WHERE clip_id = $1)
       INSERT INTO clips (${CLIP_COLS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
       ON CONFLICT (id) DO UPDATE SET id = clips.id
       RETURNING ${CLIP_COLS}`,
      clipValues(row),
    );
    return toClip(rows[0] as ClipRecord);
  }

  async getClip(id: string): Promise<ClipRow | null> {
    const { rows } = await this.q<ClipRecord>(`SELECT ${CLIP_COLS} FROM clips WHERE id = $1`, [id]);
    return rows[0] ? toClip(rows[0]) : null;
  }

  async listClips(filter: ClipFilter): Promise<ClipRow[]> {
    const values: unknown[] = [filter.accountId];
    const where = ['account_id = $1'];
    const param = (v: unknown): string => {
      values.push(v);
      return `$${values.length}`;
    };
    if (filter.serial !== undefined) where.push(`serial = ${param(filter.serial)}`);
    if (filter.fromMs !== undefined) where.push(`start_ms >= ${param(filter.fromMs)}`);
    if (filter.toMs !== undefined) where.push(`start_ms < ${param(filter.toMs)}`);
    if (filter.kind !== undefined) where.push(`kind = ${param(filter.kind)}`);
    if (filter.visibleAt !== undefined) where.push(`expires_at > ${param(filter.visibleAt)}`);
    if (filter.after !== undefined) {
      // row comparison: the index clips_by_account_start walks straight to it
      where.push(`(start_ms, id) < (${param(filter.after.startMs)}, ${param(filter.after.id)})`);
    }
    const limit = param(filter.limit);
    const { rows } = await this.q<ClipRecord>(
      `SELECT ${CLIP_COLS} FROM clips WHERE ${where.join(' AND ')} ORDER BY start_ms DESC, id DESC LIMIT ${limit}`,
      values,
    );
    return rows.map(toClip);
  }

  async deleteClips(ids: string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const r = await this.q('DELETE FROM clips WHERE id = ANY($1::text[])', [ids]);
    return r.rowCount ?? 0;
  }

  async sumClipBytes(accountId: string, visibleAt: number): Promise<number> {
    // SUM(bigint) is NUMERIC: cast back so it parses as a number
    const { rows } = await this.q<{ n: number }>(
      'SELECT COALESCE(SUM(size), 0)::bigint AS n FROM clips WHERE account_id = $1 AND expires_at > $2',
      [accountId, visibleAt],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * One statement: the subquery locks the oldest free expired rows, skipping
   * rows another node's claim holds locked right now (SKIP LOCKED), and the
   * UPDATE writes our lease into them. Once committed, the lease (not the
   * lock) keeps the other nodes off until it lapses.
   */
  async claimExpiredClips(owner: string, nowMs: number, leaseUntilMs: number, limit: number): Promise<ExpiredClip[]> {
    const { rows } = await this.q<{ id: string; object_key: string; expires_at: number }>(
      `UPDATE clips SET lease_until = $1, lease_owner = $2
       WHERE id IN (SELECT id FROM clips WHERE expires_at <= $3 AND (lease_until IS NULL OR lease_until <= $3)
                    ORDER BY expires_at LIMIT $4 FOR UPDATE SKIP LOCKED)
       RETURNING id, object_key, expires_at`,
      [leaseUntilMs, owner, nowMs, limit],
    );
    return rows
      .map((r) => ({ id: r.id, key: r.object_key, expiresAt: r.expires_at }))
      .sort((a, b) => a.expiresAt - b.expiresAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async releaseClipLeases(owner: string, ids: string[], retryAtMs: number): Promise<void> {
    if (ids.length === 0) return;
    await this.q('UPDATE clips SET lease_until = $1, lease_owner = NULL WHERE id = ANY($2::text[]) AND lease_owner = $3', [
      retryAtMs,
      ids,
      owner,
    ]);
  }

  /** no index on created_at (presign writes): a scan of the pending uploads, skipping rows a presign holds */
  async deleteStaleUploads(createdBeforeMs: number, limit: number): Promise<number> {
    const r = await this.q(
      'DELETE FROM uploads WHERE clip_id IN (SELECT clip_id FROM uploads WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)',
      [createdBeforeMs, limit],
    );
    return r.rowCount ?? 0;
  }

  async deleteExpiredSessions(nowMs: number, limit: number): Promise<number> {
    const r = await this.q(
      'DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)',
      [nowMs, limit],
    );
    return r.rowCount ?? 0;
  }

  async objectKeysInUse(clipIds: string[]): Promise<string[]> {
    if (clipIds.length === 0) return [];
    const { rows } = await this.q<{ object_key: string }>(
      `SELECT object_key FROM clips WHERE id = ANY($1::text[])
       UNION SELECT object_key FROM uploads WHERE clip_id = ANY($1::text[])`,
      [clipIds],
    );
    return rows.map((r) => r.object_key);
  }

  async clipSummary(accountId: string, visibleAt: number): Promise<ClipSummary> {
    const { rows } = await this.q<{ oldest: number | null; next: number | null }>(
      `SELECT (SELECT start_ms FROM clips WHERE account_id = $1 AND expires_at > $2 ORDER BY start_ms ASC LIMIT 1) AS oldest,
              (SELECT MIN(expires_at) FROM clips WHERE account_id = $1 AND expires_at > $2) AS next`,
      [accountId, visibleAt],
    );
    return { oldestStartMs: rows[0]?.oldest ?? null, nextExpiresAt: rows[0]?.next ?? null };
  }

  async recordJobRun(row: JobRunRow, pruneBeforeMs: number): Promise<void> {
    checkJobRun(row);
    await this.q(
      `WITH pruned AS (DELETE FROM job_runs WHERE started_at < $6)
       INSERT INTO job_runs (job, started_at, duration_ms, ok, counts) VALUES ($1, $2, $3, $4, $5::jsonb)`,
      [row.job, row.startedAt, row.durationMs, row.ok, JSON.stringify(row.counts), pruneBeforeMs],
    );
  }

  async listJobRuns(job: string, limit: number): Promise<JobRunRow[]> {
    const { rows } = await this.q<{ job: string; started_at: number; duration_ms: number; ok: boolean; counts: Record<string, number> }>(
      'SELECT job, started_at, duration_ms, ok, counts FROM job_runs WHERE job = $1 ORDER BY started_at DESC, id DESC LIMIT $2',
      [job, limit],
    );
    return rows.map((r) => ({ job: r.job, startedAt: r.started_at, durationMs: r.duration_ms, ok: r.ok, counts: r.counts }));
  }

  // notifications and webhooks (issue 7)

  /** one statement: the owner first, then the grantees of shares in force, in listDeviceShares' order */
  async notificationRecipients(serial: string): Promise<string[]> {
    const { rows } = await this.q<{ account_id: string }>(
      `SELECT account_id FROM (
         SELECT d.account_id, 0 AS k, 0::bigint AS created_at FROM devices d WHERE d.serial = $1
         UNION ALL
         SELECT s.grantee_account_id, 1, s.created_at FROM shares s ${SHARE_IN_FORCE} WHERE s.serial = $1
       ) r ORDER BY k, created_at, account_id`,
      [serial],
    );
    return rows.map((r) => r.account_id);
  }

  /**
   * One statement for every row (unnest): ON CONFLICT DO NOTHING is what
   * makes concurrent nodes insert a row once; RETURNING names the rows this
   * statement inserted. A row repeated in one call counts once.
   */
  async putNotifications(rows: NotificationRow[]): Promise<boolean[]> {
    if (rows.length === 0) return [];
    const { rows: inserted } = await this.q<{ account_id: string; id: string }>(
      `INSERT INTO notifications (account_id, id, serial, type, at_ms, clip_id, received_at)
       SELECT r.account_id, r.id, r.serial, r.type, r.at_ms, r.clip_id, r.received_at
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[])
         AS r(account_id, id, serial, type, at_ms, clip_id, received_at)
       WHERE EXISTS (SELECT 1 FROM accounts a WHERE a.id = r.account_id)
       ON CONFLICT (account_id, id) DO NOTHING
       RETURNING account_id, id`,
      [
        rows.map((r) => r.accountId),
        rows.map((r) => r.id),
        rows.map((r) => r.serial),
        rows.map((r) => r.type),
        rows.map((r) => r.atMs),
        rows.map((r) => r.clipId),
        rows.map((r) => r.receivedAt),
      ],
    );
    const fresh = new Set(inserted.map((r) => `${r.account_id}\n${r.id}`));
    return rows.map((r) => fresh.delete(`${r.accountId}\n${r.id}`));
  }

  async getNotification(accountId: string, id: string): Promise<NotificationRow | null> {
    const { rows } = await this.q<NotificationRecord>(`SELECT ${NOTIFICATION_COLS} FROM notifications WHERE account_id = $1 AND id = $2`, [
      accountId,
      id,
    ]);
    return rows[0] ? toNotification(rows[0]) : null;
  }

  async listNotificationsAfter(accountId: string, after: { receivedAt: number; id: string }, limit: number): Promise<NotificationRow[]> {
    const { rows } = await this.q<NotificationRecord>(
      `SELECT ${NOTIFICATION_COLS} FROM notifications WHERE account_id = $1 AND (received_at, id) > ($2, $3)
       ORDER BY received_at, id LIMIT $4`,
      [accountId, after.receivedAt, after.id, limit],
    );
    return rows.map(toNotification);
  }

  async listRecentNotifications(accountId: string, sinceMs: number, limit: number): Promise<NotificationRow[]> {
    const { rows } = await this.q<NotificationRecord>(
      `SELECT ${NOTIFICATION_COLS} FROM notifications WHERE account_id = $1 AND received_at >= $2
       ORDER BY received_at DESC, id DESC LIMIT $3`,
      [accountId, sinceMs, limit],
    );
    return rows.map(toNotification);
  }

  /** SKIP LOCKED: two nodes erasing at once take different rows instead of waiting on each other */
  async deleteNotificationsBefore(beforeMs: number, limit: number): Promise<number> {
    const r = await this.q(
      `DELETE FROM notifications WHERE (account_id, id) IN (
         SELECT account_id, id FROM notifications WHERE received_at < $1 ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [beforeMs, limit],
    );
    return r.rowCount ?? 0;
  }

  async putWebhook(row: WebhookRow): Promise<boolean> {
    const r = await this.q(
      `INSERT INTO webhooks (account_id, url, secret, created_at)
       SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1)
       ON CONFLICT (account_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, created_at = EXCLUDED.created_at`,
      [row.accountId, row.url, row.secret, row.createdAt],
    );
    return r.rowCount === 1;
  }

  async getWebhooks(accountIds: string[]): Promise<WebhookRow[]> {
    if (accountIds.length === 0) return [];
    const { rows } = await this.q<WebhookRecord>(
      'SELECT account_id, url, secret, created_at FROM webhooks WHERE account_id = ANY($1::text[])',
      [[...new Set(accountIds)]],
    );
    return rows.map(toWebhook);
  }

  async deleteWebhook(accountId: string): Promise<boolean> {
    const r = await this.q('DELETE FROM webhooks WHERE account_id = $1', [accountId]);
    return r.rowCount === 1;
  }

  // account rights (issue 6)

  private async consentsOn(accountId: string, c?: pg.PoolClient): Promise<ConsentRow[]> {
    const { rows } = await this.q<{ purpose: ConsentPurpose; granted: boolean; updated_at: number }>(
      'SELECT purpose, granted, updated_at FROM consents WHERE account_id = $1 ORDER BY purpose',
      [accountId],
      c,
    );
    return rows.map((r) => ({ purpose: r.purpose, granted: r.granted, updatedAt: r.updated_at }));
  }

  async getConsents(accountId: string): Promise<ConsentRow[]> {
    return this.consentsOn(accountId);
  }

  /**
   * One transaction. A withdrawal's upsert holds the consent row until the
   * events are deleted and it commits; recordExperienceEvent reads that row
   * FOR SHARE, so it waits, then sees the withdrawal and inserts nothing.
   */
  async setConsents(accountId: string, changes: { purpose: ConsentPurpose; granted: boolean }[], nowMs: number): Promise<ConsentRow[]> {
    return this.tx(async (c) => {
      const account = await this.q('SELECT 1 FROM accounts WHERE id = $1 FOR KEY SHARE', [accountId], c);
      if (account.rowCount !== 1) return [];
      for (const ch of changes) {
        await this.q(
          `INSERT INTO consents AS k (account_id, purpose, granted, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id, purpose) DO UPDATE SET granted = EXCLUDED.granted, updated_at = EXCLUDED.updated_at
           WHERE k.granted <> EXCLUDED.granted`,
          [accountId, ch.purpose, ch.granted, nowMs],
          c,
        );
        if (ch.purpose === 'experience' && !ch.granted) {
          // lock the row even when the upsert changed nothing (already off): a racing insert waits for us
          await this.q("SELECT 1 FROM consents WHERE account_id = $1 AND purpose = 'experience' FOR UPDATE", [accountId], c);
          await this.q('DELETE FROM experience_events WHERE account_id = $1', [accountId], c);
        }
      }
      return this.consentsOn(accountId, c);
    });
  }

  async recordExperienceEvent(accountId: string, event: string, nowMs: number): Promise<boolean> {
    const r = await this.q(
      `INSERT INTO experience_events (account_id, event, at)
       SELECT account_id, $2, $3 FROM consents WHERE account_id = $1 AND purpose = 'experience' AND granted FOR SHARE`,
      [accountId, event, nowMs],
    );
    return r.rowCount === 1;
  }

  async listExperienceEvents(accountId: string): Promise<ExperienceEventRow[]> {
    const { rows } = await this.q<ExperienceEventRecord>(
      'SELECT account_id, event, at FROM experience_events WHERE account_id = $1 ORDER BY at, id',
      [accountId],
    );
    return rows.map(toExperienceEvent);
  }

  async appendSecurityLog(row: SecurityLogRow): Promise<void> {
    await this.q('INSERT INTO security_log (account_id, event, at, ip) VALUES ($1, $2, $3, $4)', [row.accountId, row.event, row.at, row.ip]);
  }

  async listSecurityLog(accountId: string): Promise<SecurityLogRow[]> {
    const { rows } = await this.q<SecurityLogRecord>(
      'SELECT account_id, event, at, ip FROM security_log WHERE account_id = $1 ORDER BY at, id',
      [accountId],
    );
    return rows.map(toSecurityLog);
  }

  async eraseSecurityLogBefore(beforeMs: number, limit: number): Promise<number> {
    const r = await this.q(
      'DELETE FROM security_log WHERE id IN (SELECT id FROM security_log WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)',
      [beforeMs, limit],
    );
    return r.rowCount ?? 0;
  }

  /** tombstones for the account's sessions and device tokens; sessions deleted, devices blanked (or deleted) */
  private async revokeCredentialsOn(
    c: pg.PoolClient,
    accountId: string,
    nowMs: number,
    tombstones: CredentialTombstones,
    deleteDevices: boolean,
  ): Promise<void> {
    const sessions = await this.q<{ token_hash: string; expires_at: number }>(
      'DELETE FROM sessions WHERE account_id = $1 RETURNING token_hash, expires_at',
      [accountId],
      c,
    );
    const devices = deleteDevices
      ? await this.q<{ token_hash: string }>('DELETE FROM devices WHERE account_id = $1 RETURNING token_hash', [accountId], c)
      : await this.q<{ token_hash: string }>(
          `UPDATE devices d SET token_hash = '', mqtt_password_hash = '' FROM devices old
           WHERE d.serial = old.serial AND d.account_id = $1 AND old.token_hash <> '' RETURNING old.token_hash`,
          [accountId],
          c,
        );
    const digests: string[] = [];
    const until: number[] = [];
    for (const r of sessions.rows) {
      if (r.expires_at <= nowMs) continue;
      digests.push(tombstones.digest(r.token_hash));
      until.push(r.expires_at);
    }
    for (const r of devices.rows) {
      if (r.token_hash === '') continue;
      digests.push(tombstones.digest(r.token_hash));
      until.push(tombstones.deviceUntil);
    }
    if (digests.length === 0) return;
    await this.q(
      `INSERT INTO cancelled_credentials (digest, expires_at) SELECT * FROM unnest($1::text[], $2::bigint[])
       ON CONFLICT (digest) DO NOTHING`,
      [digests, until],
      c,
    );
  }

  /** rows that end with a cancellation's first step and again with its purge */
  private async dropAccessOn(c: pg.PoolClient, accountId: string): Promise<void> {
    await this.q('DELETE FROM bind_codes WHERE account_id = $1', [accountId], c);
    await this.q('DELETE FROM shares WHERE granted_by = $1 OR grantee_account_id = $1', [accountId], c);
    await this.q('DELETE FROM webhooks WHERE account_id = $1', [accountId], c);
    // its own notifications, and its devices' alerts in every other account's
    await this.q(
      'DELETE FROM notifications WHERE account_id = $1 OR serial IN (SELECT serial FROM devices WHERE account_id = $1)',
      [accountId],
      c,
    );
    await this.q('DELETE FROM consents WHERE account_id = $1', [accountId], c);
    await this.q('DELETE FROM experience_events WHERE account_id = $1', [accountId], c);
  }

  /**
   * One transaction that starts by locking the account row FOR UPDATE: a
   * session or bind code being inserted for it (their foreign-key check
   * takes KEY SHARE) either committed before, and is revoked here, or waits
   * and lands after (getSession then reports the cancellation). A claim that
   * holds a bind code and waits for the account row deadlocks with this
   * transaction at worst; one of them is run again.
   */
  async beginCancellation(accountId: string, nowMs: number, tombstones: CredentialTombstones): Promise<BeginCancellationOutcome> {
    return this.tx(async (c): Promise<BeginCancellationOutcome> => {
      const { rows } = await this.q<{ cancelled_at: number | null }>('SELECT cancelled_at FROM accounts WHERE id = $1 FOR UPDATE', [accountId], c);
      const r = rows[0];
      if (!r) return 'not-found';
      if (r.cancelled_at !== null) return 'already-cancelled';
      await this.q('UPDATE accounts SET cancelled_at = $2 WHERE id = $1', [accountId, nowMs], c);
      await this.dropAccessOn(c, accountId);
      await this.revokeCredentialsOn(c, accountId, nowMs, tombstones, false);
      return 'started';
    });
  }

  async listCancellations(nowMs: number, limit: number): Promise<string[]> {
    const { rows } = await this.q<{ id: string }>(
      `SELECT id FROM accounts WHERE cancelled_at IS NOT NULL AND (cancel_lease_until IS NULL OR cancel_lease_until <= $1)
       ORDER BY cancelled_at, id LIMIT $2`,
      [nowMs, limit],
    );
    return rows.map((r) => r.id);
  }

  async leaseCancellation(accountId: string, owner: string, nowMs: number, untilMs: number): Promise<boolean> {
    const r = await this.q(
      `UPDATE accounts SET cancel_lease_owner = $2, cancel_lease_until = $4
       WHERE id = $1 AND cancelled_at IS NOT NULL AND (cancel_lease_until IS NULL OR cancel_lease_until <= $3 OR cancel_lease_owner = $2)`,
      [accountId, owner, nowMs, untilMs],
    );
    return r.rowCount === 1;
  }

  async purgeAccountRows(accountId: string, input: PurgeAccountInput): Promise<void> {
    await this.tx(async (c) => {
      const locked = await this.q('SELECT 1 FROM accounts WHERE id = $1 AND cancelled_at IS NOT NULL FOR UPDATE', [accountId], c);
      if (locked.rowCount !== 1) return;
      await this.dropAccessOn(c, accountId);
      // devices after the notifications above, which go by their serials
      await this.revokeCredentialsOn(c, accountId, input.nowMs, input.tombstones, true);
      await this.q('DELETE FROM uploads WHERE account_id = $1', [accountId], c);
      await this.q('DELETE FROM security_log WHERE account_id = $1', [accountId], c);
      await this.q('DELETE FROM email_codes WHERE email_hash = $1', [input.emailHash], c);
      if (input.rateLimitKeys.length > 0) await this.q('DELETE FROM rate_limits WHERE key = ANY($1::text[])', [input.rateLimitKeys], c);
      await this.q("UPDATE accounts SET email = $2, password_hash = '' WHERE id = $1", [accountId, input.erasedEmail], c);
    });
  }

  async deleteCancelledClipRows(accountId: string, limit: number): Promise<number> {
    const r = await this.q(
      `DELETE FROM clips WHERE id IN (SELECT id FROM clips WHERE account_id = $1 LIMIT $2)
         AND EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND cancelled_at IS NOT NULL)`,
      [accountId, limit],
    );
    return r.rowCount ?? 0;
  }

  /** the account row locked FOR UPDATE: a clip insert (its foreign-key check) waits, then fails on the gone row */
  async finishCancellation(accountId: string): Promise<boolean> {
    return this.tx(async (c) => {
      const { rows } = await this.q<{ cancelled_at: number | null }>('SELECT cancelled_at FROM accounts WHERE id = $1 FOR UPDATE', [accountId], c);
      const r = rows[0];
      if (!r) return true;
      if (r.cancelled_at === null) throw new Error('finishCancellation: the account is not being cancelled');
      const left = await this.q('SELECT 1 FROM clips WHERE account_id = $1 LIMIT 1', [accountId], c);
      if (left.rowCount !== 0) return false;
      // whatever still names it goes with it (ON DELETE CASCADE)
      await this.q('DELETE FROM accounts WHERE id = $1', [accountId], c);
      return true;
    });
  }

  async isCredentialCancelled(digest: string, nowMs: number): Promise<boolean> {
    const r = await this.q('SELECT 1 FROM cancelled_credentials WHERE digest = $1 AND expires_at > $2', [digest, nowMs]);
    return r.rowCount === 1;
  }

  async pruneCancelledCredentials(nowMs: number, limit: number): Promise<number> {
    const r = await this.q(
      `DELETE FROM cancelled_credentials WHERE digest IN
         (SELECT digest FROM cancelled_credentials WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [nowMs, limit],
    );
    return r.rowCount ?? 0;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.pool.end();
    await this.closing;
  }
}

/** `host:port/database` of a postgres URL, and its password (to keep it out of messages) */
export function parseDatabaseUrl(url: string): { target: string; password: string } {
  let u: URL;
  try {
    // libpq's `postgres://user@/db?host=/run/postgresql` (a socket, no host) is no WHATWG URL
    u = new URL(url.replace('@/', '@localhost/'));
  } catch {
    throw new Error('the database URL is not a valid URL');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error('the database URL must start with postgres:// or postgresql://');
  const host = u.searchParams.get('host') ?? (u.hostname || 'localhost');
  const port = u.searchParams.get('port') ?? (u.port || '5432');
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || '(default database)';
  return { target: `${host}:${port}/${database}`, password: decodeURIComponent(u.password) };
}

/** one line for a connection or query error (node's AggregateError has an empty message) */
function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return describeError(err.errors[0]);
  const e = err as { message?: string; code?: string };
  const msg = e.message?.trim() || e.code || String(err);
  return msg.replace(/\s*\n\s*/g, ' ');
}
