/**
 * Schema migrations of the PostgreSQL store, applied in order under an advisory
 * lock (postgres.ts); the table camvault_schema_migrations holds one row per
 * migration that has run. Never edit a migration that has shipped: add one.
 *
 * Migration N mirrors SQLite's migration N (sqlite-migrations.ts), so both
 * stores are at the same version with the same tables, indexes and running
 * totals. Differences are the engine's own: BIGINT for epoch ms and byte
 * counts (parsed back into JS numbers), JSONB for the part MD5s, PL/pgSQL
 * trigger functions, and COLLATE "C" on the ids the API orders or pages by,
 * so keyset pages follow byte order as they do in SQLite whatever the
 * database's default collation.
 *
 * Clips keep no foreign key cascade to accounts: a clip row goes only after its
 * object is deleted, never as a side effect.
 */
export const POSTGRES_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE accounts (
    id            TEXT COLLATE "C" PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    plan          TEXT,
    created_at    BIGINT NOT NULL
  );

  CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX sessions_by_account ON sessions(account_id);
  CREATE INDEX sessions_by_expiry ON sessions(expires_at);

  CREATE TABLE bind_codes (
    code_hash  TEXT PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX bind_codes_by_expiry ON bind_codes(expires_at);

  CREATE TABLE devices (
    serial             TEXT COLLATE "C" PRIMARY KEY,
    model              TEXT NOT NULL,
    account_id         TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    token_hash         TEXT NOT NULL,
    mqtt_password_hash TEXT NOT NULL,
    bound_at           BIGINT NOT NULL
  );
  CREATE INDEX devices_by_account ON devices(account_id);

  CREATE TABLE uploads (
    clip_id     TEXT COLLATE "C" PRIMARY KEY,
    serial      TEXT COLLATE "C" NOT NULL REFERENCES devices(serial) ON DELETE CASCADE,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    object_key  TEXT NOT NULL,
    size        BIGINT NOT NULL,
    md5         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    start_ms    BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('event', 'continuous')),
    created_at  BIGINT NOT NULL
  );
  CREATE INDEX uploads_by_account ON uploads(account_id);
  CREATE INDEX uploads_by_created ON uploads(created_at);

  CREATE TABLE clips (
    id          TEXT COLLATE "C" PRIMARY KEY,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    serial      TEXT COLLATE "C" NOT NULL,
    object_key  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('event', 'continuous')),
    start_ms    BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    md5         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
  );
  CREATE INDEX clips_by_account_start ON clips(account_id, start_ms DESC, id DESC);
  CREATE INDEX clips_by_expiry ON clips(expires_at);
  `,
  // 2: multipart uploads (the part MD5s: a JSONB array of base64 strings; all
  // three columns NULL for a single PUT), the covering index for the stored
  // bytes, and pending bytes as a running total kept by a trigger on uploads.
  `
  ALTER TABLE uploads ADD COLUMN multipart_upload_id TEXT;
  ALTER TABLE uploads ADD COLUMN part_bytes BIGINT;
  ALTER TABLE uploads ADD COLUMN part_md5s JSONB;

  CREATE INDEX clips_by_account_expiry_size ON clips(account_id, expires_at, size);
  DROP INDEX uploads_by_account;
  DROP INDEX uploads_by_created;
  ALTER TABLE accounts ADD COLUMN pending_bytes BIGINT NOT NULL DEFAULT 0;
  UPDATE accounts SET pending_bytes = (SELECT COALESCE(SUM(size), 0) FROM uploads WHERE uploads.account_id = accounts.id);

  -- One row-level function for the three SQLite triggers. Each statement
  -- updates the account's row, so concurrent presigns for one account queue on
  -- that row lock and the total stays exact (READ COMMITTED re-reads the row).
  CREATE FUNCTION uploads_pending_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
      UPDATE accounts SET pending_bytes = pending_bytes - OLD.size WHERE id = OLD.account_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
      UPDATE accounts SET pending_bytes = pending_bytes + NEW.size WHERE id = NEW.account_id;
    END IF;
    RETURN NULL;
  END
  $$;
  CREATE TRIGGER uploads_pending_insert_delete AFTER INSERT OR DELETE ON uploads
    FOR EACH ROW EXECUTE FUNCTION uploads_pending_bytes();
  CREATE TRIGGER uploads_pending_update AFTER UPDATE OF size, account_id ON uploads
    FOR EACH ROW EXECUTE FUNCTION uploads_pending_bytes();
  `,
  // 3: shares (SQLite 3). A share goes with its device row (unbinding ends every
  // share of the device) and with either account; it is read as in force only
  // while devices.account_id = granted_by.
  `
  CREATE TABLE shares (
    serial             TEXT COLLATE "C" NOT NULL REFERENCES devices(serial) ON DELETE CASCADE,
    grantee_account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    role               TEXT NOT NULL CHECK (role IN ('viewer', 'manager')),
    granted_by         TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at         BIGINT NOT NULL,
    PRIMARY KEY (serial, grantee_account_id)
  );
  CREATE INDEX shares_by_grantee ON shares(grantee_account_id);
  CREATE INDEX shares_by_granted_by ON shares(granted_by);
  `,
  // 4: accounts (SQLite 4): verified addresses, mailed codes, plan lapses, rate
  // limits. Accounts made before verification existed count as verified.
  // email_codes are keyed by the address's hash, not an account.
  `
  ALTER TABLE accounts ADD COLUMN email_verified_at BIGINT;
  UPDATE accounts SET email_verified_at = created_at;
  ALTER TABLE accounts ADD COLUMN plan_lapsed_at BIGINT;

  CREATE TABLE email_codes (
    email_hash TEXT NOT NULL,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    code_hash  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (email_hash, purpose)
  );
  CREATE INDEX email_codes_by_expiry ON email_codes(expires_at);

  -- one row per key: the current fixed window and its count
  CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count        INTEGER NOT NULL,
    expires_at   BIGINT NOT NULL
  );
  CREATE INDEX rate_limits_by_expiry ON rate_limits(expires_at);
  `,
  // 5: retention and receipts (SQLite 5): clip leases for the retention job
  // (claimed FOR UPDATE SKIP LOCKED, so nodes never take the same clip) and
  // job_runs, each job pass's receipt (counts only, a JSONB object of integers).
  `
  ALTER TABLE clips ADD COLUMN lease_until BIGINT, ADD COLUMN lease_owner TEXT;

  CREATE TABLE job_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         TEXT COLLATE "C" NOT NULL,
    started_at  BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    ok          BOOLEAN NOT NULL,
    counts      JSONB NOT NULL
  );
  CREATE INDEX job_runs_by_job ON job_runs(job, started_at);
  CREATE INDEX job_runs_by_started ON job_runs(started_at);
  `,
  // 6: notifications and webhooks (SQLite 6): one row per account and alert,
  // keyed by an id derived from the alert, so the nodes that all receive it
  // insert it once and the one whose insert lands sends the webhook.
  `
  CREATE TABLE notifications (
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    id          TEXT COLLATE "C" NOT NULL,
    serial      TEXT COLLATE "C" NOT NULL,
    type        TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    clip_id     TEXT COLLATE "C",
    received_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, id)
  );
  CREATE INDEX notifications_by_account_received ON notifications(account_id, received_at, id);
  CREATE INDEX notifications_by_received ON notifications(received_at);

  CREATE TABLE webhooks (
    account_id TEXT COLLATE "C" PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  `,
  // 7: account rights (SQLite 7): cancellation (cancelled_at and its lease),
  // consents, experience events (only while consented; no IP, no email), the
  // security log (IP as AES-256-GCM ciphertext; account_id NULL for an unknown
  // address) and digests of revoked credentials (410 after the rows are gone).
  `
  ALTER TABLE accounts ADD COLUMN cancelled_at BIGINT, ADD COLUMN cancel_lease_owner TEXT, ADD COLUMN cancel_lease_until BIGINT;
  CREATE INDEX accounts_cancelling ON accounts(cancelled_at) WHERE cancelled_at IS NOT NULL;

  CREATE TABLE consents (
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('experience', 'marketing')),
    granted    BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, purpose)
  );

  CREATE TABLE experience_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    event      TEXT NOT NULL,
    at         BIGINT NOT NULL
  );
  CREATE INDEX experience_events_by_account ON experience_events(account_id, at);

  CREATE TABLE security_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT COLLATE "C" REFERENCES accounts(id) ON DELETE CASCADE,
    event      TEXT NOT NULL,
    at         BIGINT NOT NULL,
    ip         TEXT NOT NULL
  );
  CREATE INDEX security_log_by_account ON security_log(account_id, at);
  CREATE INDEX security_log_by_at ON security_log(at);

  CREATE TABLE cancelled_credentials (
    digest     TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX cancelled_credentials_by_expiry ON cancelled_credentials(expires_at);
  `,
];
