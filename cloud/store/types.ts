/**
 * The cloud's metadata store. Every method is async so that the SQLite
 * implementation (embedded default) and a PostgreSQL one (production) keep
 * the same interface. Times are epoch milliseconds (BIGINT in PostgreSQL),
 * secrets arrive here already hashed, and nothing in this interface assumes
 * a single process: what must be atomic is one method.
 */
import type { ClipKind } from '../../shared/contracts/index.js';

export interface AccountRow {
  id: string;
  /** normalised (trimmed, lower case) */
  email: string;
  passwordHash: string;
  plan: string | null;
  createdAt: number;
  /**
   * When the owner proved the address (a verification code, or a password
   * reset); null until then, and an unverified account cannot log in.
   * Optional on input (createAccount stores absent as null); always set on a
   * row the store returns.
   */
  emailVerifiedAt?: number | null;
  /**
   * When the last plan lapsed (lapsePlan); null while a plan is active or if
   * none was ever chosen. Optional on input like emailVerifiedAt.
   */
  planLapsedAt?: number | null;
  /**
   * When the owner cancelled the account (beginCancellation); null while it
   * is live. The row stays, email and password hash erased, until the
   * cancellation finishes. Optional on input like emailVerifiedAt.
   */
  cancelledAt?: number | null;
}

/** What a mailed code is for. */
export type EmailCodePurpose = 'verify' | 'reset';

/**
 * A code mailed to an address: at most one live code per (emailHash, purpose).
 * Codes are keyed by the address, not the account, so that asking for one
 * costs the same writes whether or not the address has an account.
 */
export interface EmailCodeRow {
  /** sha256 hex of the normalised email (never the address itself) */
  emailHash: string;
  purpose: EmailCodePurpose;
  /** hex hash of the code */
  codeHash: string;
  createdAt: number;
  expiresAt: number;
}

/** registerAccount's outcome; the caller answers the same in every case. */
export interface RegisterAccountOutcome {
  /**
   * 'created': a new unverified account; 'pending': the address had an
   * unverified account, whose password hash is now the new one; 'verified':
   * the address has a verified account, left untouched
   */
  status: 'created' | 'pending' | 'verified';
  /** the account's id (the existing one unless 'created') */
  accountId: string;
}

export interface SessionRow {
  tokenHash: string;
  accountId: string;
  createdAt: number;
  expiresAt: number;
  /**
   * Set by getSession: when the session's account was cancelled (null while
   * it is live), so a session that slipped in during a cancellation is
   * answered 410 all the same. Ignored by createSession.
   */
  accountCancelledAt?: number | null;
}

export interface BindCodeRow {
  codeHash: string;
  accountId: string;
  createdAt: number;
  expiresAt: number;
}

export interface DeviceRow {
  serial: string;
  model: string;
  accountId: string;
  tokenHash: string;
  mqttPasswordHash: string;
  boundAt: number;
}

/** The multipart side of a pending upload: the store's upload id and the parts the device declared. */
export interface UploadMultipart {
  uploadId: string;
  partBytes: number;
  /** base64 MD5 of each part, in part order */
  partMd5s: string[];
}

/** A presigned upload the device has not completed yet. */
export interface UploadRow {
  clipId: string;
  serial: string;
  accountId: string;
  key: string;
  size: number;
  /** base64 */
  md5: string;
  /** hex */
  sha256: string;
  startMs: number;
  durationMs: number;
  kind: ClipKind;
  createdAt: number;
  /** null for a single PUT */
  multipart: UploadMultipart | null;
}

export interface ClipRow {
  id: string;
  accountId: string;
  serial: string;
  key: string;
  kind: ClipKind;
  startMs: number;
  durationMs: number;
  size: number;
  md5: string;
  sha256: string;
  uploadedAt: number;
  expiresAt: number;
}

export interface ClipFilter {
  accountId: string;
  serial?: string;
  /** start >= fromMs */
  fromMs?: number;
  /** start < toMs */
  toMs?: number;
  kind?: ClipKind;
  /** only clips with expiresAt > this (expired clips are hidden at once, P3) */
  visibleAt?: number;
  /** keyset pagination: rows strictly after this one in (start DESC, id DESC) order */
  after?: { startMs: number; id: string };
  limit: number;
}

/** What a share lets its grantee do: view (list, view, download) or, as a manager, also delete. */
export type ShareRole = 'viewer' | 'manager';

