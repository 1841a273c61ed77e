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
  getClip(id: string): Promise<ClipRow | null>;
  /** ordered start DESC, id DESC */
  listClips(filter: ClipFilter): Promise<ClipRow[]>;
  /** number of rows deleted */
  deleteClips(ids: string[]): Promise<number>;
  /** bytes of the account's clips with expiresAt > visibleAt */
  sumClipBytes(accountId: string, visibleAt: number): Promise<number>;

  /** idempotent */
  close(): Promise<void>;
}
