import type { ClipKind } from '../../shared/contracts/index.js';
import type {
  AccountRow,
  ClipRow,
  DeviceRow,
  ExperienceEventRow,
  NotificationRow,
  SecurityLogRow,
  SessionRow,
  ShareRole,
  ShareRow,
  UploadRow,
  WebhookRow,
} from './types.js';

/**
 * Database rows as the drivers return them, their mappers to the Store's
 * rows, and (uploadValues, clipValues) the Store's rows as the values an
 * INSERT binds. Both backends use them (sqlite.ts, postgres.ts): the column
 * names are the same in both schemas, and every integer column arrives as a
 * JS number (SQLite's INTEGER as is; PostgreSQL's BIGINT through the pool's
 * int8 parser). Where a column's value differs by backend the record says so.
 * The SQL stays in each store: the dialects differ on purpose.
 */

export interface AccountRecord {
  id: string;
  email: string;
  password_hash: string;
  plan: string | null;
  created_at: number;
  email_verified_at: number | null;
  plan_lapsed_at: number | null;
  cancelled_at: number | null;
}
export interface SessionRecord {
  token_hash: string;
  account_id: string;
  created_at: number;
  expires_at: number;
}
export interface DeviceRecord {
  serial: string;
  model: string;
  account_id: string;
  token_hash: string;
  mqtt_password_hash: string;
  bound_at: number;
}
/** `PartMd5s`: part_md5s as the driver returns it, JSON text from SQLite, the parsed JSONB array from pg */
export interface UploadRecord<PartMd5s> {
  clip_id: string;
  serial: string;
  account_id: string;
  object_key: string;
  size: number;
  md5: string;
  sha256: string;
  start_ms: number;
  duration_ms: number;
  kind: ClipKind;
  created_at: number;
  multipart_upload_id: string | null;
  part_bytes: number | null;
  part_md5s: PartMd5s | null;
}
export interface ShareRecord {
  serial: string;
  grantee_account_id: string;
  role: ShareRole;
  granted_by: string;
  created_at: number;
}
export interface ClipRecord {
  id: string;
  account_id: string;
  serial: string;
  object_key: string;
  kind: ClipKind;
  start_ms: number;
  duration_ms: number;
  size: number;
  md5: string;
  sha256: string;
  uploaded_at: number;
  expires_at: number;
}
export interface NotificationRecord {
  account_id: string;
  id: string;
  serial: string;
  type: string;
  at_ms: number;
  clip_id: string | null;
  received_at: number;
}
export interface WebhookRecord {
  account_id: string;
  url: string;
  secret: string;
  created_at: number;
}
export interface ExperienceEventRecord {
  account_id: string;
  event: string;
  at: number;
}
export interface SecurityLogRecord {
  /** null for an entry no account could be named for (a failed sign-in) */
  account_id: string | null;
  event: string;
  at: number;
  ip: string;
}

export const toAccount = (r: AccountRecord): AccountRow => ({
  id: r.id,
  email: r.email,
  passwordHash: r.password_hash,
  plan: r.plan,
  createdAt: r.created_at,
  emailVerifiedAt: r.email_verified_at,
  planLapsedAt: r.plan_lapsed_at,
  cancelledAt: r.cancelled_at,
});
export const toSession = (r: SessionRecord): SessionRow => ({
  tokenHash: r.token_hash,
  accountId: r.account_id,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
});
export const toDevice = (r: DeviceRecord): DeviceRow => ({
  serial: r.serial,
  model: r.model,
  accountId: r.account_id,
  tokenHash: r.token_hash,
  mqttPasswordHash: r.mqtt_password_hash,
  boundAt: r.bound_at,
});
/** `decodePartMd5s` turns the backend's part_md5s into the list; it runs only for a multipart upload */
export const toUpload = <PartMd5s>(r: UploadRecord<PartMd5s>, decodePartMd5s: (stored: PartMd5s) => string[]): UploadRow => ({
  clipId: r.clip_id,
  serial: r.serial,
  accountId: r.account_id,
  key: r.object_key,
  size: r.size,
  md5: r.md5,
  sha256: r.sha256,
  startMs: r.start_ms,
  durationMs: r.duration_ms,
  kind: r.kind,
  createdAt: r.created_at,
  multipart:
    r.multipart_upload_id !== null && r.part_bytes !== null && r.part_md5s !== null
      ? { uploadId: r.multipart_upload_id, partBytes: r.part_bytes, partMd5s: decodePartMd5s(r.part_md5s) }
      : null,
});
export const toShare = (r: ShareRecord): ShareRow => ({
  serial: r.serial,
  granteeAccountId: r.grantee_account_id,
  role: r.role,
  grantedBy: r.granted_by,
  createdAt: r.created_at,
});
export const toClip = (r: ClipRecord): ClipRow => ({
  id: r.id,
  accountId: r.account_id,
  serial: r.serial,
  key: r.object_key,
  kind: r.kind,
  startMs: r.start_ms,
  durationMs: r.duration_ms,
  size: r.size,
  md5: r.md5,
  sha256: r.sha256,
  uploadedAt: r.uploaded_at,
  expiresAt: r.expires_at,
});
export const toNotification = (r: NotificationRecord): NotificationRow => ({
  id: r.id,
  accountId: r.account_id,
  serial: r.serial,
  type: r.type,
  atMs: r.at_ms,
  clipId: r.clip_id,
  receivedAt: r.received_at,
});
export const toWebhook = (r: WebhookRecord): WebhookRow => ({
  accountId: r.account_id,
  url: r.url,
  secret: r.secret,
  createdAt: r.created_at,
});
export const toExperienceEvent = (r: ExperienceEventRecord): ExperienceEventRow => ({
  accountId: r.account_id,
  event: r.event,
  at: r.at,
});
export const toSecurityLog = (r: SecurityLogRecord): SecurityLogRow => ({
  accountId: r.account_id,
  event: r.event,
  at: r.at,
  ip: r.ip,
});

/**
 * An upload's values in the order of both stores' INSERT INTO uploads:
 * clip_id, serial, account_id, object_key, size, md5, sha256, start_ms,
 * duration_ms, kind, created_at, multipart_upload_id, part_bytes, part_md5s
 * (JSON text, which PostgreSQL casts to JSONB).
 */
export const uploadValues = (row: UploadRow): (string | number | null)[] => [
  row.clipId,
  row.serial,
  row.accountId,
  row.key,
  row.size,
  row.md5,
  row.sha256,
  row.startMs,
  row.durationMs,
  row.kind,
  row.createdAt,
  row.multipart?.uploadId ?? null,
  row.multipart?.partBytes ?? null,
  row.multipart ? JSON.stringify(row.multipart.partMd5s) : null,
];
/**
 * A clip's values in the order of both stores' INSERT INTO clips: id,
 * account_id, serial, object_key, kind, start_ms, duration_ms, size, md5,
 * sha256, uploaded_at, expires_at.
 */
export const clipValues = (row: ClipRow): (string | number)[] => [
  row.id,
  row.accountId,
  row.serial,
  row.key,
  row.kind,
  row.startMs,
  row.durationMs,
  row.size,
  row.md5,
  row.sha256,
  row.uploadedAt,
  row.expiresAt,
];