/**
 * A device shared by its owner with another account. It covers the clips of
 * that serial whose clip row belongs to grantedBy (the device's owner), and
 * it is in force only while the device stays bound to grantedBy: unbinding
 * ends it (the row goes with the device row), so footage a later owner of
 * the serial records never reaches the earlier owner's grantees.
 */
export interface ShareRow {
  serial: string;
  granteeAccountId: string;
  role: ShareRole;
  /** the account that granted it: the device's owner when it was granted */
  grantedBy: string;
  createdAt: number;
}

export type PutShareOutcome =
  | { status: 'created' | 'updated'; share: ShareRow }
  /** the device is not bound to row.grantedBy (not bound at all, or to another account) */
  | { status: 'device-not-found' }
  | { status: 'grantee-not-found' };

/** A device shared with an account, with that account's share of it. */
export interface SharedDeviceRow {
  device: DeviceRow;
  share: ShareRow;
}

/**
 * One account's copy of a device alert (issue 7). `id` is derived from the
 * alert itself (cloud/notifications/notification-id.ts), so every cloud node
 * that receives the same alert makes the same rows: (accountId, id) is the
 * key, and the node whose insert lands first is the one that sends the
 * account's webhook.
 */
export interface NotificationRow {
  id: string;
  accountId: string;
  serial: string;
  /** the alert type (shared/contracts/alerts.ts AlertType) */
  type: string;
  /** the event time the device reported */
  atMs: number;
  clipId: string | null;
  /** when the cloud received the alert; SSE replay (Last-Event-ID) and the erase job go by it */
  receivedAt: number;
}

/** An account's webhook: notifications are POSTed to url, signed with HMAC-SHA256 under secret. */
export interface WebhookRow {
  accountId: string;
  url: string;
  /** kept as given: signing needs it (it is never sent back, never logged) */
  secret: string;
  createdAt: number;
}

export interface ClaimDeviceInput {
  codeHash: string;
  serial: string;
  model: string;
  tokenHash: string;
  mqttPasswordHash: string;
  nowMs: number;
  /** the camera limit of a plan, null when the account has no plan (no limit applies) */
  cameraLimit: (plan: string | null) => number | null;
}

export type ClaimDeviceOutcome =
  | { status: 'bound' | 'rebound'; accountId: string }
  | { status: 'code-invalid' }
  | { status: 'bound-elsewhere' }
  | { status: 'camera-limit' };

/** A clip the retention job leased: its object goes first, then its row. */
export interface ExpiredClip {
  id: string;
  key: string;
  expiresAt: number;
}

/** GET /v1/account's view of an account's visible clips; null when it has none. */
export interface ClipSummary {
  oldestStartMs: number | null;
  nextExpiresAt: number | null;
}

/**
 * The receipt of one pass of a background job: what it did, never whose.
 * `job` is a name (^[a-z][a-z0-9-]{0,39}$), and `counts` maps camelCase names
 * to non-negative integers; nothing else fits in it, so no account id, key or
 * address can end up there.
 */
export interface JobRunRow {
  job: string;
  startedAt: number;
  durationMs: number;
  /** false when the pass ended in an error (its counts are what it did before) */
  ok: boolean;
  counts: Record<string, number>;
}

/** recordJobRun's rules for a receipt, shared by both stores */
export const JOB_NAME_RE = /^[a-z][a-z0-9-]{0,39}$/;
const COUNT_NAME_RE = /^[a-z][A-Za-z0-9]{0,39}$/;

/** Throws unless the receipt has the shape JobRunRow describes (checked before it is stored). */
export function checkJobRun(row: JobRunRow): void {
  if (!JOB_NAME_RE.test(row.job)) throw new Error('a job run needs a job name of lower-case letters, digits and dashes');
  if (!Number.isSafeInteger(row.startedAt) || !Number.isSafeInteger(row.durationMs) || row.durationMs < 0) {
    throw new Error('a job run needs integer startedAt and durationMs');
  }
  for (const [name, n] of Object.entries(row.counts)) {
    if (!COUNT_NAME_RE.test(name) || !Number.isSafeInteger(n) || n < 0) {
      throw new Error('a job run count is a camelCase name and a non-negative integer');
    }
  }
}

/** What a consent is for (PUT /v1/account/consents). No row of a purpose: never given, off. */
export type ConsentPurpose = 'experience' | 'marketing';

export interface ConsentRow {
  purpose: ConsentPurpose;
  granted: boolean;
  /** when it was last changed (given or withdrawn) */
  updatedAt: number;
}

