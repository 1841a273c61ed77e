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
  /** unbinds (its token stops working at once) and drops its pending uploads; false when not bound to this account */
  unbindDevice(serial: string, accountId: string): Promise<boolean>;

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
