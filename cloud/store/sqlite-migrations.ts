/**
 * Schema migrations of the SQLite store, applied in order; PRAGMA user_version
 * holds how many have run. Never edit a migration that has shipped: add one.
 *
 * Times are INTEGER epoch ms. Clips keep no foreign key cascade to accounts:
 * a clip row goes only after its object is deleted, never as a side effect.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    plan          TEXT,
    created_at    INTEGER NOT NULL
  );

  CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX sessions_by_account ON sessions(account_id);
  CREATE INDEX sessions_by_expiry ON sessions(expires_at);

  CREATE TABLE bind_codes (
    code_hash  TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX bind_codes_by_expiry ON bind_codes(expires_at);

  CREATE TABLE devices (
    serial             TEXT PRIMARY KEY,
    model              TEXT NOT NULL,
    account_id         TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    token_hash         TEXT NOT NULL,
    mqtt_password_hash TEXT NOT NULL,
    bound_at           INTEGER NOT NULL
  );
  CREATE INDEX devices_by_account ON devices(account_id);

  CREATE TABLE uploads (
    clip_id     TEXT PRIMARY KEY,
    serial      TEXT NOT NULL REFERENCES devices(serial) ON DELETE CASCADE,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    object_key  TEXT NOT NULL,
    size        INTEGER NOT NULL,
    md5         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('event', 'continuous')),
    created_at  INTEGER NOT NULL
  );
  CREATE INDEX uploads_by_account ON uploads(account_id);
  CREATE INDEX uploads_by_created ON uploads(created_at);

  CREATE TABLE clips (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    serial      TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('event', 'continuous')),
    start_ms    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    md5         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    uploaded_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
  );
  CREATE INDEX clips_by_account_start ON clips(account_id, start_ms DESC, id DESC);
  CREATE INDEX clips_by_expiry ON clips(expires_at);
  `,
  // 2: multipart uploads. The part MD5s are a JSON array of base64 strings
  // (PostgreSQL: JSONB); all three columns are NULL for a single PUT.
  `
  ALTER TABLE uploads ADD COLUMN multipart_upload_id TEXT;
  ALTER TABLE uploads ADD COLUMN part_bytes INTEGER;
  ALTER TABLE uploads ADD COLUMN part_md5s TEXT;

  -- The presign route sums an account's bytes on every call: covering indexes
  -- keep those sums off the tables (bench/presign).
  -- The presign route checks an account's bytes on every call. Pending bytes
  -- are a running total kept by triggers (abandoned uploads pile up until the
  -- sweep: a SUM over them grew with every one, bench/presign); stored clip bytes
  -- are summed over a covering index, since only unexpired clips count.
  CREATE INDEX clips_by_account_expiry_size ON clips(account_id, expires_at, size);
  -- every index on uploads is one more page written to the WAL per presign;
  -- nothing reads these two (the stale-upload sweep will scan, or add its own)
  DROP INDEX uploads_by_account;
  DROP INDEX uploads_by_created;
  ALTER TABLE accounts ADD COLUMN pending_bytes INTEGER NOT NULL DEFAULT 0;
  UPDATE accounts SET pending_bytes = (SELECT COALESCE(SUM(size), 0) FROM uploads WHERE uploads.account_id = accounts.id);
  CREATE TRIGGER uploads_pending_insert AFTER INSERT ON uploads BEGIN
    UPDATE accounts SET pending_bytes = pending_bytes + NEW.size WHERE id = NEW.account_id;
  END;
  CREATE TRIGGER uploads_pending_delete AFTER DELETE ON uploads BEGIN
    UPDATE accounts SET pending_bytes = pending_bytes - OLD.size WHERE id = OLD.account_id;
  END;
  CREATE TRIGGER uploads_pending_update AFTER UPDATE OF size, account_id ON uploads BEGIN
    UPDATE accounts SET pending_bytes = pending_bytes - OLD.size WHERE id = OLD.account_id;
    UPDATE accounts SET pending_bytes = pending_bytes + NEW.size WHERE id = NEW.account_id;
  END;
  `,
  // shares (issue 5): a device's owner lets another account view (viewer) or
  // also delete (manager) the device's clips. A share goes with its device row
  // (unbinding ends every share of the device) and with either account. The
  // store reads a share as in force only while devices.account_id = granted_by.
  `
  CREATE TABLE shares (
    serial             TEXT NOT NULL REFERENCES devices(serial) ON DELETE CASCADE,
    grantee_account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    role               TEXT NOT NULL CHECK (role IN ('viewer', 'manager')),
    granted_by         TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at         INTEGER NOT NULL,
    PRIMARY KEY (serial, grantee_account_id)
  );
  CREATE INDEX shares_by_grantee ON shares(grantee_account_id);
  CREATE INDEX shares_by_granted_by ON shares(granted_by);
  `,
  // accounts (issue 5): verified addresses, mailed codes, plan lapses, rate
  // limits. Accounts made before verification existed count as verified.
  // email_codes are keyed by the address's hash, not an account, so asking for
  // a code costs the same whether or not the address has an account.
  `
  ALTER TABLE accounts ADD COLUMN email_verified_at INTEGER;
  UPDATE accounts SET email_verified_at = created_at;
  ALTER TABLE accounts ADD COLUMN plan_lapsed_at INTEGER;

  CREATE TABLE email_codes (
    email_hash TEXT NOT NULL,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    code_hash  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (email_hash, purpose)
  );
  CREATE INDEX email_codes_by_expiry ON email_codes(expires_at);

  -- one row per key: the current fixed window and its count
  CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
  );
  CREATE INDEX rate_limits_by_expiry ON rate_limits(expires_at);
  `,
  // 5: retention and receipts (issue 6). The retention job leases expired
  // clips (lease_until, lease_owner: several nodes, or a pass killed half
  // way, never lose or double a clip; cloud/jobs/retention.ts); its claims walk
  // clips_by_expiry. job_runs keeps each job pass's receipt: counts only, no
  // account, key or address (the counts are a JSON object of integers).
  `
  ALTER TABLE clips ADD COLUMN lease_until INTEGER;
  ALTER TABLE clips ADD COLUMN lease_owner TEXT;

  CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
    counts      TEXT NOT NULL
  );
  CREATE INDEX job_runs_by_job ON job_runs(job, started_at);
  CREATE INDEX job_runs_by_started ON job_runs(started_at);
  `,
  // 6: notifications and webhooks (issue 7). A notification row is one
  // account's copy of a device alert, keyed by (account, id) with an id
  // derived from the alert, so cloud nodes that all receive the alert insert
  // it once; the node whose insert lands sends the webhook. Rows are erased
  // after a few days (SSE resume only needs a short history) and go with the
  // account. A webhook's secret is kept as given: HMAC signing needs it.
  `
  CREATE TABLE notifications (
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    serial      TEXT NOT NULL,
    type        TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    clip_id     TEXT,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, id)
  );
  CREATE INDEX notifications_by_account_received ON notifications(account_id, received_at, id);
  CREATE INDEX notifications_by_received ON notifications(received_at);

  CREATE TABLE webhooks (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  // 7: account rights (issue 6): cancellation, consents, the experience
  // program and the security log. accounts.cancelled_at marks a cancellation
  // in progress (its lease: one node works on it at a time); the account row
  // goes last. consents: one row per account and purpose once set (no row:
  // off). experience_events: collected only while that consent is on; no IP,
  // no email. security_log: the IP is AES-256-GCM ciphertext (cloud/ip-crypto.ts),
  // account_id NULL for a failed sign-in of an unknown address. cancelled_credentials:
  // a digest of each revoked session and device token (never the token hash,
  // never the account), so an old credential is answered 410 after the rows are gone.
  `
  ALTER TABLE accounts ADD COLUMN cancelled_at INTEGER;
  ALTER TABLE accounts ADD COLUMN cancel_lease_owner TEXT;
  ALTER TABLE accounts ADD COLUMN cancel_lease_until INTEGER;
  CREATE INDEX accounts_cancelling ON accounts(cancelled_at) WHERE cancelled_at IS NOT NULL;

  CREATE TABLE consents (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('experience', 'marketing')),
    granted    INTEGER NOT NULL CHECK (granted IN (0, 1)),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, purpose)
  );

  CREATE TABLE experience_events (
    id         INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    event      TEXT NOT NULL,
    at         INTEGER NOT NULL
  );
  CREATE INDEX experience_events_by_account ON experience_events(account_id, at);

  CREATE TABLE security_log (
    id         INTEGER PRIMARY KEY,
    account_id TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    event      TEXT NOT NULL,
    at         INTEGER NOT NULL,
    ip         TEXT NOT NULL
  );
  CREATE INDEX security_log_by_account ON security_log(account_id, at);
  CREATE INDEX security_log_by_at ON security_log(at);

  CREATE TABLE cancelled_credentials (
    digest     TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX cancelled_credentials_by_expiry ON cancelled_credentials(expires_at);
  `,
];