/** A product event of the experience program: the account, what happened, when. No IP, no email. */
export interface ExperienceEventRow {
  accountId: string;
  event: string;
  at: number;
}

/**
 * One entry of the security log. `ip` is ciphertext (cloud/ip-crypto.ts): the
 * store never sees an address in clear. accountId is null for a failed
 * sign-in of an address that has no account (no email, no hash of it: the
 * entry is kept only for its address, and only 30 days).
 */
export interface SecurityLogRow {
  accountId: string | null;
  event: string;
  at: number;
  ip: string;
}

/**
 * How a cancellation revokes credentials: each session and device token hash
 * is replaced by a tombstone, digest(tokenHash), that names neither the token
 * hash nor the account; a session's lives until the session would have
 * expired, a device's until deviceUntil.
 */
export interface CredentialTombstones {
  digest(tokenHash: string): string;
  deviceUntil: number;
}

export interface PurgeAccountInput {
  nowMs: number;
  tombstones: CredentialTombstones;
  /** the email_codes rows of the account's address (sha256 of it, cloud/auth/email-codes.ts) */
  emailHash: string;
  /** rate-limit rows keyed by the account's address or its serials (cloud/http/rate-limit.ts rateKey) */
  rateLimitKeys: string[];
  /** what replaces the email (unique, not an address, naming nothing) */
  erasedEmail: string;
}

export type BeginCancellationOutcome = 'started' | 'already-cancelled' | 'not-found';

export interface Store {
  // accounts
  /** false when the email is taken */
  createAccount(row: AccountRow): Promise<boolean>;
  getAccountById(id: string): Promise<AccountRow | null>;
  getAccountByEmail(email: string): Promise<AccountRow | null>;
  setAccountPlan(accountId: string, plan: string | null): Promise<void>;
  /**
   * One atomic step of POST /v1/accounts: first stores `code` as putEmailCode
   * does (replacing any code of the same emailHash and purpose, attempts back
   * to 0, expired codes pruned); then inserts `account` (its emailVerifiedAt and
   * planLapsedAt are stored null whatever is passed) unless its email exists.
   * When the email has an unverified account, that account's passwordHash is
   * replaced by account.passwordHash (the newest registration's password
   * counts; its id, plan and createdAt stay). A verified account is not
   * changed. The code is stored in all three cases.
   */
  registerAccount(account: AccountRow, code: EmailCodeRow): Promise<RegisterAccountOutcome>;
  /**
   * Sets emailVerifiedAt = nowMs when it is null; an account already verified
   * keeps its first time. True when this call verified it; false when it was
   * verified already or there is no such account.
   */
  markEmailVerified(accountId: string, nowMs: number): Promise<boolean>;
  /**
   * One atomic step: sets the account's passwordHash and deletes every session
   * of the account except the one whose tokenHash is keepSessionTokenHash
   * (null: every session). Returns the number of sessions deleted; 0 and no
   * change when there is no such account.
   */
  changePassword(accountId: string, passwordHash: string, keepSessionTokenHash: string | null): Promise<number>;

  // mailed codes
  /**
   * Inserts or replaces the one code of (row.emailHash, row.purpose), with 0
   * attempts. In the same step, deletes every code (of any address) whose
   * expiresAt <= row.createdAt, so dead codes do not pile up.
   */
  putEmailCode(row: EmailCodeRow): Promise<void>;
  /**
   * One atomic step, safe against concurrent callers. Looks up the code of
   * (emailHash, purpose) that is live: expiresAt > nowMs and attempts <
   * maxAttempts. None: false, nothing changes. Its codeHash equals `codeHash`:
   * the code is deleted (single use) and true is returned; of two concurrent
   * calls with the right code exactly one gets true. Otherwise its attempts go
   * up by one and false is returned.
   */
  useEmailCode(
    emailHash: string,
    purpose: EmailCodePurpose,
    codeHash: string,
    nowMs: number,
    maxAttempts: number,
  ): Promise<boolean>;

  // plans
  /**
   * One atomic step: sets the account's plan, clears planLapsedAt, and sets
   * the expiresAt of every clip of the account with expiresAt > nowMs to
   * min(startMs, uploadedAt) + retentionMs (expiry counts from the earlier of
   * the device's stamp and the cloud's receipt, as at upload). Clips already
   * expired stay expired. Returns the number of clips whose row was updated
   * (every unexpired clip, changed or not).
   */
  choosePlan(accountId: string, plan: string, retentionMs: number, nowMs: number): Promise<number>;
  /**
   * One atomic step, only when the account has a plan: sets plan = null and
   * planLapsedAt = nowMs, and caps the expiresAt of every clip of the account
   * with expiresAt > nowMs at graceEndsAtMs (expiresAt = min(expiresAt,
   * graceEndsAtMs)). Returns the number of those clips. An account without a
   * plan (or no account) is left as it is, its first lapse time kept, and 0 is
   * returned.
   */
  lapsePlan(accountId: string, nowMs: number, graceEndsAtMs: number): Promise<number>;

  // rate limits
  /**
   * Counts one hit of `key` (an opaque string of at most 200 characters that
   * never holds personal data) in the fixed window of windowMs that contains
   * nowMs: [floor(nowMs / windowMs) * windowMs, that + windowMs). Atomic:
   * concurrent hits on one key get distinct counts. Returns the count in that
   * window including this hit (1 for the first hit of a window). A hit whose
   * window is older than the key's stored one counts in the stored window.
   * Rows whose window ended at or before nowMs are deleted in the same step.
   */
  hitRateLimit(key: string, windowMs: number, nowMs: number): Promise<number>;

  // sessions
  createSession(row: SessionRow): Promise<void>;
  /** the session when it exists and expiresAt > nowMs */
  getSession(tokenHash: string, nowMs: number): Promise<SessionRow | null>;
  deleteSession(tokenHash: string): Promise<void>;

  // bind codes
  createBindCode(row: BindCodeRow): Promise<void>;
  /** single use: the first caller gets the account id, every later one (or after expiry) null */
  consumeBindCode(codeHash: string, nowMs: number): Promise<string | null>;

  // devices
  getDevice(serial: string): Promise<DeviceRow | null>;
  /**
   * One atomic step: consume the bind code, refuse a device bound to another
   * account or past the plan's camera limit, else bind (or rebind with new
   * credentials). When it refuses, the bind code stays usable.
   */
  claimDevice(input: ClaimDeviceInput): Promise<ClaimDeviceOutcome>;
  listDevices(accountId: string): Promise<DeviceRow[]>;
  /**
   * unbinds (its token stops working at once) and drops its pending uploads and
   * its shares, in one step; false when not bound to this account. A rebind to
   * the same account (claimDevice 'rebound') keeps the shares.
   */
  unbindDevice(serial: string, accountId: string): Promise<boolean>;

  // shares
  /**
   * One atomic step: grant row.role on row.serial to row.granteeAccountId, only
   * if the device is bound to row.grantedBy at that moment ('device-not-found'
   * otherwise) and the grantee account exists ('grantee-not-found'; checked
   * after the device). When the grantee already has a share of this device it
   * takes the new role and grantedBy and keeps its createdAt ('updated', the
   * row as stored); else row is inserted ('created'). The caller refuses a
   * grantee equal to grantedBy; the store does not check it.
   */
  putShare(row: ShareRow): Promise<PutShareOutcome>;
  /**
   * The grantee's share of a device while it is in force (the device is bound
   * to the share's grantedBy); null otherwise.
   */
  getShare(serial: string, granteeAccountId: string): Promise<ShareRow | null>;
  /** a device's shares in force, ordered createdAt ASC, then granteeAccountId ASC */
  listDeviceShares(serial: string): Promise<ShareRow[]>;
  /**
   * the devices shared with an account (shares in force only), each with that
   * share, ordered share createdAt ASC, then serial ASC
   */
  listSharedDevices(granteeAccountId: string): Promise<SharedDeviceRow[]>;
  /** removes the grantee's share of a device; false when there was none */
  deleteShare(serial: string, granteeAccountId: string): Promise<boolean>;

  // pending uploads
  /** insert or replace by clipId (multipart part included), so a retry re-presigns */
  upsertUpload(row: UploadRow): Promise<void>;
  getUpload(clipId: string): Promise<UploadRow | null>;
  deleteUpload(clipId: string): Promise<void>;
  /** bytes of an account's pending uploads, leaving one clip out (the one being re-presigned) */
  sumPendingUploadBytes(accountId: string, exceptClipId?: string): Promise<number>;

  // clips
  /** idempotent by id: returns the row as stored (the first insert wins) */
  insertClip(row: ClipRow): Promise<ClipRow>;
  /**
   * An upload completes: insertClip(row) and deleteUpload(row.id) in one
   * atomic commit (one fsync on the complete path, and never a clip whose
   * pending upload still counts against the storage cap). Returns the clip
   * as stored (the first insert wins, as insertClip).
   */
  completeUpload(row: ClipRow): Promise<ClipRow>;
  getClip(id: string): Promise<ClipRow | null>;
  /** ordered start DESC, id DESC */
  listClips(filter: ClipFilter): Promise<ClipRow[]>;
  /** number of rows deleted */
  deleteClips(ids: string[]): Promise<number>;
  /** bytes of the account's clips with expiresAt > visibleAt */
  sumClipBytes(accountId: string, visibleAt: number): Promise<number>;

  // retention and the orphan sweep (cloud/jobs/)
  /**
   * One atomic step, safe against concurrent callers on other nodes: leases up
   * to `limit` clips with expiresAt <= nowMs whose lease is free (never taken,
   * or leaseUntil <= nowMs), oldest expiry first, to `owner` until
   * leaseUntilMs, and returns them. Two callers never get the same clip while
   * its lease holds (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one writer).
   * A lease is only a claim: the row goes with deleteClips once its object is
   * gone, and a holder that dies leaves a lease that lapses.
   */
  claimExpiredClips(owner: string, nowMs: number, leaseUntilMs: number, limit: number): Promise<ExpiredClip[]>;
  /**
   * Ends `owner`'s lease of these clips (others' leases are left alone); no
   * caller may claim them before retryAtMs (the next pass, not this one).
   */
  releaseClipLeases(owner: string, ids: string[], retryAtMs: number): Promise<void>;
  /**
   * Deletes up to `limit` pending uploads created before createdBeforeMs
   * (presigned, never completed); returns how many went. Their objects, if
   * any were PUT, are orphans for the sweep.
   */
  deleteStaleUploads(createdBeforeMs: number, limit: number): Promise<number>;
  /**
   * Deletes up to `limit` sessions whose expiresAt is at or before nowMs
   * (getSession already refuses them); returns how many went. Expired
   * sessions otherwise stay forever, each naming its account.
   */
  deleteExpiredSessions(nowMs: number, limit: number): Promise<number>;
  /**
   * The object keys that clip rows and pending uploads with these ids hold
   * (any order, a key at most once). A clip's key always ends in
   * `<clipId>.mp4` (shared/keys.ts), so this is how the sweep asks "is this
   * object anyone's" through the primary keys.
   */
  objectKeysInUse(clipIds: string[]): Promise<string[]>;
  /** the start of the account's oldest clip with expiresAt > visibleAt, and the earliest such expiresAt */
  clipSummary(accountId: string, visibleAt: number): Promise<ClipSummary>;
  /**
   * Keeps a job run's receipt, and in the same step deletes receipts that
   * started before pruneBeforeMs. Throws when row.job or a count is not of
   * the shape JobRunRow describes.
   */
  recordJobRun(row: JobRunRow, pruneBeforeMs: number): Promise<void>;
  /** the latest receipts of a job, newest first */
  listJobRuns(job: string, limit: number): Promise<JobRunRow[]>;

  // notifications (issue 7)
  /**
   * Who is told about an alert of this serial: the account the device is
   * bound to, then the grantees of its shares in force (listDeviceShares'
   * order). Empty when the serial is not bound.
   */
  notificationRecipients(serial: string): Promise<string[]>;
  /**
   * Inserts each row unless a row with its (accountId, id) exists; an
   * existing row is left as it is. Returns, per row in order, whether this
   * call inserted it: of concurrent calls with the same row, exactly one gets
   * true. An account that no longer exists gets no row (false).
   */
  putNotifications(rows: NotificationRow[]): Promise<boolean[]>;
  getNotification(accountId: string, id: string): Promise<NotificationRow | null>;
  /** the account's rows after `after` in (receivedAt, id) order, ascending, at most `limit` */
  listNotificationsAfter(accountId: string, after: { receivedAt: number; id: string }, limit: number): Promise<NotificationRow[]>;
  /** the account's newest rows with receivedAt >= sinceMs, (receivedAt, id) descending, at most `limit` */
  listRecentNotifications(accountId: string, sinceMs: number, limit: number): Promise<NotificationRow[]>;
  /** deletes at most `limit` rows (of any account) with receivedAt < beforeMs; the number deleted */
  deleteNotificationsBefore(beforeMs: number, limit: number): Promise<number>;

  // webhooks (issue 7)
  /** sets (inserts or replaces) the account's one webhook; false when the account does not exist */
  putWebhook(row: WebhookRow): Promise<boolean>;
  /** the webhooks of those of these accounts that have one, in no particular order */
  getWebhooks(accountIds: string[]): Promise<WebhookRow[]>;
  /** false when the account had none */
  deleteWebhook(accountId: string): Promise<boolean>;

  // account rights (issue 6): consents, the experience program, the security
  // log, cancellation (cloud/account-cancel.ts runs the steps)
  /** the account's consents that were ever set, in purpose order; a purpose without a row is off */
  getConsents(accountId: string): Promise<ConsentRow[]>;
  /**
   * One atomic step: sets each listed purpose to granted; a purpose whose
   * value does not change keeps its updatedAt, one that changes gets nowMs.
   * Withdrawing 'experience' deletes every experience event of the account in
   * the same step, and no recordExperienceEvent that returns after this one
   * inserts anything. Returns the consents as getConsents; [] and no change
   * when the account does not exist.
   */
  setConsents(accountId: string, changes: { purpose: ConsentPurpose; granted: boolean }[], nowMs: number): Promise<ConsentRow[]>;
  /**
   * Inserts the event only while the account's 'experience' consent is
   * granted (checked in the same statement, holding the consent row against a
   * concurrent withdrawal); true when it was inserted.
   */
  recordExperienceEvent(accountId: string, event: string, nowMs: number): Promise<boolean>;
  /** the account's experience events, oldest first */
  listExperienceEvents(accountId: string): Promise<ExperienceEventRow[]>;
  appendSecurityLog(row: SecurityLogRow): Promise<void>;
  /** the account's security-log entries, oldest first (at, then insertion order) */
  listSecurityLog(accountId: string): Promise<SecurityLogRow[]>;
  /** deletes at most `limit` entries (of any account, or none) with at < beforeMs; the number deleted */
  eraseSecurityLogBefore(beforeMs: number, limit: number): Promise<number>;

  /**
   * The first step of a cancellation, one atomic step: sets cancelledAt =
   * nowMs; deletes the account's bind codes, sessions (each leaving a
   * tombstone) and shares in both directions (those it granted and those
   * granted to it), its webhook, its notifications and every account's
   * notifications about its devices; revokes its devices' token and MQTT
   * password (each token leaving a tombstone; the rows stay, for the unbind
   * commands); withdraws its consents and deletes its experience events.
   * 'already-cancelled' (nothing changes) or 'not-found' otherwise.
   */
  beginCancellation(accountId: string, nowMs: number, tombstones: CredentialTombstones): Promise<BeginCancellationOutcome>;
  /** ids of accounts whose cancellation is unfinished and not leased (or the lease lapsed at nowMs), oldest first */
  listCancellations(nowMs: number, limit: number): Promise<string[]>;
  /**
   * Takes or renews the lease on a cancellation: true when the account is
   * being cancelled and its lease is free, lapsed (<= nowMs) or already
   * `owner`'s; it is then owner's until untilMs. untilMs = nowMs releases it.
   */
  leaseCancellation(accountId: string, owner: string, nowMs: number, untilMs: number): Promise<boolean>;
  /**
   * One atomic step, for a cancelled account only (no-op otherwise): deletes
   * every row that mentions the account except its clip rows and its account
   * row: sessions and devices (tombstones for their tokens; a device's pending
   * uploads and shares go with it), shares in both directions, pending
   * uploads, bind codes, consents, experience events, security-log entries,
   * notifications (its own and every account's about its devices), its
   * webhook, the mailed codes of input.emailHash and the rate-limit rows of
   * input.rateLimitKeys; then erases the personal data of the account row
   * (email = input.erasedEmail, password hash emptied).
   */
  purgeAccountRows(accountId: string, input: PurgeAccountInput): Promise<void>;
  /** deletes up to `limit` clip rows of a cancelled account (their objects are gone first); the number deleted */
  deleteCancelledClipRows(accountId: string, limit: number): Promise<number>;
  /**
   * The last step, atomic: when the cancelled account has no clip row left,
   * deletes its row (and with it anything still referencing it) and returns
   * true; false while clip rows remain. True when there is no such account.
   */
  finishCancellation(accountId: string): Promise<boolean>;
  /** whether `digest` is the tombstone of a revoked credential that has not expired */
  isCredentialCancelled(digest: string, nowMs: number): Promise<boolean>;
  /** deletes up to `limit` tombstones that expired at or before nowMs; the number deleted */
  pruneCancelledCredentials(nowMs: number, limit: number): Promise<number>;

  /** idempotent */
  close(): Promise<void>;
}
